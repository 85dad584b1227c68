"""Run-level metrics from the per-request records: counts, throughput, latency distributions, goodput."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from benchctl.metrics.conversations import conversation_summary
from benchctl.metrics.latency import (
    LATENCY_METRICS,
    PERCENTILES,
    completed,
    distribution,
    is_completed,
    latency_values,
    request_latencies,
    run_duration_s,
)

SLO_NAMES = ("ttft", "tpot", "e2el")  # goodput SLOs, each a limit in milliseconds
THROUGHPUT_KEYS = ("request_throughput", "input_tok_s", "output_tok_s", "total_tok_s", "goodput_req_s")
# what became of the requests, shown beside the throughput by show, compare, the report and the gate's warnings
COUNT_KEYS = ("completed", "failed", "output_tokens_short", "output_tokens_over")


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


def output_length_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """output_tokens_short: completed requests that produced fewer tokens than they asked for (every backend runs
    with ignore_eos, so it should be 0). output_tokens_over: requests, failed or not, that produced more tokens than
    they asked for (a server ignoring max_tokens), counted from the record's own numbers whatever the client flagged.
    Records that ask for no particular length count in neither."""
    short = over = 0
    for r in records:
        out, asked = r.get("output_tokens") or 0, r.get("expected_output_tokens")
        if not isinstance(asked, int | float) or asked <= 0:
            continue
        short += int(out < asked and is_completed(r))
        over += int(out > asked)
    return {"output_tokens_short": short, "output_tokens_over": over}


def summarize(
    records: Sequence[Mapping[str, Any]],
    duration_s: float | None = None,
    slos_ms: Mapping[str, float] | None = None,
    percentiles: Iterable[int] = PERCENTILES,
) -> dict[str, Any]:
    """Run-level metrics from per-request records (the only place they are computed)."""
    percentiles = tuple(percentiles)
    for key in slos_ms or {}:
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
        **{
            name: distribution(latency_values(lat, name), percentiles)
            for name in (*LATENCY_METRICS, "queue_s", "latency_per_token_s")
        },
        **output_length_counts(records),
    }
    if any(r.get("turn") is not None for r in records):
        summary["conversations"] = conversation_summary(records, percentiles)
    if slos_ms:
        good = sum(1 for x in lat if meets_slos(x, slos_ms))
        summary["slos_ms"] = dict(slos_ms)
        summary["good_requests"] = good
        summary["goodput_req_s"] = rate(good)
    return summary


def request_counts(summary: Mapping[str, Any] | None) -> dict[str, int | None]:
    """COUNT_KEYS of a stored summary; None where it has no such count (an older run.json, or a broken one)."""
    summary = summary or {}
    return {k: summary[k] if _number(summary.get(k)) else None for k in COUNT_KEYS}


def flat_metrics(summary: Mapping[str, Any] | None) -> dict[str, float]:
    """`output_tok_s`, `ttft_p99_ms`, ... : one number per key, for compare tables and the gate. A value the run
    does not have (a failed run's run.json stores null for what it could not measure) gives no key."""
    summary = summary or {}
    flat = {k: float(summary[k]) for k in THROUGHPUT_KEYS if _number(summary.get(k))}
    for name in LATENCY_METRICS:
        stats = summary.get(name) or {}
        short = name.removesuffix("_s")
        for key, value in stats.items():
            if key != "count" and _number(value):
                flat[f"{short}_{key}_ms"] = value * 1000.0
    conversations = summary.get("conversations") or {}
    for name in ("ttft_first_turn_s", "ttft_later_turns_s"):
        for key in ("mean", "median", "p99"):
            if _number((conversations.get(name) or {}).get(key)):
                flat[f"{name.removesuffix('_s')}_{key}_ms"] = conversations[name][key] * 1000.0
    if _number(conversations.get("cached_prompt_fraction")):
        flat["cached_prompt_fraction"] = float(conversations["cached_prompt_fraction"])
    return flat


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
