"""The CI regression gate over two folders of runs: is the candidate worse than the baseline, beyond a threshold?

Each side is several runs of the same workload (repetitions), measured one side after the other. For every gated
metric the gate forms a Welch t-interval of the ratio of geometric means (candidate / baseline, on log values) and
decides three ways: regression when the whole interval lies beyond the threshold, pass when it lies wholly inside
it, inconclusive otherwise — and always inconclusive below MIN_REPETITIONS a side, where the method cannot see the
noise. Sides measured at different times also differ by the machine's drift, which no interval over repetitions
removes: `benchctl ab` (benchctl.ab) interleaves the sides instead. docs/regression.md has the method and its
measured error rates.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from benchctl import store
from benchctl.metrics import flat_metrics, request_counts

DEFAULT_METRICS = ("output_tok_s:-5%", "ttft_p99:+10%")
HIGHER_IS_BETTER = (
    "request_throughput",
    "input_tok_s",
    "output_tok_s",
    "total_tok_s",
    "goodput_req_s",
    "cached_prompt_fraction",
)
MIN_REPETITIONS = 3  # a side's variance from 2 values is too unstable to bound anything (Welch df near 1)
# Exit codes of the gates (regress and ab): 1 is only ever a regression the interval supports.
EXIT_PASS, EXIT_REGRESSION, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3


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
    if not math.isfinite(threshold):
        raise GateInputError(f"--metric threshold must be finite: {text!r}")
    metric = name if name in HIGHER_IS_BETTER or name.endswith("_ms") else f"{name}_ms"
    gate = MetricGate(metric, threshold)
    if gate.higher_is_better and threshold > 0 or not gate.higher_is_better and threshold < 0:
        direction = "drop (use -N%)" if gate.higher_is_better else "growth (use +N%)"
        raise GateInputError(f"{text!r}: {name} is gated on its {direction}")
    if threshold <= -1:
        raise GateInputError(f"{text!r}: a drop of 100% or more cannot be told from a run that did nothing")
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
    for key in ("workload", "config", "environment"):
        if not isinstance(run.get(key, {}), dict):
            raise GateInputError(f"{path}/run.json: {key} must be an object")
    run.setdefault("run_id", path.name)
    return run


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


def machine_class(run: dict) -> str:
    """The hardware a run's speed belongs to: CPU model and core count, GPU models and count."""
    hw = (run.get("environment") or {}).get("hardware") or {}
    if not hw:
        return "unknown machine"
    gpus = [g.get("name", "?") if isinstance(g, dict) else str(g) for g in hw.get("gpus") or []]
    gpu_text = ", ".join(f"{gpus.count(n)} x {n}" for n in sorted(set(gpus))) or "no GPU"
    return f"{hw.get('cpu') or 'unknown CPU'} · {hw.get('logical_cores')} cores · {gpu_text}"


def failure_count(run: dict) -> int:
    """Requests that failed, came back short or longer than asked for (metrics.request_counts): a candidate with
    any fails the gate, whatever its speed."""
    counts = request_counts(run.get("summary"))
    return sum(counts[k] or 0 for k in ("failed", "output_tokens_short", "output_tokens_over"))


def load_side(ref: str) -> tuple[list[dict], str, str]:
    runs = [load_gate_run(p) for p in collect_runs(ref)]
    bad = [r["run_id"] for r in runs if r.get("status") != "completed"]
    if bad:
        raise GateInputError(f"{ref}: runs not completed: {', '.join(bad)}")
    prints = {workload_fingerprint(r) for r in runs}
    if len(prints) > 1:
        raise GateInputError(f"{ref}: its runs are of different workloads; a side must repeat one workload")
    machines = {machine_class(r) for r in runs}
    if len(machines) > 1:
        raise GateInputError(f"{ref}: its runs come from different machines ({' | '.join(sorted(machines))})")
    return runs, prints.pop(), machines.pop()


