"""Our metric names and the names vLLM `bench serve`, guidellm and aiperf give the same quantities."""

from __future__ import annotations

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
