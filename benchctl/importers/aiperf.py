"""aiperf 0.13 `profile_export.jsonl` (one record per request, `--export-level records`, the default), with the
`profile_export_aiperf.json` summary aiperf writes beside it (version, command line, its own figures).

A record: `metadata` with wall-clock ns (`credit_issued_ns`: the rate limiter released it; `request_start_ns`: sent;
`request_end_ns`), `benchmark_phase` (warmup | profiling), `was_cancelled`; `metrics` as {"value", "unit"}:
`time_to_first_token` (ms), `inter_chunk_latency` (ms, one per gap between content chunks), `request_latency` (ms,
to the last content chunk), `output_sequence_length` and `input_sequence_length` (tokens: aiperf's tokenizer, or
usage with --use-server-token-count); `error` for a failure. aiperf's definitions (aiperf/metrics/types): "inter
token latency" = (request_latency - TTFT) / (OSL - 1), benchctl's TPOT; "inter chunk latency" is benchctl's ITL;
benchmark duration = last response - first request; percentiles interpolate linearly, std over the population.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchctl.importers.common import Figure, Imported, ImportFormatError, file_source, percentile_keys, stat_figures

TOOL = "aiperf"
NAME = "aiperf"
RECORDS_FILE = "profile_export.jsonl"
SUMMARY_FILE = "profile_export_aiperf.json"
SUMMARY_SCHEMAS = ("1.",)  # profile_export_aiperf.json schema_version prefixes this reader knows (aiperf 0.13: 1.4)
_UNITS = {
    "time_to_first_token": "ms",
    "request_latency": "ms",
    "inter_chunk_latency": "ms",
    "output_sequence_length": "tokens",
    "input_sequence_length": "tokens",
}
_STATS = {"avg": "mean", "std": "std", "min": "min", "max": "max"}

WHY_DURATION = (
    "aiperf's duration runs from the first request sent to the last response (wall clock); benchctl's "
    "from the first arrival (credit issued) to the last token"
)
WHY_RATE = f"a count over the duration: {WHY_DURATION}"


def records_path(folder: Path) -> Path | None:
    found = folder / RECORDS_FILE
    return found if found.is_file() else None


def looks_like_record(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("metadata"), dict) and "request_start_ns" in row["metadata"]


def looks_like_file(path: Path) -> bool:
    """A JSON-lines file whose first line is an aiperf record."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        return looks_like_record(json.loads(first))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def looks_like_summary(data: Any) -> bool:
    return isinstance(data, dict) and "aiperf_version" in data


def detects(data: Any, first_row: Any) -> bool:
    """Its records (JSON lines), or its summary (read() then says where the records are)."""
    return looks_like_record(first_row) or looks_like_summary(data)


def folders(path: Path) -> bool:
    """aiperf's artifact folder (--output-artifact-dir) holds the records file."""
    return records_path(path) is not None