def welch_log_interval(
    baseline: np.ndarray, candidate: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(ratio of geometric means candidate/baseline, low, high): Welch's t-interval on log values."""
    from scipy import stats

    origin = float(np.log(baseline).mean())  # centred: scipy's moments lose precision on logs of similar values
    lb, lc = np.log(baseline) - origin, np.log(candidate) - origin
    ratio = float(math.exp(lc.mean() - lb.mean()))
    if lb.var() == 0 and lc.var() == 0:  # identical repetitions: no noise to widen the interval
        return ratio, ratio, ratio
    ci = stats.ttest_ind(lc, lb, equal_var=False).confidence_interval(confidence)
    return ratio, float(math.exp(ci.low)), float(math.exp(ci.high))


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value (scipy's exact distribution at these sizes), reported beside the interval."""
    from scipy import stats

    if np.array_equal(np.sort(x), np.sort(y)):
        return 1.0
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def decide(gate: MetricGate, low: float, high: float) -> str:
    """regression (the interval of the ratio wholly beyond the threshold), pass (wholly inside) or inconclusive."""
    limit = 1 + gate.threshold
    worst, best = (low, high) if gate.higher_is_better else (high, low)
    beyond = (lambda r: r < limit) if gate.higher_is_better else (lambda r: r > limit)
    if beyond(best):
        return "regression"
    return "inconclusive" if beyond(worst) else "pass"


def worst_change_pct(gate: MetricGate, low: float, high: float) -> float:
    """The largest regression the interval allows, in percent (0 when it allows none): what a pass rules out."""
    worst = low if gate.higher_is_better else high
    return max(0.0, (1 - worst) * 100 if gate.higher_is_better else (worst - 1) * 100)


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
    verdict: str  # regression | pass | inconclusive
    regression: bool
    improvement: bool
    worst_regression_pct: float  # a pass means "no regression larger than this"


def interval_level(confidence: float) -> float:
    """The two-sided level whose bounds are each one-sided at `confidence`: a gate's two errors (a regression
    called when there is none beyond the threshold, a pass given when there is one) are each below 1 - confidence."""
    return 2 * confidence - 1


def judge(gate: MetricGate, base: list[float], cand: list[float], confidence: float) -> Verdict:
    b, c = np.asarray(base, dtype=np.float64), np.asarray(cand, dtype=np.float64)
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(c)) and np.all(b > 0) and np.all(c > 0)):
        raise GateInputError(f"{gate.metric} is zero, negative or missing in some runs; cannot form a ratio")
    ratio, low, high = welch_log_interval(b, c, interval_level(confidence))
    verdict = decide(gate, low, high) if min(b.size, c.size) >= MIN_REPETITIONS else "inconclusive"
    improvement = verdict == "pass" and (low > 1.0 if gate.higher_is_better else high < 1.0)
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
        verdict,
        verdict == "regression",
        improvement,
        worst_change_pct(gate, low, high),
    )


def overall(verdicts: list[str]) -> str:
    if "regression" in verdicts:
        return "regression"
    return "inconclusive" if "inconclusive" in verdicts else "pass"


