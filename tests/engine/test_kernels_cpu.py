"""The CPU C++ kernels (reference_engine/csrc/cpu/cpu_ops.cpp) against reference.py, compiled for real with g++.

The attention cases use random_paged_decode_case: shuffled physical blocks with NaN in every row a sequence does
not own, so a kernel that reads past its context or through a -1 table entry fails instead of passing by luck.
Each test runs once per ISA path this CPU runs (cpu_isa_paths.isa_path: avx512, avx2, scalar builds of the same
source). Skipped only where no C++ compiler exists (in CI a missing compiler fails the build test instead).
"""

from __future__ import annotations

import cpu_isa_paths
import pytest
import torch
from cpu_isa_paths import NOT_RUNNABLE, RUNNABLE
from engine_envs import require_cpu_kernels

from reference_engine import kernels
from reference_engine.kernels import reference
from reference_engine.kernels.testing import TOLERANCES, random_paged_decode_case

require_cpu_kernels()
isa_path = cpu_isa_paths.isa_path  # the module fixture: every test once per ISA path this CPU runs


@pytest.fixture(scope="module")
def cpu_ops(isa_path):
    ops = kernels.load_ops("cpu")
    assert ops.isa() == isa_path  # what the binary was compiled for, not what was asked
    return ops


# context lens around block boundaries, GQA ratios 1/3/4, block sizes 8/16/32, head dims 64/128/80
ATTENTION_CASES = {
    "fp32-b16-d64-gqa3": dict(lens=[1, 16, 17, 45, 300], kv=3, ratio=3, dim=64, block=16, dtype=torch.float32),
    "fp32-b8-d128-gqa4": dict(lens=[1, 8, 9, 1100], kv=1, ratio=4, dim=128, block=8, dtype=torch.float32),
    "fp32-b32-d80-gqa1": dict(lens=[2, 32, 33, 99], kv=2, ratio=1, dim=80, block=32, dtype=torch.float32),
    "bf16-b16-d64-gqa3": dict(lens=[1, 16, 17, 600], kv=1, ratio=3, dim=64, block=16, dtype=torch.bfloat16),
    "fp16-b16-d64-gqa2": dict(lens=[3, 48, 70], kv=2, ratio=2, dim=64, block=16, dtype=torch.float16),
}


