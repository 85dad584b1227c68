"""The one definition of every metric benchctl reports.

Definitions follow vLLM's `bench serve` (docs/metrics.md maps each to vLLM's, guidellm's and aiperf's names):
- TTFT  = first token time - submission time (`start_s`: when the request reached the engine/server;
          a client-side wait for a --max-concurrency slot is reported separately as `queue_s`);
- E2EL  = last token time - submission time;
- TPOT  = (E2EL - TTFT) / (output_tokens - 1), per request, then aggregated over requests;
- ITL   = every gap between consecutive output chunks, pooled over all requests (a chunk may carry
          several tokens, so ITL != TPOT in general);
- throughput = completed requests (or their tokens) / run duration, the duration running from the run
  start to the last token of the last request (the tail included).
CLI, reports and the regression gate all read these functions; nothing else computes a metric.

Modules: latency (one request), summary (one run), conversations (multi-turn), engine (engine and server counters),
names (the anchors' names for ours).
"""

from __future__ import annotations

from benchctl.metrics.conversations import (
    TURN_PERCENTILES,
    cached_fraction,
    cached_prompt_fraction,
    conversation_summary,
    ttft_by_turn,
)
from benchctl.metrics.engine import server_prefix_cache_hit_rate, spec_decode_acceptance
from benchctl.metrics.latency import (
    LATENCY_METRICS,
    PERCENTILES,
    completed,
    distribution,
    is_completed,
    request_latencies,
    run_duration_s,
)
from benchctl.metrics.names import NAME_MAP
from benchctl.metrics.summary import SLO_NAMES, flat_metrics, meets_slos, parse_slos, summarize

__all__ = [
    "LATENCY_METRICS",
    "NAME_MAP",
    "PERCENTILES",
    "SLO_NAMES",
    "TURN_PERCENTILES",
    "cached_fraction",
    "cached_prompt_fraction",
    "completed",
    "conversation_summary",
    "distribution",
    "flat_metrics",
    "is_completed",
    "meets_slos",
    "parse_slos",
    "request_latencies",
    "run_duration_s",
    "server_prefix_cache_hit_rate",
    "spec_decode_acceptance",
    "summarize",
    "ttft_by_turn",
]
