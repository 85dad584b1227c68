"""The projection GEMMs of the CPU kernels against torch, per ISA path: `python -m reference_engine.kernels.bench_gemm`.

For each weight shape (by default the bundled SmolLM2-135M's fused projections and LM head) and each row count
(decode steps: 1, 16, 64 rows; a prefill step: 512), times y = x @ W.T as torch computes it (x @ W with W kept
(in, out), the engine's gemm=torch), as packed_linear over the float32 panels and as block_packed_linear over the
same weights in GGUF Q4_1 blocks, the last two once per ISA path asked for (each its own build of the kernels).
Each implementation cycles through copies of its weights adding up to 256 MiB of float32, so that, as in a model
pass, every call reads its weights from memory (--warm: one copy, in cache where it fits). Calls are interleaved
call by call (a b c a b c ...), so a noisy neighbour or a frequency change hits every implementation alike; each
row reports the median, the fastest and the tenths of its calls.

GFLOP/s = 2 M N K / median seconds / 1e9; GB/s = the bytes a call must move (its weights as stored, plus x and y)
/ median seconds / 1e9. The weights are random Q4_1 blocks and their exact float32 expansion, so every
implementation multiplies the same matrix: max_abs_err is against a float64 product, and the block GEMM must equal
the packed one bit for bit (`same_as_packed`).

--torch-isa avx2 caps torch's own GEMM libraries (MKL, oneDNN) at AVX2 before torch loads, for comparing an AVX2
path with what torch does on an AVX2-only CPU. Prints JSON with --json (what `benchctl bench-gemm` reads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

# SmolLM2-135M's projections as the engine runs them (q/k/v and gate/up fused): name -> (K inputs, N outputs)
MODEL_SHAPES = {
    "qkv": (576, 960),
    "o": (576, 576),
    "gate_up": (576, 3072),
    "down": (1536, 576),
    "lm_head": (576, 49152),
}
DEFAULT_ROWS = (1, 16, 64, 512)
# environment that caps torch's GEMM libraries at an ISA (read when they first run)
TORCH_ISA_ENV = {"avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
Q4_1_BLOCK_BYTES = 20  # float16 d, float16 m, 16 bytes of 4-bit q for 32 weights
# Weights cycled through by default: well past any last-level cache, like hwinfo's bandwidth measurement, so each
# call reads its weights from memory as a model pass does (one copy of a projection would stay in L3).
WEIGHTS_BYTES = 256 * 2**20
MAX_COPIES = 64


def interleaved_seconds(
    fns: dict[str, Callable[[], object]], min_time_s: float, warmup: int = 2, min_calls: int = 5
) -> dict[str, list[float]]:
    """Per function, the seconds of each call, the functions called in turn (a, b, c, a, b, c, ...)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    while min(len(t) for t in times.values()) < min_calls or time.perf_counter() - start < min_time_s * len(fns):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def random_q4_1_blocks(n: int, k: int, seed: int):
    """(n, k/32 * 20) uint8 in GGUF's Q4_1 layout: weights d * q + m with q in 0..15, d ~ 0.005, m ~ -8 d."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    nb = k // 32
    d = (0.005 * torch.randn(n, nb, 1, generator=gen).abs() + 1e-4).half()
    m = (-8 * d.float() + 0.001 * torch.randn(n, nb, 1, generator=gen)).half()
    qs = torch.randint(0, 256, (n, nb, 16), generator=gen, dtype=torch.uint8)
    return torch.cat([d.view(torch.uint8), m.view(torch.uint8), qs], dim=-1).reshape(n, nb * Q4_1_BLOCK_BYTES)


def cycling(fn: Callable[[object], object], items: list, start: int = 0) -> Callable[[], object]:
    """A call of fn on the next of items each time (round robin from items[start])."""
    state = {"i": start - 1}

    def call() -> object:
        state["i"] = (state["i"] + 1) % len(items)
        return fn(items[state["i"]])

    return call


def bench_shape(
    name: str,
    k: int,
    n: int,
    rows: list[int],
    isas: list[str],
    min_time_s: float,
    weights_bytes: int = 0,
    seed: int = 0,
) -> list[dict]:
    """One result per (rows, implementation) for weight shape (n, k). With weights_bytes, each implementation
    cycles through as many copies of its weights as that many float32 bytes take (a model pass's weights, read
    from memory); with 0 one copy, which stays in cache where it fits."""
    import torch

    from reference_engine.kernels import cpu_ops

    builds = {isa: cpu_ops.build(isa=isa) for isa in isas}
    first = builds[isas[0]]
    raw_blocks = random_q4_1_blocks(n, k, seed)
    copies = max(1, min(MAX_COPIES, -(-weights_bytes // (n * k * 4))))
    blocks = [cpu_ops.pack_block_panels(raw_blocks, "Q4_1") for _ in range(copies)]
    expanded = first.expand_block_panels(blocks[0], 0)  # (P, K, 32): the blocks' exact float32 weights
    weight = expanded.transpose(1, 2).reshape(-1, k)[:n].contiguous()  # (N, K)
    panels = [cpu_ops.pack_panels(weight) for _ in range(copies)]
    weight_t = [weight.t().contiguous() for _ in range(copies)]  # (K, N), the engine's gemm=torch layout
    gen = torch.Generator().manual_seed(seed + 1)
    results = []
    for m in rows:
        x = torch.randn(m, k, generator=gen)
        exact = x.double() @ weight.double().T
        fns: dict[str, Callable[[], torch.Tensor]] = {"torch": cycling(lambda w, x=x: x @ w, weight_t)}
        weight_bytes = {"torch": weight_t[0].numel() * 4}
        for j, (isa, ext) in enumerate(builds.items()):
            # the paths share the copies, each starting elsewhere: not on the copy another path just read (in cache)
            start = j * copies // len(builds)
            fns[f"packed {isa}"] = cycling(lambda w, x=x, ext=ext: ext.packed_linear(x, w, n), panels, start)
            fns[f"block q4_1 {isa}"] = cycling(
                lambda w, x=x, ext=ext: ext.block_packed_linear(x, w, n, 0), blocks, start
            )
            weight_bytes[f"packed {isa}"] = panels[0].numel() * 4
            weight_bytes[f"block q4_1 {isa}"] = blocks[0].numel()
        with torch.inference_mode():
            outputs = {impl: fn() for impl, fn in fns.items()}
            times = interleaved_seconds(fns, min_time_s)
        flop = 2 * m * n * k
        for impl, t in times.items():
            median = statistics.median(t)
            ordered = sorted(t)
            moved = weight_bytes[impl] + (m * k + m * n) * 4
            result = {
                "shape": name,
                "k": k,
                "n": n,
                "rows": m,
                "impl": impl,
                "calls": len(t),
                "copies": copies,
                "median_s": median,
                "min_s": ordered[0],
                "p10_s": ordered[len(t) // 10],
                "p90_s": ordered[(9 * len(t)) // 10],
                "flop": flop,
                "bytes": moved,
                "gflop_s": flop / median / 1e9,
                "gb_s": moved / median / 1e9,
                "vs_torch": statistics.median(times["torch"]) / median,
                "max_abs_err": (outputs[impl].double() - exact).abs().max().item(),
            }
            if impl.startswith("block"):
                packed = outputs[impl.replace("block q4_1", "packed")]
                result["same_as_packed"] = bool(torch.equal(outputs[impl].view(torch.int32), packed.view(torch.int32)))
            results.append(result)
    return results


def run(
    shapes: dict[str, tuple[int, int]],
    rows: list[int],
    isas: list[str],
    min_time_s: float,
    threads: int | None = None,
    weights_bytes: int = WEIGHTS_BYTES,
) -> dict:
    import torch

    from reference_engine.kernels import cpu_ops

    if threads:
        torch.set_num_threads(threads)
    for isa in isas:
        cpu_ops.resolve_isa(isa)  # ValueError for a path this CPU cannot run
    results = [
        r for name, (k, n) in shapes.items() for r in bench_shape(name, k, n, rows, isas, min_time_s, weights_bytes)
    ]
    return {
        "threads": torch.get_num_threads(),
        "isas": isas,
        "runnable_isas": cpu_ops.runnable_isas(),
        "weights_bytes": weights_bytes,
        "torch_isa_env": {key: os.environ[key] for env in TORCH_ISA_ENV.values() for key in env if key in os.environ},
        "torch": torch.__version__,
        "min_time_s": min_time_s,
        "results": results,
    }


def parse_shapes(text: str) -> dict[str, tuple[int, int]]:
    """ "qkv,down" (names of MODEL_SHAPES), "576x1536" (K x N), or a mix; "model" for all of MODEL_SHAPES."""
    shapes: dict[str, tuple[int, int]] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "model":
            shapes.update(MODEL_SHAPES)
        elif part in MODEL_SHAPES:
            shapes[part] = MODEL_SHAPES[part]
        else:
            k, sep, n = part.partition("x")
            if not (sep and k.isdigit() and n.isdigit() and int(k) > 0 and int(n) > 0):
                raise ValueError(f"shape {part!r}: a name ({', '.join(MODEL_SHAPES)}), 'model' or KxN like 576x1536")
            if int(k) % 32:
                raise ValueError(f"shape {part!r}: K={k} is not a multiple of 32 (a GGUF block)")
            shapes[part] = (int(k), int(n))
    if not shapes:
        raise ValueError("no shapes given")
    return shapes


def parse_rows(text: str) -> list[int]:
    try:
        rows = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"rows {text!r}: comma-separated positive integers") from None
    if not rows or min(rows) < 1:
        raise ValueError(f"rows {text!r}: comma-separated positive integers")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reference_engine.kernels.bench_gemm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--shapes", default="qkv,o,gate_up,down", help="names, 'model', or KxN (default: %(default)s)")
    parser.add_argument("--rows", default=",".join(map(str, DEFAULT_ROWS)), help="rows of x (default: %(default)s)")
    parser.add_argument(
        "--isa", default="runnable", help="ISA paths, comma-separated, or 'runnable' (all this CPU runs; the default)"
    )
    parser.add_argument("--torch-isa", choices=["native", *TORCH_ISA_ENV], default="native")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of calls per implementation and shape")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--warm",
        action="store_true",
        help="one copy of the weights, in cache where it fits (default: 256 MiB of copies, read from memory)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.update(TORCH_ISA_ENV.get(args.torch_isa, {}))  # before torch loads its GEMM libraries
    from reference_engine.kernels import cpu_ops

    try:
        isas = cpu_ops.runnable_isas() if args.isa == "runnable" else [i.strip() for i in args.isa.split(",")]
        result = run(
            parse_shapes(args.shapes),
            parse_rows(args.rows),
            isas,
            args.min_time,
            args.threads or None,
            0 if args.warm else WEIGHTS_BYTES,
        )
    except ValueError as exc:
        parser.exit(2, f"bench_gemm: error: {exc}\n")
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"{'shape':>8} {'rows':>5} {'impl':<18} {'median ms':>10} {'min ms':>8} {'GFLOP/s':>8} {'GB/s':>7} "
        f"{'vs torch':>8}"
    )
    for r in result["results"]:
        print(
            f"{r['shape']:>8} {r['rows']:>5} {r['impl']:<18} {r['median_s'] * 1e3:>10.3f} {r['min_s'] * 1e3:>8.3f} "
            f"{r['gflop_s']:>8.1f} {r['gb_s']:>7.1f} {r['vs_torch']:>7.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
