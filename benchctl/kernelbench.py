"""`benchctl bench-attention`: paged decode attention against contiguous SDPA at the same shapes.

The question PagedAttention has to answer: what does reading K/V through a block table cost against the same
attention over contiguous per-sequence tensors? Each kernel backend of the reference engine that runs here is timed
on one decode batch (num_seqs sequences of context_len tokens each, blocks shuffled across the cache), and so is
torch's scaled_dot_product_attention over contiguous (S, Hkv, L, D) keys and values (no mask: every sequence has
the same length, the most favourable case for the contiguous layout). Times are the median of many calls after a
warm-up, interleaved call by call so machine noise hits every implementation alike; the ratio column is median
time / contiguous median time (1.10 = 10% slower than contiguous).

With --queries-per-seq Q > 1 each sequence has Q query rows, at its last Q positions, each seeing the context up to
itself: a decode token and Q - 1 draft tokens being verified (or the last Q tokens of a prefill chunk). The paged
kernels get them as rows of their own with the sequence's block table; SDPA gets them as Q queries per sequence with
a causal mask over the contiguous keys.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def _interleaved_seconds(fns: dict[str, Callable[[], object]], min_time_s: float, warmup: int = 3
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


def bench_attention(num_seqs: int, context_len: int, num_heads: int, num_kv_heads: int, head_dim: int,
                    block_size: int, backends: list[str], threads: int | None, min_time_s: float,
                    seed: int = 0, queries_per_seq: int = 1) -> dict:
    """{"shapes": ..., "results": [{"impl", "median_us", "calls", "vs_contiguous", "max_abs_err"}]}."""
    import torch
    import torch.nn.functional as F

    from reference_engine import kernels

    if num_heads % num_kv_heads:
        raise ValueError(f"--heads {num_heads} is not a multiple of --kv-heads {num_kv_heads}")
    if not 1 <= queries_per_seq <= context_len:
        raise ValueError(f"--queries-per-seq {queries_per_seq} must be between 1 and --context-len {context_len}")
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
    lens = (torch.arange(context_len - queries_per_seq + 1, context_len + 1, dtype=torch.int32)
            .repeat(num_seqs))
    # The same keys and values, contiguous per sequence: (S, Hkv, L, D)
    keys = k_cache[seq_tables.long()].flatten(1, 2)[:, :context_len].transpose(1, 2).contiguous()
    values = v_cache[seq_tables.long()].flatten(1, 2)[:, :context_len].transpose(1, 2).contiguous()
    # (S, Hkv, G*Q, D): a KV head's query heads and rows as one query block, so SDPA needs no GQA expansion
    q4 = (query.view(num_seqs, queries_per_seq, num_kv_heads, group, head_dim).permute(0, 2, 3, 1, 4)
          .reshape(num_seqs, num_kv_heads, group * queries_per_seq, head_dim))
    # query row (g, i) sees keys 0 .. context_len - Q + i; None for one row per sequence (it sees everything)
    mask = None
    if queries_per_seq > 1:
        mask = torch.ones(queries_per_seq, context_len, dtype=torch.bool).tril(context_len - queries_per_seq)
        mask = mask.repeat(group, 1)
    scale = head_dim ** -0.5

    def contiguous() -> torch.Tensor:
        out = F.scaled_dot_product_attention(q4, keys, values, attn_mask=mask, scale=scale)
        return (out.view(num_seqs, num_kv_heads, group, queries_per_seq, head_dim).permute(0, 3, 1, 2, 4)
                .reshape(rows, num_heads, head_dim))

    with torch.inference_mode():
        expected = contiguous()
        available = kernels.available_backends("cpu")
        fns: dict[str, Callable[[], torch.Tensor]] = {"contiguous sdpa": contiguous}
        unavailable: dict[str, str] = {}
        for name in backends:
            if name not in available:
                raise ValueError(f"unknown kernel backend {name!r}; choose from {', '.join(available)}")
            if available[name] is not None:
                unavailable[f"paged {name}"] = available[name]
                continue
            ops = kernels.load_ops(name)
            fns[f"paged {name}"] = lambda ops=ops: ops.paged_decode_attention(query, k_cache, v_cache, tables, lens,
                                                                              scale)
        errors = {impl: (fn() - expected).abs().max().item() for impl, fn in fns.items()}
        times = _interleaved_seconds(fns, min_time_s)
    base = statistics.median(times["contiguous sdpa"])
    results = [{"impl": impl, "median_us": statistics.median(t) * 1e6, "min_us": min(t) * 1e6, "calls": len(t),
                "vs_contiguous": statistics.median(t) / base, "max_abs_err": errors[impl]}
               for impl, t in times.items()]
    results += [{"impl": impl, "unavailable": reason} for impl, reason in unavailable.items()]
    return {"shapes": {"num_seqs": num_seqs, "context_len": context_len, "queries_per_seq": queries_per_seq,
                       "num_heads": num_heads, "num_kv_heads": num_kv_heads, "head_dim": head_dim,
                       "block_size": block_size, "dtype": "float32", "threads": torch.get_num_threads()},
            "results": results}


def bench_attention_command(
    num_seqs: Annotated[int, typer.Option("--num-seqs", min=1, help="Sequences in the decode batch.")] = 32,
    context_len: Annotated[int, typer.Option("--context-len", min=1, help="Tokens of context per sequence.")] = 256,
    queries_per_seq: Annotated[int, typer.Option(
        "--queries-per-seq", min=1, help="Query rows per sequence at its last positions (1 + draft tokens).")] = 1,
    heads: Annotated[int, typer.Option("--heads", min=1, help="Query heads (SmolLM2-135M: 9).")] = 9,
    kv_heads: Annotated[int, typer.Option("--kv-heads", min=1, help="KV heads (SmolLM2-135M: 3).")] = 3,
    head_dim: Annotated[int, typer.Option("--head-dim", min=1)] = 64,
    block_size: Annotated[int, typer.Option("--block-size", min=1)] = 16,
    backends: Annotated[str, typer.Option("--backends", help="Comma-separated kernel backends to time.")] = "torch,cpu",
    threads: Annotated[int, typer.Option("--threads", min=0, help="torch threads (0 = torch's default).")] = 0,
    min_time: Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timed calls per impl.")] = 1.0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Time paged decode attention (each kernel backend) against contiguous SDPA at the same shapes (CPU)."""
    names = [b.strip() for b in backends.split(",") if b.strip()]
    try:
        result = bench_attention(num_seqs, context_len, heads, kv_heads, head_dim, block_size, names, threads or None,
                                 min_time, queries_per_seq=queries_per_seq)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if json_out:
        print(json.dumps(result, indent=2))
        return
    s = result["shapes"]
    rows = f" x {s['queries_per_seq']} query rows" if s["queries_per_seq"] > 1 else ""
    table = Table(title=f"decode attention, {s['num_seqs']} seqs{rows} x {s['context_len']} tokens, H={s['num_heads']} "
                        f"Hkv={s['num_kv_heads']} D={s['head_dim']} block {s['block_size']}, fp32, "
                        f"{s['threads']} threads")
    for col in ("impl", "median µs", "min µs", "calls", "vs contiguous", "max abs err"):
        table.add_column(col, justify="left" if col == "impl" else "right")
    for r in result["results"]:
        if "unavailable" in r:
            table.add_row(r["impl"], "-", "-", "-", "-", f"unavailable: {r['unavailable']}")
        else:
            table.add_row(r["impl"], f"{r['median_us']:.1f}", f"{r['min_us']:.1f}", str(r["calls"]),
                          f"{r['vs_contiguous']:.2f}x",
                          f"{r['max_abs_err']:.1e}")
    Console(width=160).print(table)
