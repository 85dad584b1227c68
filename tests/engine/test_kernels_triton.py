"""Triton kernels against reference.py, run by Triton's CPU interpreter.

TRITON_INTERPRET=1 must be set before triton is imported, and this pytest process may already have imported it
(or must not be changed for other modules), so the cases run in one subprocess: this file executed as a script,
with the variable set, prints one JSON result per case; the tests below check those numbers. The cases are chosen
to cover the issue's matrix in ~15 interpreted launches: context lengths 1, a multiple of the block size, one past
it, and long ones crossing partitions; shuffled physical blocks with NaN in every unowned row; block sizes 8/16/32;
head dims 64 and 128 (and 80, not a power of two); GQA ratios 1/3/4; fp32/fp16/bf16 (tolerances in
reference_engine.kernels.testing.TOLERANCES).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# (case id) -> parameters. Attention: context lens, KV heads, GQA ratio, head dim, block size, dtype, version,
# partition size (None = the kernels' default of 512 tokens).
ATTENTION_CASES: dict[str, dict] = {
    "fp32-b16-d64-gqa1-v1": dict(lens=[1, 16, 17, 45], kv=2, ratio=1, dim=64, block=16, dtype="float32", version=1),
    "fp32-b8-d128-gqa4-v2-1100": dict(
        lens=[1, 8, 9, 1100], kv=1, ratio=4, dim=128, block=8, dtype="float32", version=2
    ),
    "fp16-b32-d64-gqa3-v2-p64": dict(
        lens=[1, 32, 33, 200], kv=2, ratio=3, dim=64, block=32, dtype="float16", version=2, partition=64
    ),
    "fp16-b8-d64-gqa4-v1": dict(lens=[1, 8, 9, 70], kv=1, ratio=4, dim=64, block=8, dtype="float16", version=1),
    "bf16-b16-d128-gqa3-v1-600": dict(
        lens=[1, 16, 17, 600], kv=1, ratio=3, dim=128, block=16, dtype="bfloat16", version=1
    ),
    "bf16-b32-d64-gqa1-v2-1025": dict(lens=[1, 64, 1025], kv=2, ratio=1, dim=64, block=32, dtype="bfloat16", version=2),
    "fp32-b16-d80-gqa3-v2-p32-strided-q": dict(
        lens=[1, 32, 33, 99], kv=1, ratio=3, dim=80, block=16, dtype="float32", version=2, partition=32, strided=True
    ),
}
CACHE_CASES = {"float32": 16, "float16": 8, "bfloat16": 32}  # dtype -> block size
ELEMENTWISE_DTYPES = ("float32", "float16", "bfloat16")


def _run_attention(p: dict) -> dict:
    import torch

    from reference_engine.kernels import reference, triton_ops
    from reference_engine.kernels.testing import TOLERANCES, random_paged_decode_case

    dtype = getattr(torch, p["dtype"])
    case = random_paged_decode_case(
        p["lens"], num_kv_heads=p["kv"], queries_per_kv=p["ratio"], head_dim=p["dim"], block_size=p["block"],
        dtype=dtype, seed=len(p["lens"]) + p["dim"],
    )  # fmt: skip
    query = case.query
    if p.get("strided"):  # the query as a slice of a fused qkv projection output
        num_heads = query.shape[1]
        qkv = torch.zeros(query.shape[0], num_heads + 2 * p["kv"], p["dim"], dtype=dtype)
        qkv[:, :num_heads] = query
        query = qkv[:, :num_heads]
    kwargs = {"version": p["version"]}
    if "partition" in p:
        kwargs["partition_size"] = p["partition"]
    args = (query, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale)
    out = triton_ops.paged_decode_attention(*args, **kwargs)
    expected = reference.paged_decode_attention(*args)
    tol = TOLERANCES[dtype]
    return {
        "max_abs_err": (out.float() - expected.float()).abs().max().item(),
        "close": torch.allclose(out.float(), expected.float(), atol=tol, rtol=tol),
        "dtype_ok": out.dtype == dtype and out.shape == expected.shape,
        "max_abs_out": expected.float().abs().max().item(),
    }


def _run_cache(dtype_name: str, block_size: int) -> dict:
    import torch

    from reference_engine.kernels import reference, triton_ops

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(block_size)
    num_blocks, kv, dim = 5, 2, 64
    k_cache = torch.randn(num_blocks, block_size, kv, dim, generator=gen).to(dtype)
    v_cache = torch.randn(num_blocks, block_size, kv, dim, generator=gen).to(dtype)
    qkv = torch.randn(7, 4 + 2 * kv, dim, generator=gen).to(dtype)  # keys and values as slices of a qkv output
    key, value = qkv[:, 4 : 4 + kv], qkv[:, 4 + kv :]
    slots = torch.randperm(num_blocks * block_size, generator=gen)[:7]
    slots[[1, 4]] = -1
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    reference.reshape_and_cache(key, value, k_ref, v_ref, slots)
    triton_ops.reshape_and_cache(key, value, k_cache, v_cache, slots)
    return {"k_equal": torch.equal(k_cache, k_ref), "v_equal": torch.equal(v_cache, v_ref)}


def _run_elementwise(dtype_name: str) -> dict:
    import torch

    from reference_engine.kernels import reference, triton_ops
    from reference_engine.kernels.testing import TOLERANCES

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(1)
    x = (3 * torch.randn(2, 3, 2 * 96, generator=gen)).to(dtype)
    h = (2 * torch.randn(5, 576, generator=gen)).to(dtype)
    w = (1 + 0.1 * torch.randn(576, generator=gen)).to(dtype)
    silu_out, norm_out = triton_ops.silu_and_mul(x), triton_ops.rms_norm(h, w, 1e-5)
    silu, silu_ref = silu_out.float(), reference.silu_and_mul(x).float()
    norm, norm_ref = norm_out.float(), reference.rms_norm(h, w, 1e-5).float()
    tol = TOLERANCES[dtype]
    return {
        "silu_max_abs_err": (silu - silu_ref).abs().max().item(),
        "norm_max_abs_err": (norm - norm_ref).abs().max().item(),
        "silu_close": torch.allclose(silu, silu_ref, atol=tol, rtol=tol),
        "norm_close": torch.allclose(norm, norm_ref, atol=tol, rtol=tol),
        "shapes_ok": silu.shape == (2, 3, 96) and norm.shape == h.shape and silu_out.dtype == norm_out.dtype == dtype,
    }


def _all_cases() -> dict[str, tuple]:
    cases: dict[str, tuple] = {f"attention/{k}": (_run_attention, p) for k, p in ATTENTION_CASES.items()}
    cases.update({f"cache/{d}-b{b}": (_run_cache, d, b) for d, b in CACHE_CASES.items()})
    cases.update({f"elementwise/{d}": (_run_elementwise, d) for d in ELEMENTWISE_DTYPES})
    return cases


def _main() -> None:
    assert os.environ.get("TRITON_INTERPRET") == "1"
    from reference_engine.kernels import triton_ops

    assert triton_ops.INTERPRETED
    for case_id, (fn, *args) in _all_cases().items():
        try:
            result = fn(*args)
        except Exception:
            result = {"error": traceback.format_exc()}
        print(json.dumps({"id": case_id, **result}), flush=True)


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    pytest.importorskip("triton")
    pytest.importorskip("numpy")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, __file__], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {row.pop("id"): row for row in rows}


def _result(results: dict[str, dict], case_id: str) -> dict:
    row = results[case_id]
    if "error" in row:
        pytest.fail(row["error"], pytrace=False)
    return row


@pytest.mark.parametrize("case_id", list(ATTENTION_CASES))
def test_paged_decode_attention(results: dict[str, dict], case_id: str) -> None:
    row = _result(results, f"attention/{case_id}")
    assert row["dtype_ok"]
    assert row["max_abs_out"] > 0.1  # a real output, not zeros
    assert row["close"], row  # |out - ref| <= tol * (1 + |ref|), tol per dtype


@pytest.mark.parametrize("dtype_name", list(CACHE_CASES))
def test_reshape_and_cache(results: dict[str, dict], dtype_name: str) -> None:
    row = _result(results, f"cache/{dtype_name}-b{CACHE_CASES[dtype_name]}")
    assert row["k_equal"] and row["v_equal"]  # an exact copy; -1 slots and other rows untouched


@pytest.mark.parametrize("dtype_name", ELEMENTWISE_DTYPES)
def test_silu_and_mul_and_rms_norm(results: dict[str, dict], dtype_name: str) -> None:
    row = _result(results, f"elementwise/{dtype_name}")
    assert row["shapes_ok"]
    assert row["silu_close"] and row["norm_close"], row


if __name__ == "__main__":
    _main()