def gate_metrics(summary: dict) -> dict[str, float]:
    """flat_metrics of a summary whose null numbers (a rate over no time, percentiles of nothing) are left out."""
    return flat_metrics(
        {
            k: {kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v
            for k, v in summary.items()
            if v is not None
        }
    )


def metric_values(runs: list[dict], metric: str) -> list[float]:
    flats = [gate_metrics(r["summary"]) for r in runs]
    if any(metric not in f for f in flats):
        raise GateInputError(f"metric {metric!r} is missing from some runs (known: {', '.join(sorted(flats[0]))})")
    return [f[metric] for f in flats]


def compare_sides(
    baseline_ref: str,
    candidate_ref: str,
    gates: list[MetricGate],
    confidence: float = 0.95,
    allow_other_hardware: bool = False,
) -> dict[str, Any]:
    base_runs, base_fp, base_machine = load_side(baseline_ref)
    cand_runs, cand_fp, cand_machine = load_side(candidate_ref)
    if base_fp != cand_fp:
        raise GateInputError(
            "baseline and candidate ran different workloads (dataset, lengths, schedule, seed "
            "or model differ); the gate refuses to compare them"
        )
    warnings = []
    if base_machine != cand_machine:
        if not allow_other_hardware:
            raise GateInputError(
                f"baseline ran on {base_machine}, candidate on {cand_machine}: speeds of different "
                "machines are not comparable (--allow-other-hardware compares them anyway)"
            )
        warnings.append(
            f"across machine classes (--allow-other-hardware): baseline {base_machine}, "
            f"candidate {cand_machine}; a difference may be the hardware's"
        )
    verdicts = [
        judge(g, metric_values(base_runs, g.metric), metric_values(cand_runs, g.metric), confidence) for g in gates
    ]
    failures = sum(failure_count(r) for r in cand_runs)
    if min(len(base_runs), len(cand_runs)) < MIN_REPETITIONS:
        warnings.append(
            f"fewer than {MIN_REPETITIONS} repetitions on a side: the interval cannot see the noise, "
            "so the verdict is inconclusive"
        )
    verdict = "regression" if failures else overall([v.verdict for v in verdicts])
    return {
        "baseline": [r["run_id"] for r in base_runs],
        "candidate": [r["run_id"] for r in cand_runs],
        "workload_fingerprint": base_fp,
        "machine": {"baseline": base_machine, "candidate": cand_machine},
        "confidence": confidence,
        "method": "Welch t-interval of the ratio of geometric means",
        "verdicts": [asdict(v) for v in verdicts],
        "candidate_failures": failures,
        "warnings": warnings,
        "verdict": verdict,
        "regression": verdict == "regression",
    }


def exit_code(result: dict[str, Any]) -> int:
    return {"pass": EXIT_PASS, "regression": EXIT_REGRESSION}.get(result["verdict"], EXIT_INCONCLUSIVE)


def verdict_line(result: dict[str, Any]) -> str:
    """One sentence: what the verdict means, with the size of regression a pass rules out."""
    v = result["verdict"]
    if result.get("candidate_failures"):
        return (
            f"REGRESSION: the candidate had {result['candidate_failures']} failed or short requests "
            "(or outputs longer than asked for)"
        )
    if v == "regression":
        names = ", ".join(x["metric"] for x in result["verdicts"] if x["verdict"] == "regression")
        return f"REGRESSION beyond the threshold in {names}"
    if v == "pass":
        worst = ", ".join(f"{x['metric']} {x['worst_regression_pct']:.1f}%" for x in result["verdicts"])
        return f"pass: no regression larger than {worst}"
    return "inconclusive: the noise allows both a regression beyond the threshold and none (more repetitions)"


def _row(v: dict) -> list[str]:
    return [
        v["metric"],
        f"{v['threshold_pct']:+.1f}%",
        f"{v['baseline_mean']:.4g}",
        f"{v['candidate_mean']:.4g}",
        f"{v['ratio']:.3f}",
        f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]",
        f"{v['p_value']:.3g}",
        v["verdict"],
    ]


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"## benchctl regression gate: {verdict_line(result)}",
        "",
        f"baseline runs: {len(result['baseline'])} · candidate runs: {len(result['candidate'])} · "
        f"{interval_level(result['confidence']):.0%} {result['method']} (candidate/baseline; each bound "
        f"{result['confidence']:.0%})",
        "",
        "| metric | threshold | baseline | candidate | ratio | CI | p (Mann-Whitney) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(_row(v)) + " |" for v in result["verdicts"]]
    lines += [f"\n> {w}" for w in result["warnings"]]
    return "\n".join(lines) + "\n"


def console_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"benchctl regress: {verdict_line(result)}")
    for col in ("metric", "threshold", "baseline", "candidate", "ratio", "CI", "p", "verdict"):
        table.add_column(col, justify="left" if col in ("metric", "verdict") else "right")
    for v in result["verdicts"]:
        table.add_row(*_row(v))
    return table


def write_step_summary(text: str) -> None:
    """A gate's markdown goes to GitHub's job summary when the job runs there."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