def read(path: Path, data: Any = None) -> list[Imported]:
    if path.is_dir():
        path = records_path(path) or path / RECORDS_FILE
    if not looks_like_file(path):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if looks_like_summary(data):
            raise ImportFormatError(
                f"{path}: aiperf's summary has no per-request data; import {RECORDS_FILE} from "
                f"the same folder (aiperf writes it at --export-level records, the default)"
            )
        raise ImportFormatError(f"{path}: not an aiperf {RECORDS_FILE} (no record with metadata.request_start_ns)")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ImportFormatError(f"{path}: line {n} is not JSON ({e.msg})") from None
    summary, summary_source = _summary(path)
    profiling = [r for r in rows if (r.get("metadata") or {}).get("benchmark_phase", "profiling") == "profiling"]
    if not profiling:
        raise ImportFormatError(f"{path}: no profiling-phase records (only warmup)")
    for r in profiling:
        _check_units(path, r)
    config = (summary or {}).get("input_config") or {}
    endpoint = config.get("endpoint") or {}
    datasets = config.get("datasets") or [{}]
    models = [m.get("name") for m in ((config.get("models") or {}).get("items") or [])]
    source = {
        **file_source(path, f"aiperf {RECORDS_FILE}"),
        "command": ((summary or {}).get("run_info") or {}).get("cli_command"),
        "summary_file": summary_source,
        "warmup_records_skipped": len(rows) - len(profiling),
        "settings": {"input_config": config},
        "tool_summary": {k: v for k, v in (summary or {}).items() if k not in ("input_config", "telemetry_data")},
    }
    notes = [] if summary else [f"no {SUMMARY_FILE} beside the records: aiperf's version and own figures unknown"]
    server_counts = bool(endpoint.get("use_server_token_count"))
    return [
        Imported(
            tool=TOOL,
            tool_version=(summary or {}).get("aiperf_version", "not recorded (no summary file)"),
            records=_records(profiling, server_counts),
            figures=_figures(summary or {}, per_chunk_usage=bool(endpoint.get("per_chunk_usage"))),
            source=source,
            reconstructed={
                "arrival_s": "metadata.credit_issued_ns (aiperf's rate limiter released the request), from the first",
                "start_s": "metadata.request_start_ns",
                "first_token_s": "start_s + metrics.time_to_first_token",
                "token_times_s": "first_token_s + running sum of metrics.inter_chunk_latency",
                "finish_s": "start_s + metrics.request_latency (the last content chunk)",
                "output_tokens": "metrics.output_sequence_length (aiperf's count: its tokenizer, or usage with "
                "--use-server-token-count)",
                "expected_output_tokens": "not recorded per request: set to the tokens produced",
            },
            workload={
                "dataset": f"aiperf {datasets[0].get('type') or 'dataset'}"
                + (f" {datasets[0]['name']}" if datasets[0].get("name") else ""),
                "seed": config.get("random_seed"),
                "schedule": _schedule(config),
            },
            model=models[0] if models else None,
            base_url=(endpoint.get("urls") or [None])[0],
            endpoint=endpoint.get("type"),
            notes=notes,
        )
    ]


def _summary(path: Path) -> tuple[dict | None, dict | None]:
    candidate = path.with_name(SUMMARY_FILE)
    if not candidate.is_file():
        return None, None
    try:
        summary = json.loads(candidate.read_text(encoding="utf-8"))
    except ValueError:
        raise ImportFormatError(f"{candidate}: not JSON") from None
    version = str(summary.get("schema_version", ""))
    if not version.startswith(SUMMARY_SCHEMAS):
        raise ImportFormatError(
            f"{candidate}: aiperf summary schema {version!r} (aiperf "
            f"{summary.get('aiperf_version', '?')}); benchctl reads schema 1.x (aiperf 0.13)"
        )
    return summary, file_source(candidate, f"aiperf {SUMMARY_FILE}")


def _check_units(path: Path, row: dict) -> None:
    for name, unit in _UNITS.items():
        metric = (row.get("metrics") or {}).get(name)
        if metric is not None and metric.get("unit") != unit:
            raise ImportFormatError(
                f"{path}: mismatched units: {name} in {metric.get('unit')!r}, benchctl reads "
                f"{unit!r} (the unit aiperf 0.13 writes)"
            )


def _value(row: dict, name: str) -> Any:
    return ((row.get("metrics") or {}).get(name) or {}).get("value")


def _records(rows: list[dict], server_counts: bool) -> list[dict]:
    def arrival_ns(r: dict) -> int:
        meta = r["metadata"]
        return meta.get("credit_issued_ns") or meta["request_start_ns"]

    t0 = min(arrival_ns(r) for r in rows)
    multi_turn = any((r["metadata"].get("turn_index") or 0) > 0 for r in rows)
    records = []
    for i, r in enumerate(rows):
        meta = r["metadata"]
        start = (meta["request_start_ns"] - t0) / 1e9
        ttft_ms, latency_ms = _value(r, "time_to_first_token"), _value(r, "request_latency")
        error = r.get("error")
        message = None
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("type") or "error")
        elif error is not None:
            message = str(error)
        if message is None and meta.get("was_cancelled"):
            message = "cancelled by aiperf"
        elif message is None and (ttft_ms is None or latency_ms is None):
            message = "no streamed content (aiperf recorded no time to first token)"
        out = int(_value(r, "output_sequence_length") or 0)
        record = {
            "request_id": meta.get("x_request_id") or f"aiperf-{i:05d}",
            "prompt_tokens": int(_value(r, "input_sequence_length") or 0),
            "expected_output_tokens": out,
            "output_tokens": out,
            "arrival_s": (arrival_ns(r) - t0) / 1e9,
            "start_s": start,
            "error": message,
            "output_tokens_source": "usage" if server_counts else "retokenized",
            "extra": {"usage_completion_tokens": _value(r, "usage_completion_tokens")},
        }
        if message is None:
            first = start + ttft_ms / 1000.0
            times = [first]
            for gap_ms in _value(r, "inter_chunk_latency") or []:
                times.append(times[-1] + gap_ms / 1000.0)
            record.update(first_token_s=first, finish_s=start + latency_ms / 1000.0, token_times_s=times)
        if multi_turn:
            record.update(conversation_id=meta.get("conversation_id"), turn=meta.get("turn_index"))
        records.append(record)
    return records


