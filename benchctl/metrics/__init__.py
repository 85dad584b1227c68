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
names (the anchors' names for ours), windows (steady state and stages), slo (percentile SLOs and their confidence),
frontier (Pareto fronts).
"""

from __future__ import annotations

from benchctl.metrics.ceiling import BELOW_BEST, below_best, best_measurement, ceiling_from, compute_ceiling_tok_s
from benchctl.metrics.conversations import (
    TURN_PERCENTILES,
    cached_fraction,
    cached_prompt_fraction,
    conversation_summary,
    ttft_by_turn,
)
from benchctl.metrics.energy import energy_metrics, integrate_power_j
from benchctl.metrics.engine import server_prefix_cache_hit_rate, spec_decode_acceptance
from benchctl.metrics.frontier import pareto_front, per_user_tok_s
from benchctl.metrics.latency import (
    LATENCY_METRICS,
    PERCENTILES,
    completed,
    distribution,
    empirical_cdf,
    in_flight,
    is_completed,
    latency_values,
    request_latencies,
    run_duration_s,
)
from benchctl.metrics.names import NAME_MAP
from benchctl.metrics.reasoning import reasoning_summary, time_to_first_answer_s
from benchctl.metrics.runs import mean_present, ratios_to_first, spread_fraction
from benchctl.metrics.slo import PercentileSLO, parse_percentile_slos, per_request_limits_ms, slo_estimate
from benchctl.metrics.summary import (
    COUNT_KEYS,
    SLO_NAMES,
    THROUGHPUT_KEYS,
    flat_metrics,
    meets_slos,
    output_length_counts,
    parse_slos,
    request_counts,
    summarize,
)
from benchctl.metrics.windows import phase_of, stage_of, summarize_windows, window_summary

__all__ = [
    "BELOW_BEST",
    "COUNT_KEYS",
    "LATENCY_METRICS",
    "NAME_MAP",
    "PERCENTILES",
    "PercentileSLO",
    "SLO_NAMES",
    "THROUGHPUT_KEYS",
    "TURN_PERCENTILES",
    "below_best",
    "best_measurement",
    "cached_fraction",
    "cached_prompt_fraction",
    "ceiling_from",
    "completed",
    "compute_ceiling_tok_s",
    "conversation_summary",
    "distribution",
    "empirical_cdf",
    "energy_metrics",
    "flat_metrics",
    "in_flight",
    "integrate_power_j",
    "is_completed",
    "latency_values",
    "mean_present",
    "meets_slos",
    "output_length_counts",
    "pareto_front",
    "parse_percentile_slos",
    "parse_slos",
    "per_request_limits_ms",
    "per_user_tok_s",
    "phase_of",
    "ratios_to_first",
    "reasoning_summary",
    "request_counts",
    "request_latencies",
    "run_duration_s",
    "server_prefix_cache_hit_rate",
    "slo_estimate",
    "spec_decode_acceptance",
    "spread_fraction",
    "stage_of",
    "summarize",
    "summarize_windows",
    "time_to_first_answer_s",
    "ttft_by_turn",
    "window_summary",
]
