"""Reasoning models: a server that streams its reasoning (delta.reasoning_content / delta.reasoning) before the answer.

TTFT stays the time to the first token of any kind, and TPOT and ITL run over every token, reasoning included (what
the engine produced); the time to the first *answer* token is its own metric, as are the reasoning and answer token
counts (the record's extra.reasoning, from the load client: benchctl.serving.stream).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from benchctl.metrics.latency import PERCENTILES, distribution, is_completed


def time_to_first_answer_s(record: Mapping[str, Any]) -> float | None:
    """First answer token - submission, for a completed request that reasoned and then answered; else None."""
    reasoning = (record.get("extra") or {}).get("reasoning") or {}
    first = reasoning.get("first_answer_token_s")
    if not is_completed(record) or first is None:
        return None
    start = record.get("start_s")
    return first - (start if start is not None else record.get("arrival_s", 0.0))


def reasoning_summary(records: Sequence[Mapping[str, Any]], percentiles: Iterable[int] = PERCENTILES) -> dict:
    """{"reasoning": {requests, ttft_answer_s, reasoning_tokens, answer_tokens}} over the completed requests that
    streamed reasoning; {} when none did."""
    reasoned = [r for r in records if is_completed(r) and (r.get("extra") or {}).get("reasoning")]
    if not reasoned:
        return {}
    percentiles = tuple(percentiles)
    counts = [r["extra"]["reasoning"] for r in reasoned]
    return {
        "reasoning": {
            "requests": len(reasoned),
            "ttft_answer_s": distribution((time_to_first_answer_s(r) for r in reasoned), percentiles),
            "reasoning_tokens": distribution((c.get("reasoning_tokens") for c in counts), percentiles),
            "answer_tokens": distribution((c.get("answer_tokens") for c in counts), percentiles),
        }
    }
