"""vLLM `bench serve --save-result --save-detailed` JSON (vllm/benchmarks/serve.py, vLLM 0.32).

Per request (lists aligned by request index): `start_times` (time.perf_counter at send, seconds), `queue_times`
(waiting for a --max-concurrency slot before that), `ttfts` (s), `itls` (s, every gap between chunks after the
first), `latencies` (s, send -> last chunk with choices), `input_lens`, `output_lens` (usage.completion_tokens, or
the text re-tokenized; 0 for a failure), `errors` ("" for a success). Without --save-detailed the lists other than
latencies and queue_times are dropped. `--append-result` writes one JSON object per line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchctl.importers.common import Figure, Imported, ImportFormatError, file_source, percentile_keys, stat_figures

TOOL = "vllm"
NAME = "vllm bench serve"
_DETAILED = ("start_times", "ttfts", "itls", "input_lens", "output_lens", "errors")
_SUMMARY = ("duration", "completed", "request_throughput")

WHY_DURATION = (
    "vLLM's duration runs from its benchmark start to when the last response has closed (the gather of "
    "all requests); benchctl's from the first arrival to the last token"
)
WHY_RATE = f"a count over the duration: {WHY_DURATION}"


def looks_like(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and "date" in data
        and ("endpoint_type" in data or "backend" in data)
        and any(k in data for k in _SUMMARY)
    )


def detects(data: Any, first_row: Any) -> bool:
    """One result object, or JSON lines of them (--append-result)."""
    return looks_like(data) or looks_like(first_row)


def load(path: Path) -> list[dict]:
    """The file's result objects: one JSON document, or one per line (--append-result)."""
    text = path.read_text(encoding="utf-8")
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ImportFormatError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None


def read(path: Path, data: Any = None) -> list[Imported]:
    """`data`: the file already parsed as one JSON document (by detection), else it is read here."""
    return parse(path, [data] if data is not None else load(path))


def parse(path: Path, results: list[dict]) -> list[Imported]:
    source = file_source(path, "vllm bench serve --save-result JSON")
    return [_one(path, result, source, index) for index, result in enumerate(results)]


def _one(path: Path, data: dict, source: dict, index: int) -> Imported:
    if not looks_like(data):
        raise ImportFormatError(
            f"{path}: result {index} is not a vLLM `bench serve` result (no date/backend/duration keys)"
        )
    missing = [k for k in _DETAILED if k not in data]
    if missing:
        raise ImportFormatError(
            f"{path}: no per-request data ({', '.join(missing)} missing): rerun `vllm bench serve` with --save-detailed"
        )
    n = len(data["start_times"])
    lengths = {k: len(data[k]) for k in (*_DETAILED, "latencies") if data.get(k) is not None}
    if set(lengths.values()) != {n}:
        raise ImportFormatError(f"{path}: per-request lists of different lengths {lengths}")
    _check_units(path, data)
    records = _records(data)
    return Imported(
        tool=TOOL,
        tool_version="not recorded in the file (vLLM's bench writes no version)",
        records=records,
        figures=_figures(data),
        source={
            **source,
            "result_index": index,
            "command": None,
            "settings": {
                k: data.get(k)
                for k in (
                    "date",
                    "backend",
                    "label",
                    "model_id",
                    "tokenizer_id",
                    "num_prompts",
                    "request_rate",
                    "burstiness",
                    "max_concurrency",
                    "ramp_up_strategy",
                )
            },
            "tool_summary": {k: v for k, v in data.items() if not isinstance(v, list)},
        },
        reconstructed={
            "arrival_s": "start_times - queue_times (when the request was due, before any concurrency slot)",
            "start_s": "start_times (the send), relative to the first arrival",
            "first_token_s": "start_s + ttfts",
            "token_times_s": "first_token_s + running sum of itls",
            "finish_s": "start_s + latencies (the last chunk with choices)",
            "expected_output_tokens": "not recorded by vLLM: set to the tokens produced",
            "output_tokens_source": "usage: vLLM takes usage.completion_tokens and re-tokenizes only without it",
        },
        workload={
            "dataset": "vllm bench (dataset not recorded in the file)",
            "seed": None,
            "schedule": _schedule(data),
        },
        model=data.get("model_id"),
        label=data.get("label"),
    )


