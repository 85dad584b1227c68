"""The A/B gate's statistics: a t-interval on paired per-round log-ratios, looked at after every round.

Round r runs A and B back to back (in random order), so the ratio B_r / A_r cancels what the machine did to both
that minute. The log-ratios d_r are roughly normal (timings are multiplicative), and their mean's Student t
interval is exact for normal data at any n >= 2 — unlike a percentile bootstrap, which at 3-10 values covers far
less than it claims, or a signed-rank interval, which cannot reach 95% with fewer than 6 rounds. The gate looks
after every round from min_rounds on; each bound of each look's interval is one-sided at 1 - (1 - confidence) / looks
(Bonferroni), so stopping at the first clear look keeps each error (a regression called at the threshold, a pass
given at it) at most 1 - confidence overall. docs/regression.md has the reasoning and the measured error rates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from benchctl.regress import MetricGate, decide, worst_change_pct


def look_confidence(confidence: float, min_rounds: int, max_rounds: int) -> float:
    """The two-sided level of each look's interval: each bound one-sided at 1 - (1 - confidence) / looks, so that over
    all looks each error of the gate (regression called at the threshold, pass given at it) stays below 1 - confidence.
    """
    return 1 - 2 * (1 - confidence) / (max_rounds - min_rounds + 1)


@dataclass(slots=True)
class PairedInterval:
    rounds: int
    ratio: float  # exp(mean log(B/A)): the geometric mean of the per-round ratios
    low: float
    high: float
    resolution_pct: float  # the interval's half-width: the smallest change this noise lets these rounds detect


def paired_log_interval(a: list[float], b: list[float], confidence: float) -> PairedInterval:
    """Student t interval of the mean of log(b_r / a_r), mapped back to a ratio B/A."""
    from scipy import stats

    d = np.log(np.asarray(b, dtype=np.float64) / np.asarray(a, dtype=np.float64))
    n = d.size
    mean = float(d.mean())
    if n < 2:
        return PairedInterval(n, math.exp(mean), 0.0, math.inf, math.inf)
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return PairedInterval(n, math.exp(mean), math.exp(mean - half), math.exp(mean + half), (math.exp(half) - 1) * 100)


def judge_metric(gate: MetricGate, a: list[float], b: list[float], confidence: float) -> dict:
    """One metric after some rounds: its interval of B/A and regression | pass | inconclusive."""
    bad = [x for x in (*a, *b) if not (math.isfinite(x) and x > 0)]
    if bad:
        return {
            "metric": gate.metric,
            "threshold_pct": gate.threshold * 100,
            "verdict": "inconclusive",
            "note": f"{gate.metric} is zero or missing in some runs",
            "rounds": len(a),
        }
    interval = paired_log_interval(a, b, confidence)
    return {
        "metric": gate.metric,
        "threshold_pct": gate.threshold * 100,
        "mean_a": float(np.mean(a)),
        "mean_b": float(np.mean(b)),
        **asdict(interval),
        "verdict": decide(gate, interval.low, interval.high) if interval.rounds >= 2 else "inconclusive",
        "worst_regression_pct": worst_change_pct(gate, interval.low, interval.high),
    }
