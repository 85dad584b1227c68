"""`benchctl sweep`: a matrix of runs or a saturation search (benchctl.sweep), and its table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from benchctl.cli.output import err, out
from benchctl.cli.run import parse_goodput
from benchctl.models import DEFAULT_MODEL
from benchctl.run import parse_engine_args
from benchctl.workload import DEFAULT_DATASET


def sweep(
    spec_file: Annotated[
        Path | None, typer.Argument(metavar="[SPEC.yaml]", help="Sweep spec (YAML); flags build one otherwise.")
    ] = None,
    backend: Annotated[list[str] | None, typer.Option(help="Backend(s) to sweep (repeatable).")] = None,
    request_rate: Annotated[list[float] | None, typer.Option(help="Request rate(s) (repeatable; inf allowed).")] = None,
    max_concurrency: Annotated[list[int] | None, typer.Option(help="Concurrency cap(s) (repeatable).")] = None,
    engine_arg_grid: Annotated[
        list[str] | None, typer.Option(help="KEY=V1,V2 swept engine option (repeatable).")
    ] = None,
    engine_arg: Annotated[list[str] | None, typer.Option(help="KEY=VALUE fixed for every cell (repeatable).")] = None,
    repetitions: Annotated[int, typer.Option(help="Runs per cell.")] = 1,
    model: Annotated[str, typer.Option()] = DEFAULT_MODEL,
    mode: Annotated[str, typer.Option()] = "offline",
    dataset: Annotated[str, typer.Option()] = DEFAULT_DATASET,
    num_prompts: Annotated[int, typer.Option()] = 16,
    seed: Annotated[int, typer.Option()] = 0,
    random_input_len: Annotated[int, typer.Option()] = 144,
    random_output_len: Annotated[int, typer.Option()] = 144,
    random_range_ratio: Annotated[float, typer.Option()] = 0.0,
    goodput: Annotated[list[str] | None, typer.Option(help="SLO, e.g. ttft:500 (ms; repeatable).")] = None,
    executor: Annotated[
        str, typer.Option(help="local (one cell at a time here) or ray (an existing cluster).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS or a local instance).")
    ] = None,
    num_cpus: Annotated[float, typer.Option(help="Ray: CPUs each cell requests.")] = 1.0,
    num_gpus: Annotated[float, typer.Option(help="Ray: GPUs each cell requests.")] = 0.0,
    saturate: Annotated[bool, typer.Option(help="Bisect for the highest rate whose goodput SLOs still hold.")] = False,
    rate_low: Annotated[float, typer.Option(help="Saturation search: lowest rate (req/s).")] = 0.25,
    rate_high: Annotated[float, typer.Option(help="Saturation search: highest rate (req/s).")] = 16.0,
    target: Annotated[
        float, typer.Option(help="Saturation search: fraction of requests that must meet the SLOs.")
    ] = 0.9,
    output_dir: Annotated[Path, typer.Option(help="Where the sweep folder is written.")] = Path("results/sweeps"),
    cell_timeout_s: Annotated[
        float | None,
        typer.Option(help="A cell still running after this many seconds is killed and marked (default 7200)."),
    ] = None,
    capacity: Annotated[
        bool,
        typer.Option(
            help="Search the highest load meeting every --slo, with its interval (--repetitions runs a probe)."
        ),
    ] = False,
    slo: Annotated[
        list[str] | None,
        typer.Option(help="Capacity search: METRIC_STAT:LIMIT, e.g. ttft_p99:500ms or tpot_p95:50ms (repeatable)."),
    ] = None,
    capacity_axis: Annotated[str, typer.Option(help="Capacity search over rate (req/s) or concurrency.")] = "rate",
    capacity_low: Annotated[float, typer.Option(help="Capacity search: the first load probed.")] = 1.0,
    capacity_high: Annotated[float, typer.Option(help="Capacity search: the highest load probed.")] = 64.0,
) -> None:
    """Run a matrix of benchmarks (or a saturation search); each cell is an ordinary run folder."""
    from benchctl import sweep as sw

    if spec_file is not None:
        spec = sw.load_spec(spec_file)
    else:
        grid = {}
        for item in engine_arg_grid or []:
            key, sep, values = item.partition("=")
            if not sep or not key:
                raise sw.SweepSpecError(f"--engine-arg-grid expects KEY=V1,V2, got {item!r}")
            grid[key] = values.split(",")
        spec = sw.spec_from_dict(
            {
                "backends": backend or ["reference"],
                "request_rates": request_rate or [math.inf],
                "max_concurrency": max_concurrency or [None],
                "engine_args": grid,
                "fixed_engine_args": parse_engine_args(engine_arg or []),
                "repetitions": repetitions,
                "model": model,
                "mode": mode,
                "slos_ms": parse_goodput(goodput or []),
                "workload": {
                    "dataset": dataset,
                    "num_prompts": num_prompts,
                    "seed": seed,
                    "random_input_len": random_input_len,
                    "random_output_len": random_output_len,
                    "random_range_ratio": random_range_ratio,
                },
            },
            "flags",
        )
    if cell_timeout_s is not None:
        spec.cell_timeout_s = sw.spec_from_dict({"cell_timeout_s": cell_timeout_s}, "--cell-timeout-s").cell_timeout_s
    if capacity:
        _capacity(spec, output_dir, slo or [], capacity_axis, capacity_low, capacity_high)
        return
    if saturate:
        result = sw.saturate(
            spec,
            output_dir,
            rate_low,
            rate_high,
            target,
            on_probe=lambda r, a: err.print(f"rate {r:.3g} req/s: {a:.0%} of requests met the SLOs"),
        )
        rate = result.get("saturation_rate")
        out.print(f"saturation rate: {rate:.3g} req/s" if rate else f"no saturation rate: {result.get('note')}")
        err.print(f"sweep: {result['sweep_dir']}")
        return
    if executor not in ("local", "ray"):
        raise sw.SweepSpecError(f"--executor must be local or ray, got {executor!r}")
    runner = sw.LocalExecutor() if executor == "local" else sw.RayExecutor(ray_address, num_cpus, num_gpus)
    total = len(sw.cells(spec))
    sweep_dir = sw.run_sweep(
        spec,
        output_dir,
        runner,
        on_cell=lambda c, r: err.print(
            f"[{c.index + 1}/{total}] {c.label()}: {r['status']} -> {r['run_dir'].name if r['run_dir'] else '-'}"
        ),
    )
    out.print(sw.results_table(sweep_dir))
    err.print(f"sweep: {sweep_dir}")


def _capacity(spec, output_dir: Path, slo: list[str], axis: str, low: float, high: float) -> None:
    """benchctl.capacity's search over the spec's runs: one line per probe, then the answer."""
    from benchctl import metrics
    from benchctl.capacity import capacity_sweep

    try:
        slos = metrics.parse_percentile_slos(slo)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--slo") from None
    result = capacity_sweep(
        spec,
        output_dir,
        axis,
        slos,
        low,
        high,
        spec.repetitions,
        on_probe=lambda p: err.print(
            f"{p.load:.4g}: SLOs {'met' if p.met else 'not met'} (margin {p.margin:.2f}, interval "
            f"{p.margin_low:.2f}-{p.margin_high:.2f})"
        ),
    )
    out.print(result["statement"])
    err.print(f"sweep: {result['sweep_dir']}")


def register(app: typer.Typer) -> None:
    app.command()(sweep)