def _schedule(config: dict) -> dict:
    phases = [p for p in config.get("phases") or [] if p.get("name") == "profiling" or p.get("kind") == "profiling"]
    phase = phases[0] if phases else {}
    rate = phase.get("request_rate") or phase.get("rate")
    concurrency = phase.get("concurrency")
    pattern = phase.get("arrival_pattern") or phase.get("type")
    if rate:
        return {
            "kind": "poisson" if pattern in (None, "poisson") else str(pattern),
            "request_rate": float(rate),
            "burstiness": 1.0 if pattern in (None, "poisson") else None,
            "max_concurrency": concurrency,
        }
    return {"kind": "all-at-once", "request_rate": None, "burstiness": None, "max_concurrency": concurrency}


def _figures(summary: dict, per_chunk_usage: bool) -> list[Figure]:
    figures = []

    def scalar(ours: str, theirs: str, same: bool, why: str | None = None, key: str = "avg") -> None:
        value = (summary.get(theirs) or {}).get(key)
        if isinstance(value, int | float):
            figures.append(
                Figure(
                    ours,
                    f"{theirs}.{key}",
                    float(value),
                    same,
                    why or "same definition, same records: differs by float rounding only",
                )
            )

    scalar("completed", "request_count", True)
    if "completed_request_count" in summary and "request_count" in summary:  # aiperf: completed = success + error
        figures.append(
            Figure(
                "failed",
                "completed_request_count.avg - request_count.avg",
                float(summary["completed_request_count"]["avg"] - summary["request_count"]["avg"]),
                True,
            )
        )
    scalar("total_input_tokens", "input_sequence_length", True, key="sum")
    scalar("total_output_tokens", "output_sequence_length", True, key="sum")
    if "benchmark_duration" in summary:
        figures.append(
            Figure(
                "duration_s", "benchmark_duration.avg", float(summary["benchmark_duration"]["avg"]), False, WHY_DURATION
            )
        )
    for ours, theirs in (
        ("request_throughput", "request_throughput"),
        ("input_tok_s", "input_token_throughput"),
        ("output_tok_s", "output_token_throughput"),
        ("total_tok_s", "total_token_throughput"),
    ):
        scalar(ours, theirs, False, WHY_RATE)
    tpot_same = not per_chunk_usage
    tpot_why = (
        'same definition under aiperf\'s name "inter token latency", same records: rounding only'
        if tpot_same
        else "with --per-chunk-usage aiperf divides by OSL minus the first chunk's tokens, benchctl by OSL - 1"
    )
    for ours, theirs, same, why in (
        ("ttft", "time_to_first_token", True, None),
        ("tpot", "inter_token_latency", tpot_same, tpot_why),
        (
            "itl",
            "inter_chunk_latency",
            True,
            'same definition under aiperf\'s name "inter chunk latency": every gap, '
            "pooled over requests; rounding only",
        ),
        ("e2el", "request_latency", True, None),
    ):
        stats = summary.get(theirs) or {}
        if stats.get("unit") not in (None, "ms"):
            raise ImportFormatError(
                f"aiperf summary: mismatched units: {theirs} in {stats.get('unit')!r}, benchctl reads 'ms'"
            )
        keys = {**{k: v for k, v in _STATS.items() if k in stats}, **percentile_keys(list(stats), r"p(\d+)")}
        figures += stat_figures(
            stats,
            ours,
            f"{theirs}.{{stat}}",
            1.0,
            same,
            why or "same definition, same records: differs by float rounding only",
            keys=keys,
        )
    return figures
