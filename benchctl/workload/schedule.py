"""Arrival schedules, precomputed from cumulative delays.

Sleeping one interval at a time drifts the achieved rate low (vLLM #21104); an absolute schedule
computed up front does not: the dispatcher waits until `t0 + arrival_s`, whatever the last wait cost.
"""

from __future__ import annotations

import math

import numpy as np

from benchctl.workload.base import WorkloadError

SCHEDULE_KINDS = ("poisson", "gamma", "constant")


def arrival_times(
    num_requests: int, request_rate: float = math.inf, burstiness: float = 1.0, kind: str = "poisson", seed: int = 0
) -> np.ndarray:
    """Arrival offsets in seconds, shape (num_requests,), non-decreasing, first at 0.

    - rate inf: everything at t=0 (offline / "infinite" load);
    - poisson: exponential gaps with mean 1/rate (gamma with shape 1);
    - gamma: gaps ~ Gamma(shape=burstiness, scale=1/(rate*burstiness)), same mean rate; burstiness < 1
      is burstier than Poisson, > 1 more uniform (vLLM's `--burstiness`);
    - constant: gaps of exactly 1/rate.
    """
    if num_requests < 0:
        raise WorkloadError("number of requests must be >= 0")
    if not request_rate > 0:
        raise WorkloadError(f"--request-rate must be > 0 (or inf), got {request_rate}")
    if not burstiness > 0:
        raise WorkloadError(f"--burstiness must be > 0, got {burstiness}")
    if kind not in SCHEDULE_KINDS:
        raise WorkloadError(f"unknown arrival schedule {kind!r}; choose one of {', '.join(SCHEDULE_KINDS)}")
    if num_requests == 0:
        return np.zeros(0)
    if math.isinf(request_rate):
        return np.zeros(num_requests)
    if kind == "constant":
        gaps = np.full(num_requests - 1, 1.0 / request_rate)
    else:
        shape = 1.0 if kind == "poisson" else burstiness
        rng = np.random.default_rng(seed)
        gaps = rng.gamma(shape, 1.0 / (request_rate * shape), size=num_requests - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def schedule_description(request_rate: float, burstiness: float, kind: str, max_concurrency: int | None) -> dict:
    return {
        "kind": "all-at-once" if math.isinf(request_rate) else kind,
        "request_rate": None if math.isinf(request_rate) else request_rate,
        "burstiness": burstiness if kind == "gamma" else (1.0 if kind == "poisson" else None),
        "max_concurrency": max_concurrency,
    }
