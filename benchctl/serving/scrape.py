"""Server-side metrics: scrape a Prometheus `/metrics` endpoint about once a second during a serving run.

Runs as its own process (`python -m benchctl.serving.scrape URL OUT --t0 T`), so fetching and parsing a large
exposition never stalls the load client's event loop (a stall would shift its timestamps). Each sample is one
line of server_metrics.jsonl: {"t_s": seconds since the run's t0 (time.monotonic, shared across processes on
Linux), "metrics": {"name{labels}": value}}, keeping only the series in KEEP (KV-cache use, running and
waiting requests, preemptions, token counters) so the file stays small.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

# vLLM's names (gpu_cache_usage_perc before v1, kv_cache_usage_perc after), the reference server's, llama.cpp's,
# SGLang's, lmdeploy's and TGI's (running / waiting requests, KV use, prefix-cache hits, preemptions, tokens).
KEEP = re.compile(
    r"^(vllm:(gpu_cache_usage_perc|kv_cache_usage_perc|cpu_cache_usage_perc|num_requests_running"
    r"|num_requests_waiting|num_requests_swapped|num_preemptions(_total)?|prompt_tokens_total"
    r"|generation_tokens_total|request_success_total|prefix_cache_(queries|hits)(_total)?"
    r"|spec_decode_num_(drafts|draft_tokens|accepted_tokens)(_total)?)"
    r"|sglang:(num_running_reqs|num_queue_reqs|token_usage|num_used_tokens|cache_hit_rate"
    r"|num_retracted_reqs|gen_throughput)"
    r"|lmdeploy:(num_requests_running|num_requests_waiting|gpu_cache_usage_perc|prompt_tokens_total"
    r"|generation_tokens_total)"
    r"|tgi_(batch_current_size|queue_size|batch_current_max_tokens|request_success)"
    r"|reference_engine:\w+|llamacpp:\w+)$"
)
API_KEY_ENV = "BENCHCTL_SCRAPE_API_KEY"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_exposition(text: str, keep: re.Pattern = KEEP) -> dict[str, float]:
    """Prometheus text format -> {"name{labels}": value} for the kept series (comments and timestamps dropped)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m or not keep.match(m.group(1)):
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        found[m.group(1) + (m.group(2) or "")] = value
    return found


def summarize_series(path: Path) -> dict:
    """Per series: samples, max and last value; what run.json keeps beside the client's numbers."""
    series: dict[str, dict] = {}
    count = 0
    if not path.exists():
        return {"samples": 0, "series": {}}
    for line in path.read_text().splitlines():
        try:
            sample = json.loads(line)
        except ValueError:
            continue
        count += 1
        for name, value in sample.get("metrics", {}).items():
            s = series.setdefault(name, {"first": value, "max": value, "last": value})
            s["max"] = max(s["max"], value)
            s["last"] = value
    return {"samples": count, "series": series}


# (hits, queries) counters of servers that count prefix-cache lookups in prompt tokens
PREFIX_CACHE_COUNTERS = (
    ("vllm:prefix_cache_hits", "vllm:prefix_cache_queries"),
    ("reference_engine:prefix_cache_hits", "reference_engine:prefix_cache_queries"),
)


def counter_growth(series: dict, name: str) -> float | None:
    """A counter's growth over the run, from the first sample to the last, summed over label sets (None: absent)."""
    found = [
        s["last"] - s.get("first", 0.0) for key, s in series.items() if key.split("{")[0] in (name, name + "_total")
    ]
    return sum(found) if found else None


# (drafts, draft tokens, accepted tokens) counters of servers with speculative decoding
SPEC_DECODE_COUNTERS = (
    ("vllm:spec_decode_num_drafts", "vllm:spec_decode_num_draft_tokens", "vllm:spec_decode_num_accepted_tokens"),
    (
        "reference_engine:spec_decode_num_drafts",
        "reference_engine:spec_decode_num_draft_tokens",
        "reference_engine:spec_decode_num_accepted_tokens",
    ),
)


def server_spec_decode(series: dict) -> dict | None:
    """benchctl.metrics.spec_decode_acceptance over the run, from the growth of the server's counters; None when it
    counts no draft tokens."""
    from benchctl.metrics import spec_decode_acceptance  # imported here: not needed by the scraping process

    for names in SPEC_DECODE_COUNTERS:
        found = spec_decode_acceptance(*(counter_growth(series, n) for n in names))
        if found is not None:
            return {"source": names[1], **found}
    return None


def prefix_cache_hit_rate(series: dict) -> dict | None:
    """benchctl.metrics.server_prefix_cache_hit_rate over the run, from the growth of the server's counters (first
    sample to last, summed over label sets); None when the server counts neither hits nor queries."""
    from benchctl.metrics import server_prefix_cache_hit_rate  # imported here: not needed by the scraping process

    for hits_name, queries_name in PREFIX_CACHE_COUNTERS:
        found = server_prefix_cache_hit_rate(counter_growth(series, hits_name), counter_growth(series, queries_name))
        if found is not None:
            return {"source": queries_name, **found}
    return None


def scrape_loop(url: str, out: Path, t0: float, interval_s: float = 1.0, headers: dict | None = None) -> None:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    request = urllib.request.Request(url, headers=headers or {})
    next_t = time.monotonic()
    with open(out, "a", encoding="utf-8") as f:
        while not stopping:
            t = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=max(interval_s, 1.0)) as resp:
                    metrics = parse_exposition(resp.read().decode("utf-8", errors="replace"))
                sample = {"t_s": round(t - t0, 6), "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)}}
            except (urllib.error.URLError, OSError, ValueError) as e:
                sample = {"t_s": round(t - t0, 6), "error": f"{type(e).__name__}: {e}"}
            f.write(json.dumps(sample, separators=(",", ":")) + "\n")
            f.flush()
            next_t += interval_s
            while not stopping and time.monotonic() < next_t:
                time.sleep(min(0.05, max(next_t - time.monotonic(), 0)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="scrape Prometheus metrics into a JSONL file")
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--t0", type=float, required=True, help="run start, time.monotonic()")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    api_key = os.environ.get(API_KEY_ENV)  # not on the command line, where `ps` would show it
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    scrape_loop(args.url, args.out, args.t0, args.interval, headers)


if __name__ == "__main__":
    main()