def _check_units(path: Path, data: dict) -> None:
    """ttfts, itls and latencies are seconds and the *_ms summary milliseconds; a file converted by hand (or by
    another tool) that mixes them is refused rather than imported 1000x off."""
    ok = [i for i, e in enumerate(data["errors"]) if not e and data["output_lens"][i]]
    ttfts = [data["ttfts"][i] for i in ok]
    if ttfts and isinstance(data.get("mean_ttft_ms"), int | float) and data["mean_ttft_ms"] > 0:
        ratio = data["mean_ttft_ms"] / (sum(ttfts) / len(ttfts))
        if not 300.0 < ratio < 3000.0:  # a factor of 1000 off, not a summary that rounds differently
            raise ImportFormatError(
                f"{path}: mismatched units: mean_ttft_ms is {ratio:.4g}x the mean of ttfts "
                f"(expected 1000x: ttfts in seconds, the summary in milliseconds)"
            )
    latencies = data.get("latencies")
    for i in ok:
        if latencies is not None and data["ttfts"][i] > latencies[i] + 1e-9:
            raise ImportFormatError(
                f"{path}: mismatched units: request {i}'s ttft ({data['ttfts'][i]}) exceeds its "
                f"latency ({latencies[i]})"
            )


def _records(data: dict) -> list[dict]:
    starts, queues = data["start_times"], data.get("queue_times") or [0.0] * len(data["start_times"])
    latencies = data.get("latencies")
    arrivals = [s - (q or 0.0) for s, q in zip(starts, queues)]
    t0 = min(arrivals, default=0.0)
    records = []
    for i, (start_abs, arrival_abs) in enumerate(zip(starts, arrivals)):
        error = data["errors"][i] or None
        out = int(data["output_lens"][i] or 0)
        if error is None and out == 0:  # vLLM's failure without a reason (a non-200 with an empty reason phrase)
            error = "failed (vLLM recorded no output and no error text)"
        start = start_abs - t0
        record = {
            "request_id": f"vllm-{i:05d}",
            "prompt_tokens": int(data["input_lens"][i] or 0),
            "expected_output_tokens": out,
            "output_tokens": out,
            "arrival_s": arrival_abs - t0,
            "start_s": start,
            "error": error,
            "output_tokens_source": "usage",
        }
        if error is None:
            first = start + data["ttfts"][i]
            times = [first]
            for gap in data["itls"][i]:
                times.append(times[-1] + gap)
            finish = start + latencies[i] if latencies is not None else times[-1]
            record.update(first_token_s=first, finish_s=finish, token_times_s=times)
            if out != len(times):  # chunks carried several tokens, or vLLM re-tokenized: per-chunk counts unknown
                record["extra"] = {"chunks": len(times)}
        records.append(record)
    return records


def _schedule(data: dict) -> dict:
    rate = data.get("request_rate")
    rate = None if rate in (None, "inf") or (isinstance(rate, float) and math.isinf(rate)) else float(rate)
    burstiness = data.get("burstiness")
    kind = "all-at-once" if rate is None else ("poisson" if burstiness in (None, 1.0) else "gamma")
    return {
        "kind": kind,
        "request_rate": rate,
        "burstiness": burstiness if rate is not None else None,
        "max_concurrency": data.get("max_concurrency"),
    }


def _figures(data: dict) -> list[Figure]:
    figures = [
        Figure(k, k, float(data[k]), True)
        for k in ("completed", "failed", "total_input_tokens", "total_output_tokens")
        if data.get(k) is not None
    ]
    if data.get("duration") is not None:
        figures.append(Figure("duration_s", "duration", float(data["duration"]), False, WHY_DURATION))
    for ours, theirs in (
        ("request_throughput", "request_throughput"),
        ("output_tok_s", "output_throughput"),
        ("total_tok_s", "total_token_throughput"),
    ):
        if data.get(theirs) is not None:
            figures.append(Figure(ours, theirs, float(data[theirs]), False, WHY_RATE))
    for metric in ("ttft", "tpot", "itl", "e2el"):
        names = [k.removesuffix(f"_{metric}_ms") for k in data if k.endswith(f"_{metric}_ms")]
        keys = {k: k for k in ("mean", "median", "std") if k in names}
        keys.update(percentile_keys(names, r"p(\d+(?:\.\d+)?)"))
        stats = {k: data[f"{k}_{metric}_ms"] for k in keys}
        figures += stat_figures(stats, metric, "{stat}_" + metric + "_ms", 1.0, True, keys=keys)
    return figures
