"""Per-request metrics: what one record says about its request, and the distributions over requests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

PERCENTILES = (50, 90, 95, 99)
LATENCY_METRICS = ("ttft_s", "tpot_s", "itl_s", "e2el_s")
RecordT = TypeVar("RecordT", bound=Mapping[str, Any])


def is_completed(record: Mapping[str, Any]) -> bool:
    """A request completed when its record has no error and a finish time; every other record is a failure. The one
    definition: summaries, the report, the gate and RequestRecord.ok all ask this function."""
    return record.get("error") is None and record.get("finish_s") is not None


def completed(records: Iterable[RecordT]) -> list[RecordT]:
    """The completed records (is_completed), in their order."""
    return [r for r in records if is_completed(r)]


def request_latencies(record: Mapping[str, Any]) -> dict[str, Any]:
    """Derived per-request latencies (seconds) of one record; None where undefined."""
    ok = is_completed(record)
    start = record.get("start_s")
    if start is None:
        start = record.get("arrival_s", 0.0)
    first, finish = record.get("first_token_s"), record.get("finish_s")
    out_tokens = record.get("output_tokens") or 0
    ttft = first - start if ok and first is not None else None
    e2el = finish - start if ok else None
    tpot = (e2el - ttft) / (out_tokens - 1) if ttft is not None and e2el is not None and out_tokens > 1 else None
    times = record.get("token_times_s") or []
    itl = [b - a for a, b in itertools.pairwise(times)] if ok else []
    return {
        "queue_s": start - record.get("arrival_s", 0.0),
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2el_s": e2el,
        "itl_s": itl,
        "latency_per_token_s": e2el / out_tokens if e2el is not None and out_tokens > 0 else None,
    }


def distribution(values: Iterable[float | None], percentiles: Iterable[int] = PERCENTILES) -> dict[str, Any]:
    """mean / median / std / min / max and the given percentiles (numpy's linear interpolation)."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if a.size == 0:
        return {"count": 0}
    stats = {"count": int(a.size), "mean": float(a.mean()), "median": float(np.median(a)),
             "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}
    for p in percentiles:
        stats[f"p{p}"] = float(np.percentile(a, p))
    return stats


def run_duration_s(records: Iterable[Mapping[str, Any]]) -> float:
    """From the run start (t=0) to the last token of the last request, failures included."""
    ends = [r["finish_s"] for r in records if r.get("finish_s") is not None]
    return max(ends, default=0.0)


