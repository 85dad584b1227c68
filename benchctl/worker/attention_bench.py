"""Child program: the body of `benchctl bench-attention` (benchctl.kernelbench launches it), with torch and the
reference engine's kernels imported here, never in the harness process.

    python -P -m benchctl.worker.attention_bench '{"num_seqs": 32, "context_len": 256, ...}'
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from collections.abc import Callable, Mapping

from benchctl.worker.child import child_main


def _interleaved_seconds(
    fns: Mapping[str, Callable[[], object]], min_time_s: float, warmup: int = 3
) -> dict[str, list[float]]:
    """Per function, the seconds of each call. Calls are interleaved round by round (a, b, c, a, b, c, ...) so
    that a noisy neighbour or a frequency change hits every implementation alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    while min(len(t) for t in times.values()) < 5 or time.perf_counter() - start < min_time_s * len(fns):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def bench_attention(
    num_seqs: int,
    context_len: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    block_size: int,
    backends: list[str],
    threads: int | None,
    min_time_s: float,
    seed: int = 0,
    queries_per_seq: int = 1,
) -> dict:
    """benchctl.kernelbench.bench_attention's measurement (the shapes already checked there)."""
    import torch
    import torch.nn.functional as F

    from reference_engine import kernels

    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    group = num_heads // num_kv_heads
    blocks_per_seq = -(-context_len // block_size)
    num_blocks = num_seqs * blocks_per_seq
    rows = num_seqs * queries_per_seq
    query = torch.randn(rows, num_heads, head_dim, generator=gen)  # (S*Q, H, D), a sequence's Q rows together
    k_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=gen)  # (N, B, Hkv, D)
    v_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=gen)
    seq_tables = torch.randperm(num_blocks, generator=gen).to(torch.int32).view(num_seqs, blocks_per_seq)  # (S, M)
    tables = seq_tables.repeat_interleave(queries_per_seq, dim=0)  # (S*Q, M)
    # row i of a sequence sits at position context_len - Q + i and sees the tokens up to itself
    lens = torch.arange(context_len - queries_per_seq + 1, context_len + 1, dtype=torch.int32).repeat(num_seqs)
    # The same keys and values, contiguous per sequence: (S, Hkv, L, D)
    keys = k_cache[seq_tables.long()].flatten(1, 2)[:, :context_len].transpose(1, 2).contiguous()
    values = v_cache[seq_tables.long()].flatten(1, 2)[:, :context_len].transpose(1, 2).contiguous()
    # (S, Hkv, G*Q, D): a KV head's query heads and rows as one query block, so SDPA needs no GQA expansion
    q4 = (
        query.view(num_seqs, queries_per_seq, num_kv_heads, group, head_dim)
        .permute(0, 2, 3, 1, 4)
        .reshape(num_seqs, num_kv_heads, group * queries_per_seq, head_dim)
    )
    # query row (g, i) sees keys 0 .. context_len - Q + i; None for one row per sequence (it sees everything)
    mask = None
    if queries_per_seq > 1:
        mask = torch.ones(queries_per_seq, context_len, dtype=torch.bool).tril(context_len - queries_per_seq)
        mask = mask.repeat(group, 1)
    scale = head_dim**-0.5

    def contiguous() -> torch.Tensor:
        out = F.scaled_dot_product_attention(q4, keys, values, attn_mask=mask, scale=scale)
        return (
            out.view(num_seqs, num_kv_heads, group, queries_per_seq, head_dim)
            .permute(0, 3, 1, 2, 4)
            .reshape(rows, num_heads, head_dim)
        )

    with torch.inference_mode():
        expected = contiguous()
        available = kernels.available_backends("cpu")
        fns: dict[str, Callable[[], torch.Tensor]] = {"contiguous sdpa": contiguous}
        unavailable: dict[str, str] = {}
        for name in backends:
            if name not in available:
                raise ValueError(f"unknown kernel backend {name!r}; choose from {', '.join(available)}")
            reason = available[name]
            if reason is not None:
                unavailable[f"paged {name}"] = reason
                continue
            ops = kernels.load_ops(name)
            fns[f"paged {name}"] = functools.partial(
                ops.paged_decode_attention, query, k_cache, v_cache, tables, lens, scale
            )
        errors = {impl: (fn() - expected).abs().max().item() for impl, fn in fns.items()}
        times = _interleaved_seconds(fns, min_time_s)
    base = statistics.median(times["contiguous sdpa"])
    results = [
        {
            "impl": impl,
            "median_us": statistics.median(t) * 1e6,
            "min_us": min(t) * 1e6,
            "calls": len(t),
            "vs_contiguous": statistics.median(t) / base,
            "max_abs_err": errors[impl],
        }
        for impl, t in times.items()
    ]
    results += [{"impl": impl, "unavailable": reason} for impl, reason in unavailable.items()]
    return {
        "shapes": {
            "num_seqs": num_seqs,
            "context_len": context_len,
            "queries_per_seq": queries_per_seq,
            "num_heads": num_heads,
            "num_kv_heads": num_kv_heads,
            "head_dim": head_dim,
            "block_size": block_size,
            "dtype": "float32",
            "threads": torch.get_num_threads(),
        },
        "results": results,
    }


def run(payload: dict) -> dict:
    return bench_attention(**payload)


if __name__ == "__main__":
    sys.exit(child_main(run))
