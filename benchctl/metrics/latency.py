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


def latency_values(latencies: Iterable[Mapping[str, Any]], metric: str) -> list[float]:
    """The values one metric's distribution is taken over (request_latencies of completed requests): one per
    request where defined, except ITL, whose gaps are pooled over all requests (vLLM's definition)."""
    if metric == "itl_s":
        return [gap for lat in latencies for gap in lat["itl_s"]]
    return [lat[metric] for lat in latencies if lat.get(metric) is not None]


def distribution(values: Iterable[float | None], percentiles: Iterable[int] = PERCENTILES) -> dict[str, Any]:
    """mean / median / std / min / max and the given percentiles (numpy's linear interpolation)."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if a.size == 0:
        return {"count": 0}
    stats = {
        "count": int(a.size),
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
    }
    for p in percentiles:
        stats[f"p{p}"] = float(np.percentile(a, p))
    return stats


def empirical_cdf(values: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, fraction of values <= each): the steps of the empirical CDF."""
    x = np.sort(np.asarray(list(values), dtype=np.float64))
    return x, np.arange(1, x.size + 1) / max(x.size, 1)


def run_duration_s(records: Iterable[Mapping[str, Any]]) -> float:
    """From the run start (t=0) to the last token of the last request, failures included."""
    ends = [r["finish_s"] for r in records if r.get("finish_s") is not None]
    return max(ends, default=0.0)


def in_flight(records: Iterable[Mapping[str, Any]], begin_key: str, end_key: str) -> tuple[list[float], list[int]]:
    """Step function of how many requests are between two of their timestamps: (times, counts). A missing begin
    counts from the arrival; a request without an end, or whose end is not after its begin, is never in between."""
    events = []
    for rec in records:
        begin = rec.get(begin_key) if rec.get(begin_key) is not None else rec.get("arrival_s", 0.0)
        end = rec.get(end_key)
        if end is None or end <= begin:
            continue
        events += [(begin, 1), (end, -1)]
    if not events:
        return [], []
    events.sort(key=lambda e: (e[0], e[1]))  # at a tie, a finish frees the slot before a start takes it
    times = np.array([0.0] + [t for t, _ in events])
    counts = np.concatenate([[0], np.cumsum([d for _, d in events])])
    return times.tolist(), counts.astype(int).tolist()
