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
import subprocess
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from benchctl.worker.child import ChildFailed, child_env, run_child


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


def bench_gemm(shapes: str, rows: str, isa: str, torch_isa: str, min_time_s: float, threads: int, warm: bool) -> dict:
    """The JSON of `python -m reference_engine.kernels.bench_gemm` (the CPU kernels' GEMMs against torch, per ISA
    path), run with the reference backend's interpreter: the harness never imports torch or the engine.
    ValueError for what the module refused (its exit code 2: a bad shape, a path this CPU cannot run)."""
    from benchctl.backend import get_backend

    argv = [
        get_backend("reference").python(),
        "-P",
        "-m",
        "reference_engine.kernels.bench_gemm",
        "--json",
        "--shapes",
        shapes,
        "--rows",
        rows,
        "--isa",
        isa,
        "--torch-isa",
        torch_isa,
        "--min-time",
        str(min_time_s),
        "--threads",
        str(threads),
        *(["--warm"] if warm else []),
    ]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=child_env())
    except OSError as e:
        raise ChildFailed(f"cannot start {argv[0]}: {e}") from None
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode == 2:
        raise ValueError(last.removeprefix("bench_gemm: error: "))
    if proc.returncode != 0:
        raise ChildFailed(f"reference_engine.kernels.bench_gemm exited with code {proc.returncode}: {last}")
    return json.loads(proc.stdout)


def bench_gemm_command(
    shapes: Annotated[
        str,
        typer.Option(
            "--shapes",
            help="Weights: SmolLM2-135M's projections (qkv, o, gate_up, down, lm_head), 'model' for all, or KxN.",
        ),
    ] = "qkv,o,gate_up,down",
    rows: Annotated[
        str, typer.Option("--rows", help="Rows of x (decode steps: 1, 16, 64; a prefill: 512).")
    ] = "1,16,64,512",
    isa: Annotated[
        str,
        typer.Option(
            "--isa",
            help="CPU kernels' ISA paths (avx512, avx2, scalar), comma-separated, or 'runnable': all this CPU runs.",
        ),
    ] = "runnable",
    torch_isa: Annotated[
        str,
        typer.Option(
            "--torch-isa", help="native, or avx2: torch's MKL and oneDNN capped at AVX2 (what an AVX2-only CPU gets)."
        ),
    ] = "native",
    min_time: Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of calls per impl and shape.")] = 0.3,
    threads: Annotated[int, typer.Option("--threads", min=0, help="torch threads (0 = torch's default).")] = 0,
    warm: Annotated[
        bool,
        typer.Option(
            "--warm",
            help="One copy of the weights, in cache where it fits (default: "
            "256 MiB of copies, read from memory as in a model pass).",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Time the CPU kernels' GEMMs (packed float32 panels, GGUF Q4_1 blocks) against torch, per ISA path (CPU)."""
    try:
        result = bench_gemm(shapes, rows, isa, torch_isa, min_time, threads, warm)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    except ChildFailed as e:
        typer.echo(f"benchctl: error: bench-gemm: {e}", err=True)
        raise typer.Exit(1) from None
    from benchctl import hwinfo

    cached = hwinfo.load_cached() or {}  # the ceilings hwinfo measured last (`benchctl hwinfo --refresh`)
    result["hwinfo"] = {key: cached.get(key) for key in ("gemm_fp32_flop_s", "read_bandwidth_gb_s", "measured_at")}
    if json_out:
        print(json.dumps(result, indent=2))
        return
    ceiling = result["hwinfo"]
    caption = (
        f"hwinfo ({ceiling['measured_at']}): fp32 GEMM {ceiling['gemm_fp32_flop_s'] / 1e9:.1f} GFLOP/s, read "
        f"{ceiling['read_bandwidth_gb_s']:.1f} GB/s"
        if ceiling["gemm_fp32_flop_s"]
        else "no hwinfo measurement cached (benchctl hwinfo)"
    )
    weights = "one copy of the weights" if warm else "weights read from memory"
    table = Table(title=f"projection GEMMs, fp32, {result['threads']} threads, {weights}", caption=caption)
    for col in ("shape", "rows", "impl", "median ms", "min ms", "GFLOP/s", "GB/s", "vs torch", "max abs err"):
        table.add_column(col, justify="left" if col in ("shape", "impl") else "right")
    for r in result["results"]:
        err = f"{r['max_abs_err']:.1e}" + ("" if r.get("same_as_packed", True) else " (not packed's bits)")
        table.add_row(
            r["shape"],
            str(r["rows"]),
            r["impl"],
            f"{r['median_s'] * 1e3:.3f}",
            f"{r['min_s'] * 1e3:.3f}",
            f"{r['gflop_s']:.1f}",
            f"{r['gb_s']:.1f}",
            f"{r['vs_torch']:.2f}x",
            err,
        )
    Console(width=160).print(table)
