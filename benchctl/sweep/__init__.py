"""Sweeps: a matrix of ordinary runs (backends x rates x concurrency x engine options x repetitions).

Each cell is a normal run folder under the sweep folder; `sweep.json` indexes them with the cell's
parameters. Cells run one at a time on this machine (`local`, so engines never share it) or as Ray
tasks on an existing cluster (`ray`): the task runs the cell on its node and ships the run folder's
files back, so results land here whatever node measured them. Each cell is its own process, bounded by
`cell_timeout_s`; a cell that fails or times out is marked in the index and the sweep goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from benchctl import store
from benchctl.backend import get_backend
from benchctl.metrics import flat_metrics
from benchctl.run import RunConfig
from benchctl.sweep.cell import LocalExecutor, RayExecutor, run_cell
from benchctl.sweep.spec import (
    DEFAULT_CELL_TIMEOUT_S,
    Cell,
    SweepSpec,
    SweepSpecError,
    cells,
    load_spec,
    spec_from_dict,
)
from benchctl.workload import WorkloadOptions

__all__ = [
    "DEFAULT_CELL_TIMEOUT_S",
    "Cell",
    "LocalExecutor",
    "RayExecutor",
    "SweepSpec",
    "SweepSpecError",
    "attainment",
    "cell_config",
    "cells",
    "load_spec",
    "results_table",
    "run_cell",
    "run_sweep",
    "saturate",
    "spec_from_dict",
]


def cell_config(spec: SweepSpec, cell: Cell, output_dir: Path) -> RunConfig:
    workload = WorkloadOptions(
        **{**spec.workload, "request_rate": cell.request_rate, "max_concurrency": cell.max_concurrency}
    )
    return RunConfig(
        backend=cell.backend,
        model=spec.model,
        mode=spec.mode,
        workload=workload,
        batch_size=spec.batch_size,
        engine_args=dict(cell.engine_args),
        output_dir=output_dir,
        slos_ms=dict(spec.slos_ms),
        label=cell.label(),
    )


def run_sweep(
    spec: SweepSpec,
    output_dir: Path,
    executor: LocalExecutor | RayExecutor,
    on_cell: Callable[[Cell, dict], None] | None = None,
) -> Path:
    for name in dict.fromkeys(spec.backends):
        get_backend(name)  # an unknown backend is one line before any cell starts, not N failed cells
    sweep_dir = store.new_run_dir(output_dir, "sweep")
    todo = cells(spec)
    index = {
        "schema_version": store.SCHEMA_VERSION,
        "sweep_id": sweep_dir.name,
        "kind": "matrix",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "spec": store.clean_floats(asdict(spec)),
        "cells": [],
    }
    store.write_json_atomic(sweep_dir / "sweep.json", index)

    def done(i: int, result: dict) -> None:
        cell = todo[i]
        run_dir = result["run_dir"]
        index["cells"].append(
            store.clean_floats(
                {
                    **asdict(cell),
                    "label": cell.label(),
                    "run": run_dir.name if run_dir else None,
                    "status": result["status"],
                    "error": result["error"],
                }
            )
        )
        store.write_json_atomic(sweep_dir / "sweep.json", index)  # the index grows as cells finish
        if on_cell:
            on_cell(cell, result)

    executor.map([cell_config(spec, c, sweep_dir) for c in todo], done, spec.cell_timeout_s)
    index["cells"].sort(key=lambda c: c["index"])
    index["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    store.write_json_atomic(sweep_dir / "sweep.json", index)
    return sweep_dir


def _cell_metrics(sweep_dir: Path, cell: dict) -> dict[str, float]:
    """A completed cell's flat metrics; a failed or killed cell has none to show (partial numbers would mislead)."""
    if cell.get("status") != "completed" or not cell.get("run"):
        return {}
    try:
        summary = store.load_run(sweep_dir / cell["run"]).get("summary")
    except (store.RunNotFound, OSError, UnicodeDecodeError, AttributeError):
        return {}
    if not isinstance(summary, dict):
        return {}
    # null values (a rate over a zero duration, a distribution of nothing) are missing numbers, not zeros
    summary = {
        k: {kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v
        for k, v in summary.items()
        if v is not None
    }
    return flat_metrics(summary)


def results_table(sweep_dir: Path) -> Table:
    """The sweep's final table: one row per cell, failed and timed-out cells marked with their reason."""
    index = store.load_run_index(sweep_dir)
    table = Table(title=f"sweep {sweep_dir.name}")
    for col in ("cell", "status", "req/s", "output tok/s", "vs first", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms"):
        table.add_column(col)
    baseline = None
    failed = 0
    for i, c in enumerate(index["cells"]):
        f = _cell_metrics(sweep_dir, c)
        tok_s = f.get("output_tok_s")
        if i == 0:
            baseline = tok_s  # the first cell (the first variant) is what the others are compared with
        ratio = f"{tok_s / baseline:.2f}x" if tok_s and baseline else "-"
        status = c["status"] if c["status"] == "completed" else f"{c['status']}: {(c.get('error') or '')[:80]}"
        failed += c["status"] != "completed"
        table.add_row(
            c["label"],
            status,
            _num(f.get("request_throughput")),
            _num(tok_s),
            ratio,
            *(_num(f.get(k)) for k in ("ttft_median_ms", "ttft_p99_ms", "tpot_median_ms")),
        )
    if failed:
        table.caption = f"{failed} of {len(index['cells'])} cells did not complete (see sweep.json for the reasons)"
    return table


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def attainment(run: dict) -> float:
    """Fraction of requests that met every SLO (goodput / throughput), from the run's summary."""
    s = run.get("summary") or {}
    return (s.get("good_requests") or 0) / s["num_requests"] if s.get("num_requests") else 0.0


def saturate(
    spec: SweepSpec,
    output_dir: Path,
    rate_low: float,
    rate_high: float,
    target: float = 0.9,
    iterations: int = 5,
    run_cell: Callable[[RunConfig, float], dict] = run_cell,
    on_probe: Callable[[float, float], None] | None = None,
) -> dict[str, Any]:
    """Highest request rate at which at least `target` of requests meet the SLOs (bisection, log scale).

    A probe that fails or times out counts as SLOs not met: the engine did not keep up at that rate."""
    if not spec.slos_ms:
        raise SweepSpecError("saturation search needs SLOs (--goodput ttft:MS, ...)")
    if not 0 < rate_low < rate_high or math.isinf(rate_high):
        raise SweepSpecError("saturation search needs 0 < --rate-low < --rate-high < inf")
    sweep_dir = store.new_run_dir(output_dir, "saturate")
    probes: list[dict] = []
    index = {
        "schema_version": store.SCHEMA_VERSION,
        "sweep_id": sweep_dir.name,
        "kind": "saturation",
        "target_attainment": target,
        "spec": store.clean_floats(asdict(spec)),
        "probes": probes,
    }

    def probe(rate: float) -> bool:
        cell = Cell(len(probes), spec.backends[0], rate, spec.max_concurrency[0], {**spec.fixed_engine_args}, 0)
        result = run_cell(cell_config(spec, cell, sweep_dir), spec.cell_timeout_s)
        run_dir = result["run_dir"]
        value = attainment(store.load_run(run_dir)) if result["status"] == "completed" else 0.0
        probes.append(
            {
                "request_rate": rate,
                "attainment": value,
                "run": run_dir.name if run_dir else None,
                "status": result["status"],
                "error": result["error"],
                "ok": value >= target,
            }
        )
        store.write_json_atomic(sweep_dir / "sweep.json", index)
        if on_probe:
            on_probe(rate, value)
        return value >= target

    low, high = rate_low, rate_high
    if not probe(low):
        index["saturation_rate"] = None
        index["note"] = f"SLOs not met even at {low:g} req/s"
    elif probe(high):
        index["saturation_rate"] = high
        index["note"] = f"SLOs still met at the upper bound {high:g} req/s"
    else:
        for _ in range(iterations):
            mid = math.sqrt(low * high)
            if probe(mid):
                low = mid
            else:
                high = mid
        index["saturation_rate"] = low
        index["bracket"] = [low, high]
    store.write_json_atomic(sweep_dir / "sweep.json", index)
    return {**index, "sweep_dir": sweep_dir}
