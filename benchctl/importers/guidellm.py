"""guidellm 0.8 benchmarks JSON (`--output kind=json`, report schema `metadata.version` 2).

Per benchmark, `requests.{successful,errored,incomplete}` hold one record per request with `info.timings` in
epoch seconds: `targeted_start` (when the profile wanted it sent), `request_start` (sent), `first_token_iteration`,
`last_token_iteration` (first and last streamed token; the times between are not kept), `request_end` (response
closed); token counts from usage (`output_tokens`, `prompt_tokens`). guidellm's own definitions
(guidellm/schemas/base/request_stats.py): TTFT = first_token - request_start; "ITL" = (last_token - first_token) /
(output_tokens - 1), benchctl's TPOT; "TPOT" = (last_token - request_start) / output_tokens, TTFT included;
request latency = request_end - request_start. Percentiles pick a sample (inverse CDF), no interpolation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchctl.importers.common import Figure, Imported, ImportFormatError, file_source, stat_figures

TOOL = "guidellm"
NAME = "guidellm"
SCHEMA_VERSION = 2

WHY_PERCENTILE = (
    "guidellm's percentiles (and median) pick a sample at the inverse CDF; benchctl interpolates "
    "linearly between samples (numpy's default, as vLLM)"
)
WHY_E2EL = (
    "guidellm's request latency ends when the response has closed (request_end); benchctl's E2EL ends at the last token"
)
WHY_WINDOW = (
    "guidellm's rates are time-weighted means over its window (first request start to last request "
    "end); benchctl counts over first arrival to last token"
)


def looks_like(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("benchmarks"), list)
        and (
            "guidellm_version" in (data.get("metadata") or {})
            or any(isinstance(b, dict) and b.get("type_") == "generative_benchmark" for b in data["benchmarks"])
        )
    )


def detects(data: Any, first_row: Any) -> bool:
    return looks_like(data)


def read(path: Path, data: Any = None) -> list[Imported]:
    if data is None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ImportFormatError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not looks_like(data):
        raise ImportFormatError(f"{path}: not a guidellm benchmarks report (no benchmarks list)")
    meta = data.get("metadata") or {}
    if meta.get("version") != SCHEMA_VERSION:
        raise ImportFormatError(
            f"{path}: guidellm report schema version {meta.get('version')!r} (guidellm "
            f"{meta.get('guidellm_version', 'before 0.8')}); benchctl reads version "
            f"{SCHEMA_VERSION} (guidellm 0.8)"
        )
    source = file_source(path, "guidellm benchmarks JSON")
    benchmarks = [b for b in data["benchmarks"] if b.get("type_") == "generative_benchmark"]
    if not benchmarks:
        raise ImportFormatError(f"{path}: the report holds no generative benchmark")
    return [_one(path, data, b, i, source) for i, b in enumerate(benchmarks)]


def _one(path: Path, data: dict, bench: dict, index: int, source: dict) -> Imported:
    groups = bench.get("requests") or {}
    totals = (bench.get("metrics") or {}).get("request_totals") or {}
    kept = {k: len(groups.get(k) or []) for k in ("successful", "errored", "incomplete")}
    if totals and sum(kept.values()) < sum(int(totals.get(k) or 0) for k in kept):
        raise ImportFormatError(
            f"{path}: benchmark {index} keeps {sum(kept.values())} of "
            f"{sum(int(totals.get(k) or 0) for k in kept)} requests: rerun guidellm without "
            f"--metrics sample_size (its default None keeps every request)"
        )
    if not sum(kept.values()):
        raise ImportFormatError(f"{path}: benchmark {index} has no per-request data (requests lists empty)")
    rows = [(k, r) for k in ("successful", "errored", "incomplete") for r in groups.get(k) or []]
    bad_targets = sum(1 for _, r in rows if not _plausible_target((r.get("info") or {}).get("timings") or {}))
    _check_units(path, [r for k, r in rows if k == "successful"])
    cfg = bench.get("config") or {}
    backend = cfg.get("backend") or {}
    strategy = cfg.get("strategy") or {}
    spec = ((data.get("config") or {}).get("spec")) or {}
    return Imported(
        tool=TOOL,
        tool_version=(data.get("metadata") or {}).get("guidellm_version", "?"),
        records=_records(rows),
        figures=_figures(bench),
        source={
            **source,
            "benchmark_index": index,
            "command": None,
            "settings": {"scenario": spec, "strategy": strategy, "benchmark_id": cfg.get("id_")},
            "tool_summary": {
                "metrics": bench.get("metrics"),
                "duration": bench.get("duration"),
                "start_time": bench.get("start_time"),
                "end_time": bench.get("end_time"),
            },
        },
        reconstructed={
            "arrival_s": "info.timings.targeted_start (the profile's schedule), relative to the first arrival",
            "start_s": "info.timings.request_start",
            "first_token_s": "info.timings.first_token_iteration",
            "finish_s": "info.timings.last_token_iteration (the last token; request_end is kept in extra)",
            "token_times_s": "not available: guidellm keeps only the first and last token times, so no ITL",
            "expected_output_tokens": "max_tokens of the request body",
        },
        workload={
            "dataset": _dataset(spec),
            "seed": ((spec.get("seed") or {}).get("value")),
            "schedule": _schedule(strategy),
        },
        model=backend.get("model"),
        base_url=backend.get("target"),
        endpoint=backend.get("request_format"),
        notes=[
            f"{bad_targets} of {len(rows)} requests have no usable targeted_start (not an epoch time before the "
            f"send): their arrival is their send time"
        ]
        if bad_targets
        else [],
    )


def _check_units(path: Path, successful: list[dict]) -> None:
    """TTFT in ms must be 1000x the timings' seconds; anything else is a converted or foreign file."""
    for r in successful[:50]:
        t = (r.get("info") or {}).get("timings") or {}
        ttft_ms = r.get("time_to_first_token_ms")
        if ttft_ms is None or t.get("first_token_iteration") is None or t.get("request_start") is None:
            continue
        from_timings_s = t["first_token_iteration"] - t["request_start"]
        if abs(ttft_ms - 1000.0 * from_timings_s) > max(1e-3, 1e-3 * abs(ttft_ms)):
            raise ImportFormatError(
                f"{path}: mismatched units: time_to_first_token_ms {ttft_ms} is not 1000x "
                f"first_token_iteration - request_start ({from_timings_s} s)"
            )


