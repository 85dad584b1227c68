"""Sweeps: a matrix of ordinary runs (backends x rates x concurrency x engine options x repetitions).

Each cell is a normal run folder under the sweep folder; `sweep.json` indexes them with the cell's
parameters. Cells run one at a time on this machine (`local`, so engines never share it) or as Ray
tasks on an existing cluster (`ray`): the task runs the cell on its node and ships the run folder's
files back, so results land here whatever node measured them.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from benchctl import store
from benchctl.runner import RunConfig, RunFailed, run_benchmark
from benchctl.workload import WorkloadOptions


class SweepSpecError(ValueError):
    """A sweep spec the user wrote cannot be used (exit code 2)."""


@dataclass(slots=True)
class SweepSpec:
    backends: list[str] = field(default_factory=lambda: ["reference"])
    request_rates: list[float] = field(default_factory=lambda: [math.inf])
    max_concurrency: list[int | None] = field(default_factory=lambda: [None])
    engine_args: dict[str, list[str]] = field(default_factory=dict)  # key -> values to sweep (a full matrix)
    # name -> engine args: one cell per variant, each a change from the fixed args (ablations: one at a time,
    # or several stacked in one variant). The first variant is the baseline the others are compared with.
    variants: dict[str, dict[str, str]] = field(default_factory=dict)
    fixed_engine_args: dict[str, str] = field(default_factory=dict)
    repetitions: int = 1
    model: str = "smollm2-135m"
    mode: str = "offline"
    batch_size: int | None = None
    slos_ms: dict[str, float] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)  # WorkloadOptions fields


_SPEC_KEYS = {f for f in SweepSpec.__dataclass_fields__}


def load_spec(path: Path) -> SweepSpec:
    if not path.is_file():
        raise SweepSpecError(f"sweep spec not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SweepSpecError(f"{path}: not valid YAML ({e})") from None
    return spec_from_dict(data, str(path))


def spec_from_dict(data: dict, where: str = "sweep spec") -> SweepSpec:
    if not isinstance(data, dict):
        raise SweepSpecError(f"{where}: expected a mapping")
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise SweepSpecError(f"{where}: unknown keys {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(_SPEC_KEYS))}")
    spec = SweepSpec(**data)
    spec.request_rates = [math.inf if str(r).lower() in ("inf", "infinity") else float(r)
                          for r in spec.request_rates]
    spec.engine_args = {k: [str(v) for v in (vals if isinstance(vals, list) else [vals])]
                        for k, vals in spec.engine_args.items()}
    spec.fixed_engine_args = {k: str(v) for k, v in spec.fixed_engine_args.items()}
    if spec.variants and spec.engine_args:
        raise SweepSpecError(f"{where}: give engine_args (a full matrix) or variants (one cell each), not both")
    if not isinstance(spec.variants, dict) or not all(isinstance(v, dict) for v in spec.variants.values()):
        raise SweepSpecError(f"{where}: variants must map a name to engine args, e.g. {{baseline: {{}}, "
                             f"per-seq sampler: {{sampler: per_seq}}}}")
    spec.variants = {str(name): {k: str(v) for k, v in (args or {}).items()}
                     for name, args in spec.variants.items()}
    bad = set(spec.workload) - set(WorkloadOptions.__dataclass_fields__)
    if bad:
        raise SweepSpecError(f"{where}: unknown workload options {', '.join(sorted(bad))}")
    if spec.repetitions < 1:
        raise SweepSpecError(f"{where}: repetitions must be >= 1")
    if not spec.backends or not spec.request_rates:
        raise SweepSpecError(f"{where}: backends and request_rates must not be empty")
    return spec


@dataclass(slots=True)
class Cell:
    index: int
    backend: str
    request_rate: float
    max_concurrency: int | None
    engine_args: dict[str, str]
    repetition: int
    variant: str | None = None

    def label(self) -> str:
        args = self.variant if self.variant is not None else ",".join(f"{k}={v}" for k, v in self.engine_args.items())
        rate = "inf" if math.isinf(self.request_rate) else f"{self.request_rate:g}"
        return f"{self.backend} rate={rate} conc={self.max_concurrency} {args} rep={self.repetition}".strip()


def cells(spec: SweepSpec) -> list[Cell]:
    """The cells in run order. Repetitions go round-robin (every cell once, then every cell again), so a machine
    whose speed drifts during the sweep (shared and virtual machines do, by tens of percent over minutes) slows a
    round of all cells rather than every repetition of one."""
    if spec.variants:
        grid = itertools.product(range(spec.repetitions), spec.backends, spec.request_rates, spec.max_concurrency,
                                 spec.variants.items())
        return [Cell(i, b, rate, conc, {**spec.fixed_engine_args, **args}, rep, variant=name)
                for i, (rep, b, rate, conc, (name, args)) in enumerate(grid)]
    keys = sorted(spec.engine_args)
    grid = itertools.product(range(spec.repetitions), spec.backends, spec.request_rates, spec.max_concurrency,
                             itertools.product(*(spec.engine_args[k] for k in keys)))
    return [Cell(i, b, rate, conc, {**spec.fixed_engine_args, **dict(zip(keys, values))}, rep)
            for i, (rep, b, rate, conc, values) in enumerate(grid)]


def cell_config(spec: SweepSpec, cell: Cell, output_dir: Path) -> RunConfig:
    workload = WorkloadOptions(**{**spec.workload, "request_rate": cell.request_rate,
                                  "max_concurrency": cell.max_concurrency})
    return RunConfig(backend=cell.backend, model=spec.model, mode=spec.mode, workload=workload,
                     batch_size=spec.batch_size, engine_args=dict(cell.engine_args), output_dir=output_dir,
                     slos_ms=dict(spec.slos_ms), label=cell.label())


def _run_cell_files(config: RunConfig) -> dict[str, Any]:
    """Run a cell in a private temp folder and return its files (what a Ray task sends back)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="benchctl-cell-") as tmp:
        config = replace(config, output_dir=Path(tmp))
        status, error = "completed", None
        try:
            run_dir = run_benchmark(config)
        except RunFailed as e:
            run_dir, status, error = e.run_dir, "failed", str(e)
        files = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
        return {"run_id": run_dir.name, "files": files, "status": status, "error": error}


