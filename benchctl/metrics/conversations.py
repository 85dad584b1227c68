"""Multi-turn workloads: TTFT by turn, and the share of prompt tokens the engine's prefix cache served."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from benchctl.metrics.latency import PERCENTILES, completed, distribution, request_latencies

TURN_PERCENTILES = (50, 90, 99)  # few requests per turn: the median, and p90 / p99 for the spread


def cached_prompt_fraction(records: Iterable[Mapping[str, Any]]) -> float | None:
    """Client side, from the records: prompt tokens the engine says it served from its prefix cache / prompt tokens,
    over the records that report it (`extra.num_cached_tokens`: the reference engine, servers' usage
    .prompt_tokens_details); None when none does. The server's own counters give server_prefix_cache_hit_rate."""
    known = [r for r in records if isinstance((r.get("extra") or {}).get("num_cached_tokens"), int)]
    prompt = sum(r.get("prompt_tokens", 0) for r in known)
    return sum(r["extra"]["num_cached_tokens"] for r in known) / prompt if prompt else None


cached_fraction = cached_prompt_fraction  # its name before the server's hit rate was defined beside it


def ttft_by_turn(records: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Turn index -> distribution (TURN_PERCENTILES) of the TTFTs (s) of that turn's completed requests, in turn
    order; records without a turn are left out."""
    by_turn: dict[int, list[float]] = {}
    for r in completed(records):
        ttft = request_latencies(r)["ttft_s"]
        if r.get("turn") is not None and ttft is not None:
            by_turn.setdefault(int(r["turn"]), []).append(ttft)
    return {turn: distribution(by_turn[turn], TURN_PERCENTILES) for turn in sorted(by_turn)}


def conversation_summary(records: Sequence[Mapping[str, Any]], percentiles: Iterable[int] = PERCENTILES) -> dict:
    """Multi-turn workloads: TTFT of first turns vs later turns (whose prompts carry the history a prefix cache can
    reuse), per-turn TTFT, the cached share of prompt tokens, and how long whole conversations took."""
    done = completed(records)
    first = [r for r in done if r.get("turn") == 0]
    later = [r for r in done if (r.get("turn") or 0) > 0]
    ttft = {id(r): request_latencies(r)["ttft_s"] for r in done}
    by_conv: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_conv.setdefault(r.get("conversation_id") or r["request_id"], []).append(r)
    complete = [rs for rs in by_conv.values() if len(completed(rs)) == len(rs)]
    summary: dict[str, Any] = {
        "num_conversations": len(by_conv),
        "completed_conversations": len(complete),
        "turns": distribution((len(rs) for rs in by_conv.values()), percentiles),
        "ttft_first_turn_s": distribution((ttft[id(r)] for r in first), percentiles),
        "ttft_later_turns_s": distribution((ttft[id(r)] for r in later), percentiles),
        "prompt_tokens_first_turn": distribution((r.get("prompt_tokens") for r in first), percentiles),
        "prompt_tokens_later_turns": distribution((r.get("prompt_tokens") for r in later), percentiles),
        "ttft_by_turn_s": {str(turn): stats for turn, stats in ttft_by_turn(done).items()},
        "cached_prompt_fraction": cached_prompt_fraction(done),
        "cached_prompt_fraction_later_turns": cached_prompt_fraction(later),
        # from turn 0's arrival to the last turn's last token: what a user of the conversation waited in all
        "conversation_duration_s": distribution(
            (max(r["finish_s"] for r in rs) - min(r.get("arrival_s", 0.0) for r in rs) for rs in complete), percentiles
        ),
    }
    a, b = summary["ttft_first_turn_s"].get("median"), summary["ttft_later_turns_s"].get("median")
    summary["ttft_later_vs_first_median"] = b / a if a and b is not None else None
    return summary