@pytest.mark.parametrize("case_id", ATTENTION_CASES)
def test_paged_attention_matches_the_reference(cpu_ops, case_id):
    p = ATTENTION_CASES[case_id]
    case = random_paged_decode_case(
        p["lens"],
        num_kv_heads=p["kv"],
        queries_per_kv=p["ratio"],
        head_dim=p["dim"],
        block_size=p["block"],
        dtype=p["dtype"],
        seed=len(p["lens"]) + p["dim"],
    )
    args = (case.query, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale)
    out = cpu_ops.paged_decode_attention(*args)
    expected = reference.paged_decode_attention(*args)
    tol = TOLERANCES[p["dtype"]]
    assert out.dtype == p["dtype"] and out.shape == expected.shape
    assert not out.isnan().any(), "read a NaN row: past a context or through a -1 table entry"
    torch.testing.assert_close(out.float(), expected.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("dim,kv,ratio", [(64, 3, 3), (128, 1, 4)])
def test_rows_sharing_a_block_table_are_answered_as_one_row_each(cpu_ops, dim, kv, ratio):
    # A sequence's decode token and draft tokens, or its prefill chunk, are consecutive rows with the same block
    # table: the kernel reads their K/V once for the group, and each row must still get exactly its own answer.
    # Long contexts are scored in fixed parts and merged: a row's answer depends on its own length alone.
    g = torch.Generator().manual_seed(dim)
    num_blocks, block = 200, 16
    k_cache, v_cache = (torch.randn(num_blocks, block, kv, dim, generator=g) for _ in range(2))
    free = torch.randperm(num_blocks, generator=g).tolist()
    a, b, c, d = free[:20], free[20:23], free[23:24], free[29:159]
    shares_a = a[:2] + free[24:29]  # another sequence whose first two blocks are a's (prefix caching)
    rows = (
        [(a, n) for n in range(250, 254)]  # a decode token and 3 drafts
        + [(b, n) for n in range(1, 41)]  # a 40-token prefill chunk: more rows than one group takes
        + [(c, 7)]
        + [(shares_a, n) for n in (30, 33, 31)]  # not a's rows: other blocks past the second
        + [(a, 17), (a, 5)]  # shorter rows after longer ones, same table
        # contexts past one 1024-token part, merged from parts; in a group, rows that end in different parts
        + [(d, n) for n in (1023, 1024, 1025, 1110, 2080)]
    )
    width = max(len(t) for t, _ in rows)
    tables = torch.tensor([t + [-1] * (width - len(t)) for t, _ in rows], dtype=torch.int32)
    lens = torch.tensor([n for _, n in rows], dtype=torch.int32)
    query = torch.randn(len(rows), kv * ratio, dim, generator=g)
    scale = dim**-0.5
    together = cpu_ops.paged_decode_attention(query, k_cache, v_cache, tables, lens, scale)
    one_by_one = torch.cat(
        [
            cpu_ops.paged_decode_attention(
                query[i : i + 1], k_cache, v_cache, tables[i : i + 1], lens[i : i + 1], scale
            )
            for i in range(len(rows))
        ]
    )
    assert torch.equal(together, one_by_one)
    torch.testing.assert_close(
        together, reference.paged_decode_attention(query, k_cache, v_cache, tables, lens, scale), atol=2e-5, rtol=2e-5
    )


def test_paged_attention_takes_a_strided_query(cpu_ops):
    # in the engine the query is a slice of the fused qkv projection output
    case = random_paged_decode_case([5, 40], num_kv_heads=1, queries_per_kv=3, head_dim=64, block_size=16)
    qkv = torch.cat([case.query, torch.randn(2, 2, 64)], dim=1)  # (S, H + 2*Hkv, D)
    query = qkv[:, :3]
    assert not query.is_contiguous()
    args = (query, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale)
    torch.testing.assert_close(
        cpu_ops.paged_decode_attention(*args), reference.paged_decode_attention(*args), atol=2e-5, rtol=2e-5
    )


def test_paged_attention_rejects_bad_inputs_with_a_message(cpu_ops):
    case = random_paged_decode_case([5], num_kv_heads=1, queries_per_kv=3, head_dim=64, block_size=16)
    with pytest.raises(RuntimeError, match="int32"):
        cpu_ops.paged_decode_attention(
            case.query, case.k_cache, case.v_cache, case.block_tables.long(), case.context_lens, case.scale
        )
    with pytest.raises(RuntimeError, match="head_dim"):
        cpu_ops.paged_decode_attention(
            case.query[..., :32], case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_elementwise_ops_match_the_reference(cpu_ops, dtype):
    gen = torch.Generator().manual_seed(1)
    x = (3 * torch.randn(2, 3, 2 * 96, generator=gen)).to(dtype)
    h = (2 * torch.randn(5, 576, generator=gen)).to(dtype)
    w = (1 + 0.1 * torch.randn(576, generator=gen)).to(dtype)
    tol = TOLERANCES[dtype]
    silu = cpu_ops.silu_and_mul(x)
    assert silu.shape == (2, 3, 96) and silu.dtype == dtype
    torch.testing.assert_close(silu.float(), reference.silu_and_mul(x).float(), atol=tol, rtol=tol)
    norm = cpu_ops.rms_norm(h, w, 1e-5)
    assert norm.shape == h.shape and norm.dtype == dtype
    torch.testing.assert_close(norm.float(), reference.rms_norm(h, w, 1e-5).float(), atol=tol, rtol=tol)


def test_reshape_and_cache_writes_slices_of_the_qkv_output(cpu_ops):
    gen = torch.Generator().manual_seed(3)
    k_cache, v_cache = torch.randn(6, 16, 2, 64, generator=gen), torch.randn(6, 16, 2, 64, generator=gen)
    qkv = torch.randn(7, 6 + 2 * 2, 64, generator=gen)  # keys and values as slices, as the model passes them
    key, value = qkv[:, 6:8], qkv[:, 8:]
    assert not key.is_contiguous()
    slots = torch.randperm(6 * 16, generator=gen)[:7]
    slots[[1, 4]] = -1  # padding: not written
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    reference.reshape_and_cache(key, value, k_ref, v_ref, slots)
    cpu_ops.reshape_and_cache(key, value, k_cache, v_cache, slots)
    assert torch.equal(k_cache, k_ref) and torch.equal(v_cache, v_ref)
    with pytest.raises(RuntimeError, match="outside the cache"):
        cpu_ops.reshape_and_cache(key, value, k_cache, v_cache, torch.full((7,), 6 * 16))


def test_rotary_in_place_matches_the_model_expression(cpu_ops):
    from reference_engine.model.llama import apply_rope, rope_cos_sin

    gen = torch.Generator().manual_seed(4)
    cos_sin = rope_cos_sin(64, 100000.0, 512, torch.device("cpu"))  # (pos, 2, D)
    positions = torch.randint(0, 512, (9,), generator=gen)
    qkv = torch.randn(9, 9 + 2 * 3, 64, generator=gen)
    table = cos_sin[positions]  # (T, 2, D)
    expected = apply_rope(qkv[:, :12], table[:, 0, None], table[:, 1, None])
    rotated = qkv.clone()
    cpu_ops.rotary(rotated, table, 12)
    torch.testing.assert_close(rotated[:, :12], expected, atol=1e-6, rtol=1e-6)  # an ulp at most (FMA)
    assert torch.equal(rotated[:, 12:], qkv[:, 12:])  # V heads untouched


def test_auto_on_cpu_picks_the_cpu_kernels_and_the_build_is_keyed_on_this_cpu_and_path(cpu_ops, isa_path):
    assert kernels.available_backends("cpu")["cpu"] is None
    assert kernels.resolve_backend("auto", "cpu") == "cpu"
    assert kernels.resolve_backend("cpu", "cpu") == "cpu"
    assert cpu_ops.build().__name__ == f"benchctl_cpu_ops_{isa_path}_{cpu_ops.cpu_fingerprint(isa_path)}"
    assert len({cpu_ops.build_name(isa) for isa in cpu_ops.ISAS}) == len(cpu_ops.ISAS)  # one directory per path
    assert cpu_ops.built_isa() == isa_path
    assert "not 'cuda'" in kernels.available_backends("cuda")["cpu"]


def test_the_environment_picks_the_path_and_a_path_the_cpu_lacks_is_an_error(monkeypatch):
    from reference_engine.kernels import cpu_ops

    monkeypatch.setattr(cpu_ops, "_selected", None)
    monkeypatch.delenv(cpu_ops.ISA_ENV, raising=False)
    assert cpu_ops.resolve_isa() == RUNNABLE[0]  # auto: the fastest this CPU runs
    for isa in RUNNABLE:
        monkeypatch.setenv(cpu_ops.ISA_ENV, isa)
        assert cpu_ops.resolve_isa() == isa
    monkeypatch.setenv(cpu_ops.ISA_ENV, "avx3")
    with pytest.raises(ValueError, match=r"REFERENCE_ENGINE_CPU_ISA='avx3': choose one of auto, avx512, avx2, scal"):
        cpu_ops.resolve_isa()
    monkeypatch.setenv(cpu_ops.ISA_ENV, "avx512")
    monkeypatch.setattr(cpu_ops, "cpu_flags", lambda: {"avx", "avx2", "fma", "f16c"})  # an AVX2-only CPU
    with pytest.raises(ValueError, match="ISA='avx512': this CPU lacks avx512bw, avx512dq, avx512f, avx512vl"):
        cpu_ops.resolve_isa()
    with pytest.raises(ValueError, match="^ISA path 'avx512': this CPU lacks avx512bw"):  # asked for by name
        cpu_ops.resolve_isa("avx512")
    monkeypatch.setenv(cpu_ops.ISA_ENV, "auto")
    assert cpu_ops.resolve_isa() == "avx2"


@pytest.mark.parametrize("isa", NOT_RUNNABLE)
def test_a_path_this_cpu_cannot_run_still_compiles(isa):
    from reference_engine.kernels import cpu_ops

    cpu_ops.compile_only(isa)  # RuntimeError with the compiler's first error otherwise


# rows: every tile height (1-12), two and more blocks over a panel (13, 25, 64, 100), one chunk of rows and the
# next (128, 129), three chunks with a short last one (300);
# n: whole panels, a last panel with 1, 5, 16 and 17 columns (the masked stores of both halves)
@pytest.mark.parametrize("rows", [*range(1, 14), 25, 64, 100, 128, 129, 300])
@pytest.mark.parametrize("k, n", [(576, 960), (1536, 576), (100, 37), (16, 1), (7, 48), (33, 17)])
def test_packed_linear_matches_a_float64_matmul(cpu_ops, rows, k, n):
    from reference_engine.kernels import cpu_ops as ext

    g = torch.Generator().manual_seed(rows * 1000 + k + n)
    x = torch.randn(rows, k, generator=g)
    w = torch.randn(n, k, generator=g)
    packed = ext.pack_panels(w)
    assert packed.shape == (-(-n // 32), k, 32) and packed.data_ptr() % 64 == 0
    assert torch.equal(packed[0, :, 0], w[0]) and not packed.reshape(-1, k * 32).isnan().any()
    got = ext.packed_linear(x, packed, n)
    exact = (x.double() @ w.double().T).float()
    # fp32 dot products of length k, summed in another order than any library's: within a few ulp of the sum
    torch.testing.assert_close(got, exact, rtol=1e-5, atol=1e-5 * k**0.5)
    torch.testing.assert_close(ext.packed_linear(x.T.contiguous().T, packed, n), got)  # strided x: made contiguous


def test_packed_linear_gives_each_row_the_same_bits_whatever_rows_come_with_it(cpu_ops):
    # every output is one k-ordered chain of FMAs, whichever tile height, row block or chunk of rows computes it:
    # a step's answer for a sequence does not depend on what else the step holds
    from reference_engine.kernels import cpu_ops as ext

    g = torch.Generator().manual_seed(7)
    x, w = torch.randn(300, 576, generator=g), torch.randn(200, 576, generator=g)
    packed = ext.pack_panels(w)
    whole = ext.packed_linear(x, packed, 200)
    parts = [ext.packed_linear(x[a:b], packed, 200) for a, b in [(0, 1), (1, 8), (8, 20), (20, 170), (170, 300)]]
    assert torch.equal(whole, torch.cat(parts))


def test_packed_linear_rejects_what_it_cannot_do(cpu_ops):
    from reference_engine.kernels import cpu_ops as ext

    packed = ext.pack_panels(torch.randn(40, 16))
    with pytest.raises(RuntimeError, match="disagree on K"):
        ext.packed_linear(torch.randn(2, 15), packed, 40)
    with pytest.raises(RuntimeError, match="does not match 2 panels"):
        ext.packed_linear(torch.randn(2, 16), packed, 70)
    with pytest.raises(RuntimeError, match="float32"):
        ext.packed_linear(torch.randn(2, 16, dtype=torch.float64), packed.double(), 40)
    with pytest.raises(RuntimeError, match="64-byte aligned"):
        ext.packed_linear(torch.randn(2, 16), torch.randn(2 * 16 * 32 + 1)[1:].view(2, 16, 32), 40)


@pytest.mark.parametrize("vocab", [1, 5, 31, 32, 47, 49152])
def test_argmax_gives_torch_argmax_answers(cpu_ops, vocab):
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(9, vocab, generator=gen)
    logits[1] = 0.25  # a row of ties: the first index
    logits[2, vocab // 2 :] = logits[2].max() + 1  # ties at the maximum past the first lane block
    logits[3] = float("-inf")
    if vocab > 3:
        logits[4, 3] = float("nan")  # a NaN is the maximum, wherever the largest number is
        logits[5, [vocab - 1, 2]] = float("nan")  # the first NaN, not the last
    logits[6, -1] = float("inf")
    logits[7, 0] = logits[7].max() + 0.5  # the maximum in the first vector, then only smaller values
    got = cpu_ops.argmax(logits)
    assert got.dtype == torch.int64
    assert torch.equal(got, logits.argmax(dim=-1))
    assert torch.equal(cpu_ops.argmax(logits.t().contiguous().t()), logits.argmax(dim=-1))  # strided rows
    assert cpu_ops.argmax(logits[:0]).shape == (0,)


def test_argmax_falls_back_to_torch_for_other_dtypes(cpu_ops):
    logits = torch.randn(3, 40).to(torch.bfloat16)
    assert torch.equal(cpu_ops.argmax(logits), logits.argmax(dim=-1))
    from reference_engine.attention import TORCH_OPS, get_attention_ops

    assert get_attention_ops("cpu").argmax is cpu_ops.argmax  # what the engine hands its sampler
    assert TORCH_OPS.argmax is None  # the torch path keeps torch.argmax


def test_the_engine_records_the_path_its_kernels_were_built_for(model_dir, monkeypatch):
    # REFERENCE_ENGINE_CPU_ISA picks the path for a whole engine process; info() (run.json's engine section) says
    # which binary ran, and what was asked for
    from reference_engine import LLMEngine
    from reference_engine.kernels import cpu_ops

    path = RUNNABLE[1] if len(RUNNABLE) > 1 else RUNNABLE[0]  # not auto's choice where there is another
    monkeypatch.setattr(cpu_ops, "_selected", None)
    monkeypatch.setattr(cpu_ops, "_extension", None)
    monkeypatch.setenv(cpu_ops.ISA_ENV, path)
    engine = LLMEngine(model_dir, kv_cache_bytes=16 << 20, max_model_len=256)
    assert engine.info()["cpu_kernels"] == {"isa": path, "requested": path, "runnable": RUNNABLE}
    assert engine.info()["attention_backend"] == "cpu" and engine.info()["gemm"] == "packed"
    engine.close()
    monkeypatch.setattr(cpu_ops, "_extension", None)  # a process that built no CPU kernels records none
    assert cpu_ops.info() is None