def _max_tokens(request: dict) -> int | None:
    try:
        body = json.loads(request.get("request_args") or "{}").get("body") or {}
    except (ValueError, AttributeError):
        return None
    value = body.get("max_tokens", body.get("max_completion_tokens"))
    return int(value) if isinstance(value, int | float) else None


def _records(rows: list[tuple[str, dict]]) -> list[dict]:
    def timings(r: dict) -> dict:
        return (r.get("info") or {}).get("timings") or {}

    def arrival(r: dict) -> float | None:
        t = timings(r)
        sent = t.get("request_start") or t.get("resolve_start")
        return t["targeted_start"] if _plausible_target(t) else sent

    t0 = min((a for _, r in rows if (a := arrival(r)) is not None), default=0.0)
    multi_turn = any(((r.get("info") or {}).get("turn_index") or 0) > 0 for _, r in rows)
    records = []
    for status, r in rows:
        t, info = timings(r), r.get("info") or {}
        start = t.get("request_start") or t.get("resolve_start")
        out = int(r.get("output_tokens") or 0)
        first, last = t.get("first_token_iteration"), t.get("last_token_iteration")
        error = None
        if status == "errored":
            error = str(info.get("error") or "errored (guidellm recorded no error text)")
        elif status == "incomplete":
            error = "incomplete: still running when guidellm's benchmark ended"
        elif last is None:
            last = t.get("request_end")
        expected = _max_tokens(r)
        record = {
            "request_id": str(r.get("request_id") or info.get("request_id")),
            "prompt_tokens": int(r.get("prompt_tokens") or 0),
            "expected_output_tokens": expected if expected is not None else out,
            "output_tokens": out,
            "arrival_s": (arrival(r) or t0) - t0,
            "start_s": start - t0 if start is not None else None,
            "first_token_s": first - t0 if first is not None else None,
            "finish_s": last - t0 if last is not None and error is None else None,
            "error": error,
            "output_tokens_source": "usage",
            "extra": {
                "request_end_s": t["request_end"] - t0 if t.get("request_end") else None,
                "guidellm_status": status,
            },
        }
        if multi_turn:
            record.update(conversation_id=info.get("conversation_id"), turn=info.get("turn_index"))
        records.append(record)
    return records


def _plausible_target(t: dict) -> bool:
    """guidellm's targeted_start is an epoch time at most a little after the send; on a CPU too busy for its workers
    it has been seen as a small relative number, sometimes negative (its own warning then reports a dispatch delay
    of ~1.8e9 s). Such a target is not an arrival: the send time stands in for it."""
    target, sent = t.get("targeted_start"), t.get("request_start") or t.get("resolve_start")
    return target is not None and sent is not None and -1.0 < sent - target < 3600.0


