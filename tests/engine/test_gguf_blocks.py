"""Projections streamed as GGUF blocks: the kernel expands exactly the float32 weights, the index reader agrees with
gguf's own, and the engine on the bundled Q4_1 model uses the blocks and keeps HF's tokens."""

from __future__ import annotations

import shutil

import cpu_isa_paths
import gguf  # a dependency of the reference extra (the conversion needs it)
import numpy as np
import pytest
import torch
from engine_envs import require_cpu_kernels
from engine_fixtures import greedy

from reference_engine.model import gguf_blocks

require_cpu_kernels()
isa_path = cpu_isa_paths.isa_path  # the module fixture: every test once per ISA path this CPU runs


@pytest.fixture(scope="module")
def ext(isa_path):
    """The kernels built for each ISA path this CPU runs (cpu_isa_paths), one path after the other."""
    from reference_engine.kernels import cpu_ops

    assert cpu_ops.isa() == isa_path
    return cpu_ops


def random_blocks(fmt: str, n: int, k: int, seed: int) -> np.ndarray:
    """(n, k/32 * block bytes) uint8 in GGUF's layout, with every kind of float16 scale: normal and subnormal,
    negative, zero, large; and every quant value."""
    rng = np.random.default_rng(seed)
    nb = k // 32
    scales = rng.standard_normal((n, nb, 2)).astype(np.float16)
    scales[..., 0] *= np.float16(0.01)
    flat = scales.reshape(-1)
    flat[::7] = np.float16(3e-6)  # subnormal in float16
    flat[1::11] = 0
    flat[2::13] = np.float16(-2.5e4)
    if fmt == "Q4_1":
        qs = rng.integers(0, 256, (n, nb, 16), dtype=np.uint8)
        return np.concatenate([scales.view(np.uint8).reshape(n, nb, 4), qs], axis=-1).reshape(n, -1)
    qs = rng.integers(-128, 128, (n, nb, 32)).astype(np.int8).view(np.uint8)
    return np.concatenate([scales[..., :1].view(np.uint8).reshape(n, nb, 2), qs], axis=-1).reshape(n, -1)


def dequantized(fmt: str, blocks: np.ndarray) -> torch.Tensor:
    """gguf's own float32 dequantization (what transformers loads a GGUF with), (n, k)."""
    kind = {"Q4_1": gguf.GGMLQuantizationType.Q4_1, "Q8_0": gguf.GGMLQuantizationType.Q8_0}[fmt]
    return torch.from_numpy(np.ascontiguousarray(gguf.dequantize(blocks, kind), dtype=np.float32))


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


