"""Our metric names and the names vLLM `bench serve`, guidellm and aiperf give the same quantities.

The table of docs/metrics.md, in code (a test keeps the two equal). Same name, different quantity: guidellm and aiperf
call our TPOT "inter-token latency"; guidellm's own "time per output token" includes the TTFT (our
latency_per_token_s); aiperf's "inter chunk latency" is our ITL.
"""

from __future__ import annotations


def _names(vllm: str | None, guidellm: str | None, aiperf: str | None) -> dict[str, str | None]:
    return {"vllm": vllm, "guidellm": guidellm, "aiperf": aiperf}


# Our name -> the name each anchor tool uses for the same quantity (None: that tool has no equivalent).
NAME_MAP: dict[str, dict[str, str | None]] = {
    "num_requests": _names(None, "request_totals.total", None),
    "completed": _names("completed", "request_totals.successful", "request_count"),
    "failed": _names("failed", "request_totals.errored", "error_request_count"),
    "output_tokens_short": _names(None, None, None),
    "output_tokens_over": _names(None, None, None),
    "duration_s": _names("duration", None, "benchmark_duration"),
    "total_input_tokens": _names("total_input_tokens", None, "total_isl"),
    "total_output_tokens": _names("total_output_tokens", None, "total_osl"),
    "request_throughput": _names("request_throughput", "requests_per_second", "request_throughput"),
    "input_tok_s": _names("total_input_tokens / duration", "prompt_tokens_per_second", None),
    "output_tok_s": _names("output_throughput", "output_tokens_per_second", "output_token_throughput"),
    "total_tok_s": _names("total_token_throughput", "tokens_per_second", "total_token_throughput"),
    "ttft_s": _names("ttft_ms", "time_to_first_token_ms", "time_to_first_token"),
    "tpot_s": _names("tpot_ms", "inter_token_latency_ms", "inter_token_latency"),
    "itl_s": _names("itl_ms", None, "inter_chunk_latency"),
    "e2el_s": _names("e2el_ms", "request_latency", "request_latency"),
    "latency_per_token_s": _names(None, "time_per_output_token_ms", None),
    "queue_s": _names(None, None, None),
    "goodput_req_s": _names("request_goodput", None, "goodput"),
}
