"""Windows of a run: the steady state between warm-up and cool-down, and each stage of a staged run.

Requests carry their window in their record (`extra.phase`: warmup | steady | cooldown; `extra.stage`: the stage's
index), given by the workload from their scheduled arrival (benchctl.workload.shapes). A window's summary is:
- counts and latency distributions over the requests that *arrived* in it (its labelled records);
- rates over what the server *finished* in the window's time span [start_s, end_s), whoever's request it was:
  output tokens at their token times, completed requests (and good ones, with SLOs) at their finish, input
  tokens at their request's first token. So a draining tail or a warming start cannot lower a window's throughput.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from benchctl.metrics.latency import completed, request_latencies
from benchctl.metrics.summary import meets_slos, summarize

PHASES = ("warmup", "steady", "cooldown")


def phase_of(record: Mapping[str, Any]) -> str | None:
    return (record.get("extra") or {}).get("phase")


def stage_of(record: Mapping[str, Any]) -> int | None:
    return (record.get("extra") or {}).get("stage")


def output_tokens_between(records: Sequence[Mapping[str, Any]], start_s: float, end_s: float) -> int:
    """Output tokens produced in [start_s, end_s): at their chunks' times (chunk_tokens per chunk where a chunk
    carries several), or all at the finish for a record without token times."""
    total = 0
    for r in completed(records):
        times = r.get("token_times_s")
        if not times:
            total += (r.get("output_tokens") or 0) if start_s <= r["finish_s"] < end_s else 0
            continue
        counts = r.get("chunk_tokens") or [1] * len(times)
        total += sum(n for t, n in zip(times, counts) if start_s <= t < end_s)
    return total


def window_summary(
    records: Sequence[Mapping[str, Any]],
    labelled: Sequence[Mapping[str, Any]],
    start_s: float,
    end_s: float,
    slos_ms: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """summarize() of the labelled records, its rates replaced by the server's output within [start_s, end_s)."""
    summary = summarize(labelled, slos_ms=slos_ms)
    span = end_s - start_s
    finished = [r for r in completed(records) if start_s <= r["finish_s"] < end_s]
    first_tokens = [
        r for r in completed(records) if r.get("first_token_s") is not None and start_s <= r["first_token_s"] < end_s
    ]
    input_tokens = sum(r.get("prompt_tokens") or 0 for r in first_tokens)
    output_tokens = output_tokens_between(records, start_s, end_s)

    def rate(n: float) -> float:
        return n / span if span > 0 else math.nan

    summary.update(
        window_s=[start_s, end_s],
        duration_s=span,
        request_throughput=rate(len(finished)),
        input_tok_s=rate(input_tokens),
        output_tok_s=rate(output_tokens),
        total_tok_s=rate(input_tokens + output_tokens),
    )
    if slos_ms:
        summary["goodput_req_s"] = rate(sum(meets_slos(request_latencies(r), slos_ms) for r in finished))
    return summary


def summarize_windows(
    records: Sequence[Mapping[str, Any]], schedule: Mapping[str, Any] | None, slos_ms: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """{"steady_state": summary} with --warmup/--cooldown, {"stages": [summary per stage]} with --stages, both or
    neither ({}): what run.json keeps beside the whole-run summary."""
    schedule = schedule or {}
    out: dict[str, Any] = {}
    windows = schedule.get("windows")
    if windows:
        steady = [r for r in records if phase_of(r) == "steady"]
        summary = window_summary(records, steady, windows["steady_start_s"], windows["steady_end_s"], slos_ms)
        summary["phases"] = {p: sum(phase_of(r) == p for r in records) for p in PHASES}
        out["steady_state"] = summary
    stages = schedule.get("stages")
    if stages:
        out["stages"] = [
            {
                "stage": s["stage"],
                "offered_request_rate": s["request_rate"],
                **window_summary(
                    records, [r for r in records if stage_of(r) == s["stage"]], s["start_s"], s["end_s"], slos_ms
                ),
            }
            for s in stages
        ]
    return out
