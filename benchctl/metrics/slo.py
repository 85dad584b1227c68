"""SLOs on a statistic of a latency distribution (`--slo ttft_p99:500ms`), and how sure a set of runs is of one.

An SLO names a metric (ttft, tpot, e2el, itl), a statistic over requests (pNN, mean, median) and a limit. It is
met when the statistic, over every completed request of the runs pooled, is at most the limit. Its confidence
interval is a two-level bootstrap: resample the repetitions, then the requests within each, and take the
statistic of the pool each time; so run-to-run drift counts as well as the spread of requests within a run (with
runs that do not drift the interval comes out somewhat wider than one pool's: a conservative answer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchctl.metrics.latency import latency_values

SLO_METRICS = ("ttft", "tpot", "e2el", "itl")
_SLO = re.compile(r"(ttft|tpot|e2el|itl)_(p\d+(?:\.\d+)?|mean|median):([0-9]*\.?[0-9]+)\s*(ms|s)?")
_LABELS = {"ttft": "TTFT", "tpot": "TPOT", "e2el": "E2EL", "itl": "ITL"}


@dataclass(frozen=True, slots=True)
class PercentileSLO:
    metric: str  # ttft | tpot | e2el | itl
    stat: str  # "p99", "p99.9", "mean" or "median"
    limit_s: float

    @property
    def name(self) -> str:
        return f"{self.metric}_{self.stat}"

    @property
    def label(self) -> str:
        """ "p99 TTFT ≤ 500 ms"."""
        return f"{self.stat} {_LABELS[self.metric]} ≤ {self.limit_s * 1000:g} ms"


def parse_percentile_slos(items: Iterable[str]) -> list[PercentileSLO]:
    """`ttft_p99:500ms`, `tpot_p95:50ms`, `e2el_median:2s` (a bare number is milliseconds). A bad item raises
    ValueError with a one-line message naming it; a metric and statistic given twice keeps the last."""
    slos: dict[str, PercentileSLO] = {}
    for item in items:
        match = _SLO.fullmatch(item.strip().lower())
        if match is None:
            raise ValueError(
                f"expected METRIC_STAT:LIMIT such as ttft_p99:500ms (METRIC one of "
                f"{', '.join(SLO_METRICS)}; STAT pNN, mean or median), got {item!r}"
            )
        metric, stat, value, unit = match.groups()
        limit_s = float(value) * (1.0 if unit == "s" else 1e-3)
        if stat.startswith("p") and not 0 < float(stat[1:]) <= 100 or not 0 < limit_s < math.inf:
            raise ValueError(f"{item!r}: the percentile must be in (0, 100] and the limit > 0")
        slo = PercentileSLO(metric, stat, limit_s)
        slos[slo.name] = slo
    return list(slos.values())


def per_request_limits_ms(slos: Sequence[PercentileSLO]) -> dict[str, float]:
    """The per-request limits goodput counts against (summary's slos_ms): each metric's strictest limit; ITL has
    no single value per request, so it has none."""
    limits: dict[str, float] = {}
    for slo in slos:
        if slo.metric != "itl":
            limits[slo.metric] = min(limits.get(slo.metric, math.inf), slo.limit_s * 1000)
    return limits


def statistic(values: np.ndarray, stat: str) -> float:
    if values.size == 0:
        return math.nan
    if stat == "mean":
        return float(values.mean())
    if stat == "median":
        return float(np.median(values))
    return float(np.percentile(values, float(stat[1:])))


def slo_values(latencies: Sequence[Mapping[str, Any]], slo: PercentileSLO) -> np.ndarray:
    """The values the SLO's statistic is over (request_latencies of completed requests; ITL pooled)."""
    return np.asarray(latency_values(latencies, f"{slo.metric}_s"), dtype=np.float64)


def slo_estimate(
    repetitions: Sequence[Sequence[Mapping[str, Any]]],
    slo: PercentileSLO,
    confidence: float = 0.95,
    resamples: int = 400,
    seed: int = 0,
) -> dict[str, Any]:
    """{value_s, low_s, high_s, ratio (value / limit), ratio_low, ratio_high, met} of one SLO over repetitions
    (each a list of request latencies); value None when no request completed (the SLO is not met)."""
    groups = [slo_values(lat, slo) for lat in repetitions]
    pooled = np.concatenate(groups) if groups else np.zeros(0)
    if pooled.size == 0:
        return {
            "value_s": None,
            "low_s": None,
            "high_s": None,
            "ratio": math.inf,
            "ratio_low": math.inf,
            "ratio_high": math.inf,
            "met": False,
        }
    rng = np.random.default_rng(seed)
    filled = [g for g in groups if g.size]
    estimates = np.empty(resamples)
    for i in range(resamples):
        picks = rng.integers(0, len(filled), len(filled)) if len(filled) > 1 else [0]
        sample = np.concatenate([filled[k][rng.integers(0, filled[k].size, filled[k].size)] for k in picks])
        estimates[i] = statistic(sample, slo.stat)
    low, high = np.quantile(estimates, [(1 - confidence) / 2, (1 + confidence) / 2])
    value = statistic(pooled, slo.stat)
    return {
        "value_s": value,
        "low_s": float(low),
        "high_s": float(high),
        "ratio": value / slo.limit_s,
        "ratio_low": float(low) / slo.limit_s,
        "ratio_high": float(high) / slo.limit_s,
        "met": value <= slo.limit_s,
    }
