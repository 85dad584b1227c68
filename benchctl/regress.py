"""The CI regression gate: is the candidate really worse than the baseline, beyond a threshold?

Each side is one or more runs of the same workload (repetitions). For every gated metric the gate
bootstraps the ratio of means (candidate / baseline) over repetitions and calls a regression only
when the whole confidence interval lies beyond the threshold: a noisy machine widens the interval
and the gate stays quiet; a real slowdown moves it. A Mann-Whitney U p-value is reported beside it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchctl import store
from benchctl.metrics import flat_metrics

DEFAULT_METRICS = ("output_tok_s:-5%", "ttft_p99:+10%")
HIGHER_IS_BETTER = (
    "request_throughput",
    "input_tok_s",
    "output_tok_s",
    "total_tok_s",
    "goodput_req_s",
    "cached_prompt_fraction",
)


class GateInputError(ValueError):
    """Missing runs, bad thresholds or mismatched workloads: exit code 2."""


@dataclass(frozen=True, slots=True)
class MetricGate:
    metric: str  # a flat_metrics key, e.g. output_tok_s or ttft_p99_ms
    threshold: float  # signed fraction: -0.05 = "may drop by 5%", +0.10 = "may grow by 10%"

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER


def parse_gate(text: str) -> MetricGate:
    name, sep, pct = text.partition(":")
    if not sep or not pct.endswith("%"):
        raise GateInputError(f"--metric expects NAME:+N% or NAME:-N%, got {text!r}")
    try:
        threshold = float(pct[:-1]) / 100.0
    except ValueError:
        raise GateInputError(f"--metric threshold is not a number: {text!r}") from None
    metric = name if name in HIGHER_IS_BETTER or name.endswith("_ms") else f"{name}_ms"
    gate = MetricGate(metric, threshold)
    if gate.higher_is_better and threshold > 0 or not gate.higher_is_better and threshold < 0:
        direction = "drop (use -N%)" if gate.higher_is_better else "growth (use +N%)"
        raise GateInputError(f"{text!r}: {name} is gated on its {direction}")
    return gate


def collect_runs(ref: str) -> list[Path]:
    """A run folder, or a folder of run folders (repetitions; nested sweep folders included)."""
    path = Path(ref)
    if (path / "run.json").is_file():
        return [path]
    if path.is_dir():
        runs = sorted(p.parent for p in path.rglob("run.json"))
        if runs:
            return runs
    raise GateInputError(f"no runs found at {ref!r} (expected a run folder or a folder of runs)")


def workload_fingerprint(run: dict) -> str:
    """What must be equal for two runs to be comparable: the workload and the model, not the engine."""
    w = run.get("workload", {})
    key = {
        "dataset": w.get("dataset"),
        "num_requests": w.get("num_requests"),
        "seed": w.get("seed"),
        "input_tokens": w.get("input_tokens"),
        "output_tokens": w.get("output_tokens"),
        "schedule": {k: v for k, v in (w.get("schedule") or {}).items() if k != "last_arrival_s"},
        "model": (run.get("config", {}).get("model") or {}).get("name"),
        "mode": run.get("config", {}).get("mode"),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def load_gate_run(path: Path) -> dict[str, Any]:
    """A run.json the gate can read, or GateInputError: exit 1 means "regression" to the gate's callers, so a
    file that is not a run (`[]`, `summary: null`, bytes that are not UTF-8) must never end in a traceback."""
    try:
        run = store.load_run(path)
    except (store.RunNotFound, OSError, UnicodeDecodeError, ValueError) as e:
        raise GateInputError(f"{path}/run.json cannot be read as a run: {' '.join(str(e).split())}") from None
    if not isinstance(run, dict):
        raise GateInputError(f"{path}/run.json is not a run (a JSON {type(run).__name__}, not an object)")
    if not isinstance(run.get("summary"), dict):
        raise GateInputError(f"{path}/run.json has no summary (summary: {run.get('summary')!r})")
    if not isinstance(run.get("workload", {}), dict) or not isinstance(run.get("config", {}), dict):
        raise GateInputError(f"{path}/run.json: workload and config must be objects")
    run.setdefault("run_id", path.name)
    return run


def load_side(ref: str) -> tuple[list[dict], str]:
    runs = [load_gate_run(p) for p in collect_runs(ref)]
    bad = [r["run_id"] for r in runs if r.get("status") != "completed"]
    if bad:
        raise GateInputError(f"{ref}: runs not completed: {', '.join(bad)}")
    prints = {workload_fingerprint(r) for r in runs}
    if len(prints) > 1:
        raise GateInputError(f"{ref}: its runs are of different workloads; a side must repeat one workload")
    return runs, prints.pop()


def bootstrap_ratio_ci(
    baseline: np.ndarray, candidate: np.ndarray, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """(ratio of means, low, high): percentile bootstrap, resampling each side independently."""
    rng = np.random.default_rng(seed)
    b = rng.choice(baseline, size=(resamples, baseline.size)).mean(axis=1)
    c = rng.choice(candidate, size=(resamples, candidate.size)).mean(axis=1)
    ratios = c / b
    alpha = (1 - confidence) / 2
    return (
        float(candidate.mean() / baseline.mean()),
        float(np.quantile(ratios, alpha)),
        float(np.quantile(ratios, 1 - alpha)),
    )


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value (normal approximation with tie correction)."""
    n1, n2 = x.size, y.size
    values = np.concatenate([x, y])
    order = values.argsort(kind="mergesort")
    ranks = np.empty(values.size)
    sorted_vals = values[order]
    i = 0
    while i < values.size:  # average ranks over ties
        j = i
        while j + 1 < values.size and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    _, counts = np.unique(values, return_counts=True)
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - (counts**3 - counts).sum() / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (abs(u1 - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    return float(math.erfc(max(z, 0.0) / math.sqrt(2)))


@dataclass(slots=True)
class Verdict:
    metric: str
    threshold_pct: float
    baseline_mean: float
    candidate_mean: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    n_baseline: int
    n_candidate: int
    regression: bool
    improvement: bool


def judge(gate: MetricGate, base: list[float], cand: list[float], confidence: float) -> Verdict:
    b, c = np.asarray(base, dtype=np.float64), np.asarray(cand, dtype=np.float64)
    if b.mean() == 0:
        raise GateInputError(f"baseline {gate.metric} is zero; cannot form a ratio")
    ratio, low, high = bootstrap_ratio_ci(b, c, confidence)
    limit = 1 + gate.threshold
    if gate.higher_is_better:
        regression, improvement = high < limit, low > 1.0
    else:
        regression, improvement = low > limit, high < 1.0
    return Verdict(
        gate.metric,
        gate.threshold * 100,
        float(b.mean()),
        float(c.mean()),
        ratio,
        low,
        high,
        mann_whitney_p(b, c),
        b.size,
        c.size,
        regression,
        improvement,
    )


def compare_sides(
    baseline_ref: str, candidate_ref: str, gates: list[MetricGate], confidence: float = 0.95
) -> dict[str, Any]:
    base_runs, base_fp = load_side(baseline_ref)
    cand_runs, cand_fp = load_side(candidate_ref)
    if base_fp != cand_fp:
        raise GateInputError(
            "baseline and candidate ran different workloads (dataset, lengths, schedule, seed "
            "or model differ); the gate refuses to compare them"
        )
    verdicts = []
    for gate in gates:
        values = []
        for side in (base_runs, cand_runs):
            flats = [flat_metrics(r.get("summary", {})) for r in side]
            if any(gate.metric not in f for f in flats):
                raise GateInputError(
                    f"metric {gate.metric!r} is missing from some runs (known: {', '.join(sorted(flats[0]))})"
                )
            values.append([f[gate.metric] for f in flats])
        verdicts.append(judge(gate, values[0], values[1], confidence))
    warnings = []
    if min(len(base_runs), len(cand_runs)) < 3:
        warnings.append("fewer than 3 repetitions on a side: the confidence interval cannot see the noise")
    return {
        "baseline": [r["run_id"] for r in base_runs],
        "candidate": [r["run_id"] for r in cand_runs],
        "workload_fingerprint": base_fp,
        "confidence": confidence,
        "verdicts": [asdict(v) for v in verdicts],
        "warnings": warnings,
        "regression": any(v.regression for v in verdicts),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "## benchctl regression gate: " + ("**REGRESSION**" if result["regression"] else "pass"),
        "",
        f"baseline runs: {len(result['baseline'])} · candidate runs: {len(result['candidate'])} · "
        f"{result['confidence']:.0%} bootstrap CI of candidate/baseline",
        "",
        "| metric | threshold | baseline | candidate | ratio | CI | p (Mann-Whitney) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in result["verdicts"]:
        verdict = "regression" if v["regression"] else ("improvement" if v["improvement"] else "no significant change")
        lines.append(
            f"| {v['metric']} | {v['threshold_pct']:+.1f}% | {v['baseline_mean']:.4g} | "
            f"{v['candidate_mean']:.4g} | {v['ratio']:.3f} | [{v['ci_low']:.3f}, {v['ci_high']:.3f}] | "
            f"{v['p_value']:.3g} | {verdict} |"
        )
    lines += [f"\n> {w}" for w in result["warnings"]]
    return "\n".join(lines) + "\n"