@pytest.mark.parametrize("fmt", ["Q4_1", "Q8_0"])
@pytest.mark.parametrize("n, k", [(960, 576), (576, 1536), (37, 64), (17, 32), (1, 96)])
def test_expanded_blocks_are_ggufs_float32_weights_bit_for_bit(ext, fmt, n, k):
    blocks = random_blocks(fmt, n, k, seed=n + k)
    weight = dequantized(fmt, blocks)
    packed = ext.pack_block_panels(torch.from_numpy(blocks), fmt)
    assert packed.data_ptr() % 64 == 0 and packed.shape[:2] == (-(-n // 32), k // 32)
    assert torch.equal(bits(ext.expand_block_panels(packed, fmt)), bits(ext.pack_panels(weight)))


@pytest.mark.parametrize("fmt", ["Q4_1", "Q8_0"])
@pytest.mark.parametrize("rows", [*range(1, 14), 16, 25, 64])
@pytest.mark.parametrize("n, k", [(960, 576), (37, 64), (17, 1536)])
def test_block_packed_linear_is_packed_linear_on_the_float32_weights(ext, fmt, rows, n, k):
    blocks = random_blocks(fmt, n, k, seed=rows)
    weight = dequantized(fmt, blocks)
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(rows))
    got = ext.block_packed_linear(x, ext.pack_block_panels(torch.from_numpy(blocks), fmt), n, fmt)
    assert torch.equal(bits(got), bits(ext.packed_linear(x, ext.pack_panels(weight), n)))
    # and it is the product: float32 sums of k terms, within a small fraction of the sum of the terms' sizes
    error = (got.double() - x.double() @ weight.double().T).abs()
    assert (error <= 3e-5 * (x.double().abs() @ weight.double().abs().T)).all()


def test_block_packed_linear_rejects_what_it_cannot_do(ext):
    packed = ext.pack_block_panels(torch.from_numpy(random_blocks("Q4_1", 40, 64, 0)), "Q4_1")
    with pytest.raises(RuntimeError, match="K=32 inputs, packed has 2 blocks of 32"):
        ext.block_packed_linear(torch.randn(2, 32), packed, 40, "Q4_1")
    with pytest.raises(RuntimeError, match=r"\(panels, K/32, 1088\) uint8"):
        ext.block_packed_linear(torch.randn(2, 64), packed, 40, "Q8_0")
    with pytest.raises(RuntimeError, match="does not match 2 panels"):
        ext.block_packed_linear(torch.randn(2, 64), packed, 70, "Q4_1")
    with pytest.raises(RuntimeError, match="float32"):
        ext.block_packed_linear(torch.randn(2, 64, dtype=torch.float64), packed, 40, "Q4_1")
    shifted = torch.empty(packed.numel() + 1, dtype=torch.uint8)[1:].view(packed.shape)
    with pytest.raises(RuntimeError, match="64-byte aligned"):
        ext.block_packed_linear(torch.randn(2, 64), shifted, 40, "Q4_1")


def test_unpermute_rows_is_transformers_reverse_permute():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    rows = np.arange(192 * 5).reshape(192, 5)
    expected = LlamaTensorProcessor()._reverse_permute_weights(rows, 9, 3)  # k: 3 KV heads
    assert np.array_equal(gguf_blocks.unpermute_rows(rows, 3), expected)
    assert not np.array_equal(expected, rows)


def test_tensor_index_agrees_with_ggufs_reader(tmp_path):
    from benchctl.models import alias_gguf_path

    bundled = alias_gguf_path("smollm2-135m")
    written = tmp_path / "small.gguf"  # other metadata kinds and a wider alignment
    writer = gguf.GGUFWriter(str(written), "llama")
    writer.add_uint32("general.alignment", 64)
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    writer.add_array("some.floats", [1.5, 2.5])
    writer.add_float64("some.double", 0.25)
    writer.add_tensor("blk.0.attn_v.weight", random_blocks("Q8_0", 4, 64, 1), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(7, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    for path in (bundled, written):
        index = gguf_blocks.read_tensor_index(path)
        reader = gguf.GGUFReader(str(path))
        assert len(index) == len(reader.tensors)
        for tensor in reader.tensors:
            assert index[tensor.name] == (
                int(tensor.tensor_type),
                tuple(int(d) for d in tensor.shape),
                tensor.data_offset,
            )


def test_a_file_that_is_not_gguf_is_a_value_error(tmp_path):
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ValueError, match="not a GGUF file"):
        gguf_blocks.read_tensor_index(not_gguf)
    from benchctl.models import alias_gguf_path

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(alias_gguf_path("smollm2-135m").read_bytes()[:200_000])
    with pytest.raises(ValueError, match="truncated GGUF header"):
        gguf_blocks.read_tensor_index(cut)


def test_the_bundled_model_streams_its_blocks_and_keeps_hfs_tokens(model_dir, prompt_ids, hf_greedy):
    from reference_engine import LLMEngine

    engine = LLMEngine(model_dir, kv_cache_bytes=64 << 20, max_model_len=512)
    info = engine.info()["gguf_blocks"]
    # every projection and the (tied) LM head: Q4_1 layers, a Q8_0 embedding, ~96 MB instead of ~538 MB of float32
    assert info["projections"] == info["of"] == 30 * 4 + 1 and info["formats"] == ["Q4_1", "Q8_0"]
    assert 90e6 < info["bytes"] < 100e6 and info["file"].endswith(".gguf")
    # 8 sequences (<= 16 rows): every decode step goes through the blocks
    assert [o.token_ids for o in engine.generate(prompt_ids, greedy())] == hf_greedy
    engine.close()


def test_gguf_file_none_and_auto_without_a_source_fall_back_to_float32_panels(
    model_dir, tmp_path, prompt_ids, hf_greedy
):
    from reference_engine import LLMEngine

    engine = LLMEngine(model_dir, kv_cache_bytes=64 << 20, max_model_len=512, gguf_file="none")
    assert engine.info()["gguf_blocks"] == {"file": None, "reason": "gguf_file=none"}
    assert [o.token_ids for o in engine.generate(prompt_ids, greedy())] == hf_greedy
    engine.close()
    copy = tmp_path / "model"  # the float32 folder without benchctl's record of its source
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns(gguf_blocks.CONVERSION_RECORD))
    info = LLMEngine(copy, kv_cache_bytes=16 << 20).info()["gguf_blocks"]
    assert info == {"file": None, "reason": "no GGUF source found"}


def test_an_explicit_gguf_file_must_reproduce_the_weights(model_dir, tmp_path):
    from reference_engine import LLMEngine

    with pytest.raises(ValueError, match="no such file"):
        LLMEngine(model_dir, gguf_file=str(tmp_path / "missing.gguf"))
    other = tmp_path / "other.gguf"  # a GGUF whose blocks are not this model's
    writer = gguf.GGUFWriter(str(other), "llama")
    writer.add_tensor(
        "blk.0.attn_output.weight", random_blocks("Q4_1", 576, 576, 2), raw_dtype=gguf.GGMLQuantizationType.Q4_1
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="the blocks of 121 of 121 projections are missing"):
        LLMEngine(model_dir, kv_cache_bytes=16 << 20, gguf_file=str(other))
    with pytest.raises(ValueError, match="read by the packed CPU float32 GEMM only"):
        LLMEngine(model_dir, kv_cache_bytes=16 << 20, gemm="onednn", gguf_file=str(other))
