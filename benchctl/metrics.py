"""The one definition of every metric benchctl reports.

Definitions follow vLLM's `bench serve` (REFERENCE.md, "Metric definitions"):
- TTFT  = first token time - submission time (`start_s`: when the request reached the engine/server;
          a client-side wait for a --max-concurrency slot is reported separately as `queue_s`);
- E2EL  = last token time - submission time;
- TPOT  = (E2EL - TTFT) / (output_tokens - 1), per request, then aggregated over requests;
- ITL   = every gap between consecutive output chunks, pooled over all requests (a chunk may carry
          several tokens, so ITL != TPOT in general);
- throughput = completed requests (or their tokens) / run duration, the duration running from the run
  start to the last token of the last request (the tail included).
CLI, reports and the regression gate all read these functions; nothing else computes a metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)
LATENCY_METRICS = ("ttft_s", "tpot_s", "itl_s", "e2el_s")

# Our name -> the name each anchor tool uses for the same quantity (None: that tool has no equivalent).
# guidellm and aiperf call our TPOT "inter-token latency"; guidellm's own "time per output token"
# includes the TTFT and is our `latency_per_token_s`; aiperf's "inter chunk latency" is our ITL.
NAME_MAP: dict[str, dict[str, str | None]] = {
    "request_throughput": {"vllm": "request_throughput", "guidellm": "requests_per_second",
                           "aiperf": "request_throughput"},
    "input_tok_s": {"vllm": "total_input_tokens / duration", "guidellm": "prompt_tokens_per_second",
                    "aiperf": None},
    "output_tok_s": {"vllm": "output_throughput", "guidellm": "output_tokens_per_second",
                     "aiperf": "output_token_throughput"},
    "total_tok_s": {"vllm": "total_token_throughput", "guidellm": "tokens_per_second", "aiperf": None},
    "ttft_s": {"vllm": "ttft_ms", "guidellm": "time_to_first_token_ms", "aiperf": "time_to_first_token"},
    "tpot_s": {"vllm": "tpot_ms", "guidellm": "inter_token_latency_ms", "aiperf": "inter_token_latency"},
    "itl_s": {"vllm": "itl_ms", "guidellm": None, "aiperf": "inter_chunk_latency"},
    "e2el_s": {"vllm": "e2el_ms", "guidellm": "request_latency", "aiperf": "request_latency"},
    "latency_per_token_s": {"vllm": None, "guidellm": "time_per_output_token_ms", "aiperf": None},
    "goodput_req_s": {"vllm": "request_goodput", "guidellm": None, "aiperf": "goodput"},
}


def request_latencies(record: Mapping[str, Any]) -> dict[str, Any]:
    """Derived per-request latencies (seconds) of one record; None where undefined."""
    ok = record.get("error") is None and record.get("finish_s") is not None
    start = record.get("start_s")
    if start is None:
        start = record.get("arrival_s", 0.0)
    first, finish = record.get("first_token_s"), record.get("finish_s")
    out_tokens = record.get("output_tokens") or 0
    ttft = first - start if ok and first is not None else None
    e2el = finish - start if ok else None
    tpot = (e2el - ttft) / (out_tokens - 1) if ttft is not None and e2el is not None and out_tokens > 1 else None
    times = record.get("token_times_s") or []
    itl = [b - a for a, b in zip(times, times[1:])] if ok else []
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
        if key not in ("ttft", "tpot", "e2el"):
            raise ValueError(f"unknown SLO {key!r}; use ttft, tpot or e2el (milliseconds)")
    done = [r for r in records if r.get("error") is None and r.get("finish_s") is not None]
    lat = [request_latencies(r) for r in done]
    duration = duration_s if duration_s is not None else run_duration_s(records)
    rate = (lambda n: n / duration if duration > 0 else math.nan)
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
        "ttft_s": distribution((x["ttft_s"] for x in lat), percentiles),
        "tpot_s": distribution((x["tpot_s"] for x in lat), percentiles),
        "itl_s": distribution((g for x in lat for g in x["itl_s"]), percentiles),
        "e2el_s": distribution((x["e2el_s"] for x in lat), percentiles),
        "queue_s": distribution((x["queue_s"] for x in lat), percentiles),
        "latency_per_token_s": distribution((x["latency_per_token_s"] for x in lat), percentiles),
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


def cached_fraction(records: list[Mapping[str, Any]]) -> float | None:
    """Prompt tokens served from the engine's prefix cache / prompt tokens, over the records whose engine reports
    it (`extra.num_cached_tokens`: the reference engine, servers' usage.prompt_tokens_details); vLLM's hit rate."""
    known = [r for r in records if isinstance((r.get("extra") or {}).get("num_cached_tokens"), int)]
    prompt = sum(r.get("prompt_tokens", 0) for r in known)
    return sum(r["extra"]["num_cached_tokens"] for r in known) / prompt if prompt else None


def conversation_summary(records: list[Mapping[str, Any]], percentiles: Iterable[int] = PERCENTILES) -> dict:
    """Multi-turn workloads: TTFT of first turns vs later turns (whose prompts carry the history a prefix cache can
    reuse), per-turn TTFT, the cached share of prompt tokens, and how long whole conversations took."""
    done = [r for r in records if r.get("error") is None and r.get("finish_s") is not None]
    first = [r for r in done if r.get("turn") == 0]
    later = [r for r in done if (r.get("turn") or 0) > 0]
    ttft = {id(r): request_latencies(r)["ttft_s"] for r in done}
    by_conv: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_conv.setdefault(r.get("conversation_id") or r["request_id"], []).append(r)
    done_ids = {id(r) for r in done}
    complete = [rs for rs in by_conv.values() if all(id(r) in done_ids for r in rs)]
    summary = {
        "num_conversations": len(by_conv),
        "completed_conversations": len(complete),
        "turns": distribution((len(rs) for rs in by_conv.values()), percentiles),
        "ttft_first_turn_s": distribution((ttft[id(r)] for r in first), percentiles),
        "ttft_later_turns_s": distribution((ttft[id(r)] for r in later), percentiles),
        "prompt_tokens_first_turn": distribution((r.get("prompt_tokens") for r in first), percentiles),
        "prompt_tokens_later_turns": distribution((r.get("prompt_tokens") for r in later), percentiles),
        "ttft_by_turn_s": {str(k): distribution((ttft[id(r)] for r in done if r.get("turn") == k), (50, 99))
                           for k in sorted({r.get("turn") for r in done})},
        "cached_prompt_fraction": cached_fraction(done),
        "cached_prompt_fraction_later_turns": cached_fraction(later),
        # from turn 0's arrival to the last turn's last token: what a user of the conversation waited in all
        "conversation_duration_s": distribution(
            (max(r["finish_s"] for r in rs) - min(r.get("arrival_s", 0.0) for r in rs) for rs in complete),
            percentiles),
    }
    a, b = summary["ttft_first_turn_s"].get("median"), summary["ttft_later_turns_s"].get("median")
    summary["ttft_later_vs_first_median"] = b / a if a and b is not None else None
    return summary


def spec_decode_acceptance(num_drafts: float | None, num_draft_tokens: float | None,
                           num_accepted_tokens: float | None) -> dict[str, Any] | None:
    """Speculative decoding, vLLM's definitions: acceptance rate = accepted ÷ draft tokens; mean acceptance length =
    1 + accepted ÷ drafts (sequence-steps that had a draft: the tokens such a step yields). None when nothing was
    drafted."""
    if not num_draft_tokens or num_accepted_tokens is None:
        return None
    return {"num_drafts": num_drafts, "num_draft_tokens": num_draft_tokens, "num_accepted_tokens": num_accepted_tokens,
            "acceptance_rate": num_accepted_tokens / num_draft_tokens,
            "mean_acceptance_length": 1 + num_accepted_tokens / num_drafts if num_drafts else None}


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
