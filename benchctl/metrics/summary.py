"""Run-level metrics from the per-request records: counts, throughput, latency distributions, goodput."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from benchctl.metrics.conversations import conversation_summary
from benchctl.metrics.latency import (
    LATENCY_METRICS,
    PERCENTILES,
    completed,
    distribution,
    latency_values,
    request_latencies,
    run_duration_s,
)

SLO_NAMES = ("ttft", "tpot", "e2el")  # goodput SLOs, each a limit in milliseconds


def parse_slos(items: Iterable[str]) -> dict[str, float]:
    """`--goodput` values (`ttft:500`) -> {"ttft": 500.0}: NAME is ttft, tpot or e2el, the limit a finite number of
    milliseconds > 0. A bad item raises ValueError with a one-line message naming it."""
    slos: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or name not in SLO_NAMES:
            raise ValueError(f"expected ttft|tpot|e2el:MILLISECONDS, got {item!r}")
        try:
            limit = float(value)
        except ValueError:
            limit = math.nan
        if not 0 < limit < math.inf:
            raise ValueError(f"expected ttft|tpot|e2el:MILLISECONDS, got {item!r} (a finite number > 0)")
        slos[name] = limit
    return slos


def meets_slos(latencies: Mapping[str, Any], slos_ms: Mapping[str, float]) -> bool:
    """True when every SLO (keys ttft, tpot, e2el, in milliseconds) holds; undefined TPOT passes."""
    for name, limit_ms in slos_ms.items():
        value = latencies.get(f"{name}_s")
        if name == "tpot" and value is None:
            continue
        if value is None or value * 1000.0 > limit_ms:
            return False
    return True


def summarize(records: list[Mapping[str, Any]], duration_s: float | None = None,
              slos_ms: Mapping[str, float] | None = None,
              percentiles: Iterable[int] = PERCENTILES) -> dict[str, Any]:
    """Run-level metrics from per-request records (the only place they are computed)."""
    percentiles = tuple(percentiles)
    for key in (slos_ms or {}):
        if key not in SLO_NAMES:
            raise ValueError(f"unknown SLO {key!r}; use ttft, tpot or e2el (milliseconds)")
    done = completed(records)
    lat = [request_latencies(r) for r in done]
    duration = duration_s if duration_s is not None else run_duration_s(records)

    def rate(n: float) -> float:
        return n / duration if duration > 0 else math.nan

    input_tokens = sum(r.get("prompt_tokens", 0) for r in done)
    output_tokens = sum(r.get("output_tokens", 0) for r in done)
    summary: dict[str, Any] = {
        "num_requests": len(records),
        "completed": len(done),
        "failed": len(records) - len(done),
        "duration_s": duration,
        "total_input_tokens": input_tokens,
        "total_output_tokens": output_tokens,
        "request_throughput": rate(len(done)),
        "input_tok_s": rate(input_tokens),
        "output_tok_s": rate(output_tokens),
        "total_tok_s": rate(input_tokens + output_tokens),
        **{name: distribution(latency_values(lat, name), percentiles)
           for name in (*LATENCY_METRICS, "queue_s", "latency_per_token_s")},
        "output_tokens_short": sum(1 for r in done if r.get("output_tokens", 0) < r.get("expected_output_tokens", 0)),
    }
    if any(r.get("turn") is not None for r in records):
        summary["conversations"] = conversation_summary(records, percentiles)
    if slos_ms:
        good = sum(1 for x in lat if meets_slos(x, slos_ms))
        summary["slos_ms"] = dict(slos_ms)
        summary["good_requests"] = good
        summary["goodput_req_s"] = rate(good)
    return summary


def flat_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """`output_tok_s`, `ttft_p99_ms`, ... : one number per key, for compare tables and the gate."""
    flat = {k: float(summary[k]) for k in ("request_throughput", "input_tok_s", "output_tok_s", "total_tok_s",
                                            "goodput_req_s") if k in summary}
    for name in LATENCY_METRICS:
        stats = summary.get(name) or {}
        short = name.removesuffix("_s")
        for key, value in stats.items():
            if key != "count":
                flat[f"{short}_{key}_ms"] = value * 1000.0
    conversations = summary.get("conversations") or {}
    for name in ("ttft_first_turn_s", "ttft_later_turns_s"):
        for key in ("mean", "median", "p99"):
            if key in (conversations.get(name) or {}):
                flat[f"{name.removesuffix('_s')}_{key}_ms"] = conversations[name][key] * 1000.0
    if conversations.get("cached_prompt_fraction") is not None:
        flat["cached_prompt_fraction"] = float(conversations["cached_prompt_fraction"])
    return flat
