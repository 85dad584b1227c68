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
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from benchctl.worker.child import ChildFailed, run_child


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
    """{"shapes": ..., "results": [{"impl", "median_us", "calls", "vs_contiguous", "max_abs_err"}]}, measured in a
    child process (benchctl.worker.attention_bench): the harness never imports torch or the engine. ValueError for
    shapes or kernel backends that cannot be benchmarked."""
    if num_heads % num_kv_heads:
        raise ValueError(f"--heads {num_heads} is not a multiple of --kv-heads {num_kv_heads}")
    if not 1 <= queries_per_seq <= context_len:
        raise ValueError(f"--queries-per-seq {queries_per_seq} must be between 1 and --context-len {context_len}")
    payload = {
        "num_seqs": num_seqs,
        "context_len": context_len,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "head_dim": head_dim,
        "block_size": block_size,
        "backends": backends,
        "threads": threads,
        "min_time_s": min_time_s,
        "seed": seed,
        "queries_per_seq": queries_per_seq,
    }
    try:
        return run_child("benchctl.worker.attention_bench", payload)
    except ChildFailed as e:
        if e.invalid:
            raise ValueError(str(e)) from None
        raise


def bench_attention_command(
    num_seqs: Annotated[int, typer.Option("--num-seqs", min=1, help="Sequences in the decode batch.")] = 32,
    context_len: Annotated[int, typer.Option("--context-len", min=1, help="Tokens of context per sequence.")] = 256,
    queries_per_seq: Annotated[
        int,
        typer.Option(
            "--queries-per-seq", min=1, help="Query rows per sequence at its last positions (1 + draft tokens)."
        ),
    ] = 1,
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
        result = bench_attention(
            num_seqs,
            context_len,
            heads,
            kv_heads,
            head_dim,
            block_size,
            names,
            threads or None,
            min_time,
            queries_per_seq=queries_per_seq,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    except ChildFailed as e:  # no torch here, the kernels failed to build, ...: the child's own line
        typer.echo(f"benchctl: error: bench-attention: {e}", err=True)
        raise typer.Exit(1) from None
    if json_out:
        print(json.dumps(result, indent=2))
        return
    s = result["shapes"]
    rows = f" x {s['queries_per_seq']} query rows" if s["queries_per_seq"] > 1 else ""
    table = Table(
        title=f"decode attention, {s['num_seqs']} seqs{rows} x {s['context_len']} tokens, H={s['num_heads']} "
        f"Hkv={s['num_kv_heads']} D={s['head_dim']} block {s['block_size']}, fp32, "
        f"{s['threads']} threads"
    )
    for col in ("impl", "median µs", "min µs", "calls", "vs contiguous", "max abs err"):
        table.add_column(col, justify="left" if col == "impl" else "right")
    for r in result["results"]:
        if "unavailable" in r:
            table.add_row(r["impl"], "-", "-", "-", "-", f"unavailable: {r['unavailable']}")
        else:
            table.add_row(
                r["impl"],
                f"{r['median_us']:.1f}",
                f"{r['min_us']:.1f}",
                str(r["calls"]),
                f"{r['vs_contiguous']:.2f}x",
                f"{r['max_abs_err']:.1e}",
            )
    Console(width=160).print(table)
