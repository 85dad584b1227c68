"""Capacity at an SLO: the highest load (request rate, or max concurrency) whose percentile SLOs hold, with the
confidence of the answer ("capacity 6.2 req/s [5.9, 6.4] at p99 TTFT ≤ 500 ms") and goodput at that load.

The search runs probes through a callback, `probe(load, repetition) -> records`, so it is the same against a
sweep's cells (capacity_sweep) and a test's fake server. From `low` it doubles the load until an SLO fails (or
`high`), then bisects (geometrically for rates, by integers for concurrency) until the bracket is within
`resolution` (one stream, for concurrency). Each probe is `repetitions` runs, pooled (benchctl.metrics.slo).

The answer: a probe's margin is max over SLOs of statistic / limit (<= 1: met), with its bootstrap interval.
The capacity is where the margin crosses 1 between the highest passing load and the lowest failing one above it
(log-linear interpolation for rates; the highest passing concurrency). Its interval is where the interval's
edges cross 1: the upper edge first exceeds 1 at the lower bound, the lower edge at the upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchctl.metrics import PercentileSLO, completed, per_request_limits_ms, request_latencies, slo_estimate, summarize
from benchctl.sweep.spec import SweepSpecError

AXES = ("rate", "concurrency")
UNITS = {"rate": "req/s", "concurrency": "concurrent streams"}


class CapacityError(SweepSpecError):
    """Search settings the user gave cannot be used (exit code 2, as any sweep spec error)."""


@dataclass(slots=True)
class Probe:
    load: float
    slos: dict[str, dict]  # SLO name -> slo_estimate
    margin: float  # max ratio over SLOs (<= 1: every SLO met)
    margin_low: float
    margin_high: float
    goodput_req_s: float | None
    request_throughput: float | None

    @property
    def met(self) -> bool:
        return self.margin <= 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "load": self.load,
            "met": self.met,
            "margin": self.margin,
            "margin_interval": [self.margin_low, self.margin_high],
            "slos": self.slos,
            "goodput_req_s": self.goodput_req_s,
            "request_throughput": self.request_throughput,
        }


def evaluate(
    load: float,
    repetitions: Sequence[Sequence[Mapping[str, Any]]],
    slos: Sequence[PercentileSLO],
    confidence: float = 0.95,
) -> Probe:
    """One probe's verdict from its repetitions' records."""
    latencies = [[request_latencies(r) for r in completed(records)] for records in repetitions]
    estimates = {slo.name: slo_estimate(latencies, slo, confidence, seed=i) for i, slo in enumerate(slos)}
    limits = per_request_limits_ms(slos)
    summaries = [summarize(records, slos_ms=limits or None) for records in repetitions]
    goodputs = [float(s["goodput_req_s"]) for s in summaries if limits and _finite(s.get("goodput_req_s"))]
    rates = [float(s["request_throughput"]) for s in summaries if _finite(s.get("request_throughput"))]
    return Probe(
        load,
        estimates,
        max(e["ratio"] for e in estimates.values()),
        max(e["ratio_low"] for e in estimates.values()),
        max(e["ratio_high"] for e in estimates.values()),
        sum(goodputs) / len(goodputs) if goodputs else None,
        sum(rates) / len(rates) if rates else None,
    )


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def find_capacity(
    probe: Callable[[float, int], Sequence[Mapping[str, Any]]],
    slos: Sequence[PercentileSLO],
    axis: str = "rate",
    low: float = 1.0,
    high: float = 64.0,
    repetitions: int = 2,
    resolution: float = 0.05,
    max_probes: int = 14,
    confidence: float = 0.95,
    on_probe: Callable[[Probe], None] | None = None,
) -> dict[str, Any]:
    """Search the load for the capacity; returns {capacity, interval, statement, goodput_req_s, probes, ...}."""
    check_search(slos, axis, low, high, repetitions, resolution, max_probes)
    probes: dict[float, Probe] = {}

    def run(load: float) -> Probe:
        if load not in probes:
            result = evaluate(load, [probe(load, rep) for rep in range(repetitions)], slos, confidence)
            probes[load] = result
            if on_probe:
                on_probe(result)
        return probes[load]

    def step_up(x: float) -> float:
        return min(high, x * 2)

    def middle(a: float, b: float) -> float:
        return float((int(a) + int(b)) // 2) if axis == "concurrency" else math.sqrt(a * b)

    def narrow(a: float, b: float) -> bool:
        return b - a <= 1 if axis == "concurrency" else b / a <= 1 + resolution

    passing, failing = low, None
    if not run(low).met:
        failing = low
    else:
        while len(probes) < max_probes and passing < high:
            load = step_up(passing)
            if not run(load).met:
                failing = load
                break
            passing = load
        while failing is not None and len(probes) < max_probes and not narrow(passing, failing):
            mid = middle(passing, failing)
            if run(mid).met:
                passing = mid
            else:
                failing = mid
    return _answer(sorted(probes.values(), key=lambda p: p.load), slos, axis, low, high, passing, failing)


def check_search(
    slos: Sequence[PercentileSLO],
    axis: str,
    low: float,
    high: float,
    repetitions: int,
    resolution: float,
    max_probes: int,
) -> None:
    if not slos:
        raise CapacityError("a capacity search needs at least one --slo, e.g. --slo ttft_p99:500ms")
    if axis not in AXES:
        raise CapacityError(f"--capacity-axis must be one of {', '.join(AXES)}, got {axis!r}")
    if not 0 < low < high < math.inf:
        raise CapacityError(f"the search needs 0 < low < high < inf, got low {low:g}, high {high:g}")
    if axis == "concurrency" and (low != int(low) or high != int(high)):
        raise CapacityError("a concurrency search needs whole numbers for its bounds")
    if repetitions < 1 or max_probes < 2 or not 0 < resolution < 1:
        raise CapacityError("the search needs repetitions >= 1, max probes >= 2 and a resolution in (0, 1)")


def _answer(
    probes: list[Probe],
    slos: Sequence[PercentileSLO],
    axis: str,
    low: float,
    high: float,
    passing: float,
    failing: float | None,
) -> dict[str, Any]:
    by_load = {p.load: p for p in probes}
    result: dict[str, Any] = {
        "axis": axis,
        "unit": UNITS[axis],
        "slos": [s.name for s in slos],
        "slo_labels": [s.label for s in slos],
        "probes": [p.to_dict() for p in probes],
        "bracket": [passing, failing],
    }
    if failing == low:
        return {
            **result,
            "capacity": None,
            "interval": None,
            "goodput_req_s": None,
            "statement": f"no capacity: the SLOs ({', '.join(s.label for s in slos)}) fail at the lowest load "
            f"probed, {low:g} {UNITS[axis]}",
        }
    best = by_load[passing]
    if failing is None:
        capacity, bounded = passing, False
    elif axis == "concurrency":
        capacity, bounded = passing, True
    else:
        capacity, bounded = _crossing(best.load, best.margin, failing, by_load[failing].margin), True
    lower = _edge(probes, "margin_high", axis) or probes[0].load
    upper = _edge(probes, "margin_low", axis) or probes[-1].load
    lower, upper = min(lower, capacity), max(upper, capacity)
    fmt = (lambda v: f"{v:g}") if axis == "concurrency" else (lambda v: f"{v:.3g}")
    binding = max(best.slos, key=lambda name: best.slos[name]["ratio"])
    labels = ", ".join(s.label for s in slos)
    statement = f"capacity {fmt(capacity)} {UNITS[axis]} [{fmt(lower)}, {fmt(upper)}] at {labels}" + (
        "" if bounded else f" (still met at the highest load probed, {high:g})"
    )
    if best.goodput_req_s is not None:
        statement += f"; goodput {best.goodput_req_s:.3g} req/s at {fmt(best.load)} {UNITS[axis]}"
    return {
        **result,
        "capacity": capacity,
        "interval": [lower, upper],
        "bounded": bounded,
        "binding_slo": binding,
        "goodput_req_s": best.goodput_req_s,
        "goodput_at_load": best.load,
        "statement": statement,
    }


def _crossing(a: float, margin_a: float, b: float, margin_b: float) -> float:
    """The load where the margin reaches 1 between a (met) and b (not), interpolated in log load."""
    if not math.isfinite(margin_b) or margin_b <= margin_a:
        return a
    t = (1.0 - margin_a) / (margin_b - margin_a)
    return math.exp(math.log(a) + min(max(t, 0.0), 1.0) * (math.log(b) - math.log(a)))


def _edge(probes: list[Probe], key: str, axis: str) -> float | None:
    """Where a margin edge first exceeds 1, going up the probed loads (None: it never does)."""
    previous: Probe | None = None
    for p in probes:
        value = getattr(p, key)
        if value > 1.0:
            if previous is None:
                return p.load
            if axis == "concurrency":
                return previous.load if key == "margin_high" else p.load - 1
            return _crossing(previous.load, getattr(previous, key), p.load, value)
        previous = p
    return None


def capacity_sweep(
    spec: Any,
    output_dir: Any,
    axis: str,
    slos: Sequence[PercentileSLO],
    low: float,
    high: float,
    repetitions: int = 2,
    rounds: int = 4,
    run_cell: Callable[..., dict] | None = None,
    on_probe: Callable[[Probe], None] | None = None,
) -> dict[str, Any]:
    """`benchctl sweep --capacity`: find_capacity over ordinary runs of the spec's first backend, one sweep cell per
    probe and repetition under results/sweeps/capacity-*/, indexed in sweep.json (kind "capacity"). A concurrency
    probe of c sends at least `rounds` x c requests (fewer would measure the start of a run, not its load); a cell
    that fails or times out has no completed request, so its SLOs are not met."""
    from dataclasses import asdict
    from pathlib import Path

    from benchctl import store
    from benchctl.records import read_records
    from benchctl.sweep import Cell, cell_config
    from benchctl.sweep.cell import run_cell as run_in_child
    from benchctl.workload import DEFAULT_NUM_PROMPTS

    run_cell = run_cell or run_in_child
    check_search(slos, axis, low, high, repetitions, 0.05, 14)
    sweep_dir = store.new_run_dir(Path(output_dir), "capacity")
    index: dict[str, Any] = {
        "schema_version": store.SCHEMA_VERSION,
        "sweep_id": sweep_dir.name,
        "kind": "capacity",
        "axis": axis,
        "slos": [s.name for s in slos],
        "spec": store.clean_floats(asdict(spec)),
        "cells": [],
    }
    store.write_json_atomic(sweep_dir / "sweep.json", index)

    def probe(load: float, rep: int) -> list[dict]:
        rate = load if axis == "rate" else spec.request_rates[0]
        concurrency = int(load) if axis == "concurrency" else spec.max_concurrency[0]
        cell = Cell(len(index["cells"]), spec.backends[0], rate, concurrency, dict(spec.fixed_engine_args), rep)
        config = cell_config(spec, cell, sweep_dir)
        if axis == "concurrency" and config.workload.duration is None:
            config.workload.num_prompts = max(config.workload.num_prompts or DEFAULT_NUM_PROMPTS, rounds * int(load))
        result = run_cell(config, spec.cell_timeout_s)
        run_dir = result["run_dir"]
        index["cells"].append(
            store.clean_floats(
                {
                    **asdict(cell),
                    "label": cell.label(),
                    "load": load,
                    "run": run_dir.name if run_dir else None,
                    "status": result["status"],
                    "error": result["error"],
                }
            )
        )
        store.write_json_atomic(sweep_dir / "sweep.json", index)
        if result["status"] != "completed" or run_dir is None or not (run_dir / "requests.jsonl").is_file():
            return []
        return read_records(run_dir / "requests.jsonl")

    result = find_capacity(probe, slos, axis, low, high, repetitions, on_probe=on_probe)
    index["capacity"] = store.clean_floats(result)
    index["finished_at"] = _now()
    store.write_json_atomic(sweep_dir / "sweep.json", index)
    return {**result, "sweep_dir": sweep_dir}


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