class LocalExecutor:
    """One cell at a time on this machine: engines never share it."""

    def map(self, configs: list[RunConfig], on_done: Callable[[int, dict], None]) -> None:
        for i, config in enumerate(configs):
            status, error = "completed", None
            try:
                run_dir = run_benchmark(config)
            except RunFailed as e:
                run_dir, status, error = e.run_dir, "failed", str(e)
            on_done(i, {"run_dir": run_dir, "status": status, "error": error})


class RayExecutor:
    """Cells as Ray tasks on an existing cluster; each asks for the resources an engine needs."""

    def __init__(self, address: str | None, num_cpus: float = 1, num_gpus: float = 0):
        try:
            import ray
        except ImportError:
            raise SweepSpecError("--executor ray needs the `ray` package (pip install 'benchctl[ray]')") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        self.num_cpus, self.num_gpus = num_cpus, num_gpus

    def map(self, configs: list[RunConfig], on_done: Callable[[int, dict], None]) -> None:
        task = self.ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(_run_cell_files)
        pending = {task.remote(config): i for i, config in enumerate(configs)}
        while pending:
            done, _ = self.ray.wait(list(pending), num_returns=1)
            i = pending.pop(done[0])
            result = self.ray.get(done[0])
            run_dir = configs[i].output_dir / result["run_id"]
            run_dir.mkdir(parents=True, exist_ok=True)
            for name, data in result["files"].items():
                (run_dir / name).write_bytes(data)
            on_done(i, {"run_dir": run_dir, "status": result["status"], "error": result["error"]})


def run_sweep(spec: SweepSpec, output_dir: Path, executor: LocalExecutor | RayExecutor,
              on_cell: Callable[[Cell, dict], None] | None = None) -> Path:
    sweep_dir = store.new_run_dir(output_dir, "sweep")
    todo = cells(spec)
    index = {"schema_version": store.SCHEMA_VERSION, "sweep_id": sweep_dir.name, "kind": "matrix",
             "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "spec": store.clean_floats(asdict(spec)), "cells": []}
    store.write_json_atomic(sweep_dir / "sweep.json", index)

    def done(i: int, result: dict) -> None:
        cell = todo[i]
        index["cells"].append(store.clean_floats({**asdict(cell), "label": cell.label(),
                                                  "run": result["run_dir"].name,
                                                  "status": result["status"], "error": result["error"]}))
        store.write_json_atomic(sweep_dir / "sweep.json", index)  # the index grows as cells finish
        if on_cell:
            on_cell(cell, result)

    executor.map([cell_config(spec, c, sweep_dir) for c in todo], done)
    index["cells"].sort(key=lambda c: c["index"])
    index["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    store.write_json_atomic(sweep_dir / "sweep.json", index)
    return sweep_dir


def attainment(run: dict) -> float:
    """Fraction of requests that met every SLO (goodput / throughput), from the run's summary."""
    s = run.get("summary", {})
    return (s.get("good_requests") or 0) / s["num_requests"] if s.get("num_requests") else 0.0


def saturate(spec: SweepSpec, output_dir: Path, rate_low: float, rate_high: float, target: float = 0.9,
             iterations: int = 5, run_cell: Callable[[RunConfig], Path] = run_benchmark,
             on_probe: Callable[[float, float], None] | None = None) -> dict[str, Any]:
    """Highest request rate at which at least `target` of requests meet the SLOs (bisection, log scale)."""
    if not spec.slos_ms:
        raise SweepSpecError("saturation search needs SLOs (--goodput ttft:MS, ...)")
    if not 0 < rate_low < rate_high or math.isinf(rate_high):
        raise SweepSpecError("saturation search needs 0 < --rate-low < --rate-high < inf")
    sweep_dir = store.new_run_dir(output_dir, "saturate")
    probes: list[dict] = []
    index = {"schema_version": store.SCHEMA_VERSION, "sweep_id": sweep_dir.name, "kind": "saturation",
             "target_attainment": target, "spec": store.clean_floats(asdict(spec)), "probes": probes}

    def probe(rate: float) -> bool:
        cell = Cell(len(probes), spec.backends[0], rate, spec.max_concurrency[0],
                    {**spec.fixed_engine_args}, 0)
        run_dir = run_cell(cell_config(spec, cell, sweep_dir))
        value = attainment(store.load_run(run_dir))
        probes.append({"request_rate": rate, "attainment": value, "run": run_dir.name, "ok": value >= target})
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

