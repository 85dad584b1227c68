"""reference.py (the definition every kernel is checked against) against independent formulations, and dispatch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reference_engine import kernels
from reference_engine.kernels import reference
from reference_engine.kernels.testing import random_paged_decode_case


def _attention_by_loops(case) -> torch.Tensor:  # (S, H, D) fp32
    """Each sequence's K/V copied out block by block, then SDPA over the contiguous context."""
    block_size = case.k_cache.shape[1]
    num_heads, num_kv_heads = case.query.shape[1], case.k_cache.shape[2]
    outs = []
    for seq, n_tokens in enumerate(case.context_lens.tolist()):
        rows_k, rows_v = [], []
        for t in range(n_tokens):
            block = int(case.block_tables[seq, t // block_size])
            rows_k.append(case.k_cache[block, t % block_size])  # (Hkv, D)
            rows_v.append(case.v_cache[block, t % block_size])
        k = torch.stack(rows_k, dim=1).float()  # (Hkv, n, D)
        v = torch.stack(rows_v, dim=1).float()
        k = k.repeat_interleave(num_heads // num_kv_heads, dim=0)  # (H, n, D)
        v = v.repeat_interleave(num_heads // num_kv_heads, dim=0)
        q = case.query[seq].float()[:, None, :]  # (H, 1, D)
        outs.append(F.scaled_dot_product_attention(q, k, v, scale=case.scale)[:, 0])  # (H, D)
    return torch.stack(outs)


@pytest.mark.parametrize("block_size", [8, 16, 32])
@pytest.mark.parametrize("queries_per_kv", [1, 3, 4])
def test_paged_decode_attention_matches_contiguous_sdpa(block_size: int, queries_per_kv: int) -> None:
    lens = [1, block_size, block_size + 1, 3 * block_size + 5]
    case = random_paged_decode_case(
        lens, num_kv_heads=2, queries_per_kv=queries_per_kv, head_dim=64, block_size=block_size, seed=block_size
    )
    out = reference.paged_decode_attention(
        case.query, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale
    )
    assert out.shape == case.query.shape and out.dtype == torch.float32
    assert not out.isnan().any(), "NaN-filled unowned cache rows leaked into the output"
    torch.testing.assert_close(out, _attention_by_loops(case), atol=1e-5, rtol=1e-5)


def test_paged_decode_attention_of_one_token_is_its_value() -> None:
    case = random_paged_decode_case([1], num_kv_heads=1, queries_per_kv=2, head_dim=64, block_size=16)
    out = reference.paged_decode_attention(
        case.query, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale
    )
    v = case.v_cache[int(case.block_tables[0, 0]), 0, 0]  # (D,)
    torch.testing.assert_close(out[0], v.expand(2, -1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_paged_decode_attention_low_precision_is_the_fp32_result_rounded(dtype: torch.dtype) -> None:
    case = random_paged_decode_case([5, 40], num_kv_heads=1, queries_per_kv=3, head_dim=64, block_size=16, dtype=dtype)
    args = (case.query, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale)
    out = reference.paged_decode_attention(*args)
    assert out.dtype == dtype
    fp32_args = [a.float() if a.is_floating_point() else a for a in args[:5]]
    expected = reference.paged_decode_attention(*fp32_args, case.scale)
    assert torch.equal(out, expected.to(dtype))


def test_reshape_and_cache_writes_slots_and_skips_padding() -> None:
    num_blocks, block_size, num_kv_heads, head_dim = 4, 8, 2, 16
    k_cache = torch.zeros(num_blocks, block_size, num_kv_heads, head_dim)
    v_cache = torch.zeros_like(k_cache)
    key = torch.randn(5, num_kv_heads, head_dim)
    value = torch.randn(5, num_kv_heads, head_dim)
    slots = torch.tensor([17, -1, 3, 31, -1])  # block 2 offset 1, pad, block 0 offset 3, block 3 offset 7, pad
    reference.reshape_and_cache(key, value, k_cache, v_cache, slots)
    assert torch.equal(k_cache[2, 1], key[0]) and torch.equal(v_cache[2, 1], value[0])
    assert torch.equal(k_cache[0, 3], key[2]) and torch.equal(v_cache[0, 3], value[2])
    assert torch.equal(k_cache[3, 7], key[3]) and torch.equal(v_cache[3, 7], value[3])
    assert int((k_cache != 0).any(dim=(2, 3)).sum()) == 3  # nothing else written, padding rows included


def test_silu_and_mul_is_gate_silu_times_up() -> None:
    x = torch.randn(2, 3, 2 * 48)
    gate, up = x[..., :48], x[..., 48:]
    torch.testing.assert_close(reference.silu_and_mul(x), gate * torch.sigmoid(gate) * up)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rms_norm_matches_hf_llama_rms_norm(dtype: torch.dtype) -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    hf = LlamaRMSNorm(576, eps=1e-5).to(dtype)
    with torch.no_grad():
        hf.weight.copy_(torch.randn(576))
        x = (3 * torch.randn(4, 576)).to(dtype)
        assert torch.equal(reference.rms_norm(x, hf.weight, 1e-5), hf(x))


# Dispatch: what this CPU-only machine reports.


def test_torch_is_always_available_and_is_the_reference() -> None:
    assert kernels.available_backends("cpu")["torch"] is None
    assert kernels.load_ops("torch") is reference
    assert kernels.resolve_backend("torch", "cpu") == "torch"


def test_auto_on_cpu_is_the_cpu_kernels_or_torch_never_the_interpreter(monkeypatch) -> None:
    assert kernels.resolve_backend("auto", "cpu") in ("cpu", "torch")
    from reference_engine.kernels import cpu_ops

    # a machine whose compiler fails: auto falls back to torch, an explicit "cpu" says why in one line
    monkeypatch.setattr(cpu_ops, "_extension", None)
    monkeypatch.setattr(cpu_ops, "_build_error", "the CPU extension failed to build: g++: fatal error")
    assert kernels.resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match=r"^attention backend 'cpu' is unavailable on cpu: the CPU extension failed"):
        kernels.resolve_backend("cpu", "cpu")


@pytest.mark.skipif(torch.version.cuda is not None, reason="checks the message of a CPU-only torch")
def test_cuda_on_cpu_only_torch_says_why() -> None:
    reason = kernels.available_backends("cpu")["cuda"]
    assert reason == "CUDA kernels need a CUDA build of torch and nvcc; this torch is CPU-only"
    with pytest.raises(RuntimeError, match="this torch is CPU-only"):
        kernels.load_ops("cuda")
    with pytest.raises(ValueError, match=r"^attention backend 'cuda' is unavailable on cpu: CUDA kernels need"):
        kernels.resolve_backend("cuda", "cpu")


def test_triton_on_cpu_needs_the_interpreter() -> None:
    pytest.importorskip("triton")
    from triton import knobs

    if knobs.runtime.interpret:
        pytest.skip("TRITON_INTERPRET is set in this process")
    assert "TRITON_INTERPRET=1" in kernels.available_backends("cpu")["triton"]
    with pytest.raises(ValueError, match="'triton' is unavailable on cpu"):
        kernels.resolve_backend("triton", "cpu")


def test_unknown_backend_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="choose one of auto, torch, cpu, triton, cuda"):
        kernels.resolve_backend("flash", "cpu")
    with pytest.raises(ValueError, match="unknown kernel backend"):
        kernels.load_ops("flash")