def _dataset(spec: dict) -> str:
    data = spec.get("data") or []
    if not data:
        return "guidellm (dataset not recorded)"
    first = data[0]
    bits = [f"{k}={first[k]}" for k in ("prompt_tokens", "output_tokens") if first.get(k) is not None]
    return (
        f"guidellm {first.get('kind')}"
        + (f" ({', '.join(bits)})" if bits else "")
        + (f" {first['source']}" if first.get("source") else "")
    )


def _schedule(strategy: dict) -> dict:
    kind = strategy.get("type_")
    rate = strategy.get("rate")
    if kind == "concurrent":
        return {
            "kind": "all-at-once",
            "request_rate": None,
            "burstiness": None,
            "max_concurrency": strategy.get("streams"),
        }
    if kind == "synchronous":
        return {"kind": "all-at-once", "request_rate": None, "burstiness": None, "max_concurrency": 1}
    if kind in ("poisson", "constant", "async"):
        limit = strategy.get("max_concurrency")
        return {
            "kind": "poisson" if kind == "poisson" else "constant",
            "request_rate": rate,
            "burstiness": 1.0 if kind == "poisson" else None,
            "max_concurrency": limit if limit != 10240 else None,
        }
    return {"kind": kind, "request_rate": rate, "burstiness": None, "max_concurrency": strategy.get("max_concurrency")}


def _figures(bench: dict) -> list[Figure]:
    m = bench.get("metrics") or {}
    totals = m.get("request_totals") or {}
    figures = []
    if "successful" in totals:
        figures.append(Figure("completed", "metrics.request_totals.successful", float(totals["successful"]), True))
        failed = float(totals.get("errored") or 0) + float(totals.get("incomplete") or 0)
        figures.append(
            Figure(
                "failed",
                "metrics.request_totals.errored + incomplete",
                failed,
                True,
                "benchctl counts every request that did not complete as failed",
            )
        )
    for ours, theirs in (("total_input_tokens", "prompt_token_count"), ("total_output_tokens", "output_token_count")):
        value = ((m.get(theirs) or {}).get("successful") or {}).get("total_sum")
        if value is not None:
            figures.append(Figure(ours, f"metrics.{theirs}.successful.total_sum", float(value), True))
    if bench.get("duration") is not None:
        figures.append(
            Figure(
                "duration_s",
                "duration",
                float(bench["duration"]),
                False,
                "guidellm's duration runs from the first request start to the last request end; "
                "benchctl's from the first arrival to the last token",
            )
        )
    for ours, theirs in (
        ("request_throughput", "requests_per_second"),
        ("input_tok_s", "prompt_tokens_per_second"),
        ("output_tok_s", "output_tokens_per_second"),
        ("total_tok_s", "tokens_per_second"),
    ):
        value = ((m.get(theirs) or {}).get("successful") or {}).get("mean")
        if value is not None:
            figures.append(Figure(ours, f"metrics.{theirs}.successful.mean", float(value), False, WHY_WINDOW))
    for ours, theirs, scale, why in (
        ("ttft", "time_to_first_token_ms", 1.0, None),
        ("tpot", "inter_token_latency_ms", 1.0, None),
        ("latency_per_token", "time_per_output_token_ms", 1.0, None),
        ("e2el", "request_latency", 1000.0, WHY_E2EL),
    ):
        stats = (m.get(theirs) or {}).get("successful") or {}
        if not stats.get("count"):
            continue
        name = f"metrics.{theirs}.successful.{{stat}}"
        same_stats = {"mean": "mean", "std_dev": "std", "min": "min", "max": "max"}
        figures += stat_figures(stats, ours, name, scale, why is None, why or _why(ours), keys=same_stats)
        figures += stat_figures(stats, ours, name, scale, False, why or WHY_PERCENTILE, keys={"median": "median"})
        pct = {f"p{p:02d}" if p < 10 else f"p{p}": f"p{p}" for p in (50, 90, 95, 99)}
        figures += stat_figures(
            stats.get("percentiles") or {},
            ours,
            f"metrics.{theirs}.successful.percentiles.{{stat}}",
            scale,
            False,
            why or WHY_PERCENTILE,
            keys=pct,
        )
    return figures


def _why(metric: str) -> str:
    return {
        "tpot": 'same definition under guidellm\'s name "inter token latency", same records: rounding only',
        "latency_per_token": "guidellm's \"time per output token\" includes the TTFT: benchctl's latency per "
        "token (E2EL / output tokens), same records: rounding only",
    }.get(metric, "same definition, same records: differs by float rounding only")
