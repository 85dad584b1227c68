"""Timestamped traces replayed as they were recorded: `--dataset trace:PATH` (docs/load-shapes.md, "Traces").

Three formats, told apart by the file and the options:
- Mooncake JSONL (`timestamp` ms, `input_length`, `output_length`, `hash_ids`: one id per 512-token block of the
  prompt, equal ids = the same block, so shared ids are a shared prefix);
- BurstGPT CSV (`Timestamp` s, `Model`, `Request tokens`, `Response tokens`; `--trace-model` keeps one model);
- any JSONL whose column names `--trace-columns timestamp=T,input=I,output=O[,hash_ids=H][,unit=ms|s]` gives.

A request's arrival is its timestamp less the first one in the window, divided by `--trace-speed`. Its prompt is
random real-vocabulary tokens (as the random dataset draws them): the tokens of hash block `h` are drawn from a
generator seeded with (seed, h), so every request naming `h` gets exactly those tokens there, and a prompt without
hash ids (or past its last id) draws from (seed, its row), unlike any other.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchctl.workload.base import RequestSpec, WorkloadError
from benchctl.workload.tokenizer import Tokenizer

TRACE_PREFIX = "trace:"
BLOCK_TOKENS = 512  # Mooncake's hash block: one id per 512 prompt tokens
FORMATS = ("mooncake", "burstgpt", "generic")
MOONCAKE_COLUMNS = {
    "timestamp": "timestamp",
    "input": "input_length",
    "output": "output_length",
    "hash_ids": "hash_ids",
    "unit": "ms",
}
BURSTGPT_COLUMNS = {"timestamp": "Timestamp", "input": "Request tokens", "output": "Response tokens", "model": "Model"}
_COLUMN_KEYS = ("timestamp", "input", "output", "hash_ids", "unit", "block")
_UNITS = {"ms": 1e-3, "s": 1.0}


@dataclass(slots=True)
class TraceRow:
    row: int  # 0-based index among the file's data rows (seeds the prompt's unshared tokens)
    t_s: float  # the recorded timestamp, in seconds
    input_len: int
    output_len: int
    hash_ids: list[int] | None = None


@dataclass(slots=True)
class TraceOptions:
    speed: float = 1.0
    window: str | None = None  # "START:END" seconds after the trace's first timestamp; either side may be empty
    model: str | None = None  # BurstGPT: keep the rows of this `Model`
    columns: str | None = None  # generic JSONL: timestamp=...,input=...,output=...[,hash_ids=...][,unit=ms|s]


def is_trace(dataset: str) -> bool:
    return dataset.startswith(TRACE_PREFIX)


def parse_columns(text: str) -> dict[str, str]:
    """`timestamp=t_ms,input=in,output=out[,hash_ids=h][,unit=ms|s][,block=512]` -> a column map."""
    columns: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in _COLUMN_KEYS or not value:
            raise WorkloadError(
                f"--trace-columns expects KEY=NAME pairs with KEY one of {', '.join(_COLUMN_KEYS)}, "
                f"got {item.strip()!r}"
            )
        columns[key] = value
    missing = [k for k in ("timestamp", "input", "output") if k not in columns]
    if missing:
        raise WorkloadError(f"--trace-columns must name the {', '.join(missing)} column(s), got {text!r}")
    if columns.setdefault("unit", "ms") not in _UNITS:
        raise WorkloadError(f"--trace-columns unit must be ms or s, got {columns['unit']!r}")
    block = columns.setdefault("block", str(BLOCK_TOKENS))
    if not block.isdigit() or int(block) < 1:
        raise WorkloadError(f"--trace-columns block must be a positive number of tokens, got {block!r}")
    return columns


def parse_window(text: str | None) -> tuple[float, float]:
    """`START:END` (seconds, either may be empty) -> (start, end) with 0 <= start < end <= inf."""
    if text is None:
        return 0.0, math.inf
    start, sep, end = text.partition(":")
    try:
        window = (float(start) if start.strip() else 0.0, float(end) if end.strip() else math.inf)
    except ValueError:
        window = (math.nan, math.nan)
    if not sep or not 0 <= window[0] < window[1]:  # NaN fails too
        raise WorkloadError(f"--trace-window expects START:END seconds with 0 <= START < END, got {text!r}")
    return window


def check_trace_options(options: TraceOptions, dataset: str) -> None:
    defaults = TraceOptions()
    if not is_trace(dataset):
        given = [
            f"--trace-{k}"
            for k in ("speed", "window", "model", "columns")
            if getattr(options, k) != getattr(defaults, k)
        ]
        if given:
            raise WorkloadError(f"{', '.join(given)} apply to --dataset trace:PATH, not {dataset!r}")
        return
    speed = options.speed
    if not isinstance(speed, int | float) or isinstance(speed, bool) or not 0 < speed < math.inf:
        raise WorkloadError(f"--trace-speed must be a finite number > 0, got {speed!r}")
    parse_window(options.window)
    if options.columns is not None:
        parse_columns(options.columns)
    if not dataset.removeprefix(TRACE_PREFIX):
        raise WorkloadError("--dataset trace:PATH needs the trace file's path after 'trace:'")


def trace_format(path: Path, options: TraceOptions) -> str:
    if options.columns is not None:
        return "generic"
    return "burstgpt" if path.suffix.lower() == ".csv" else "mooncake"


def read_trace(path: Path, options: TraceOptions) -> tuple[str, list[TraceRow], dict]:
    """(format, rows sorted by time, what was read): every row of the file, bad ones an error naming their line."""
    if not path.is_file():
        raise WorkloadError(f"trace file not found: {path}")
    fmt = trace_format(path, options)
    if fmt == "burstgpt":
        rows, skipped = _read_burstgpt(path, options.model)
        columns = dict(BURSTGPT_COLUMNS)
    else:
        columns = MOONCAKE_COLUMNS if fmt == "mooncake" else parse_columns(options.columns or "")
        if options.model is not None:
            raise WorkloadError("--trace-model filters BurstGPT's CSV by its Model column; this trace has none")
        rows, skipped = _read_jsonl(path, columns)
    if not rows:
        raise WorkloadError(
            f"{path}: no usable rows in the trace" + (f" for model {options.model!r}" if options.model else "")
        )
    in_order = all(a.t_s <= b.t_s for a, b in zip(rows, rows[1:]))
    rows.sort(key=lambda r: r.t_s)  # stable: rows recorded at the same time keep their order
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    source = {
        "path": str(path),
        "format": fmt,
        "size_bytes": path.stat().st_size,
        "sha256": digest,
        "columns": columns,
        "rows_in_file": len(rows) + sum(skipped.values()),
        "rows_skipped": skipped,
        "sorted_by_timestamp": in_order,
        "model": options.model,
    }
    return fmt, rows, source


def _read_jsonl(path: Path, columns: dict[str, str]) -> tuple[list[TraceRow], dict[str, int]]:
    scale = _UNITS[columns.get("unit", "ms")]
    rows: list[TraceRow] = []
    skipped = {"zero_length": 0}
    with path.open(encoding="utf-8", errors="strict") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path} line {line_no}"
            try:
                entry = json.loads(line)
            except ValueError as e:
                raise WorkloadError(f"{where}: not a JSON object ({e})") from None
            if not isinstance(entry, dict):
                raise WorkloadError(f"{where}: expected a JSON object, got {type(entry).__name__}")
            t = _number(entry, columns["timestamp"], where) * scale
            input_len, output_len = _count(entry, columns["input"], where), _count(entry, columns["output"], where)
            ids = entry.get(columns["hash_ids"]) if "hash_ids" in columns else None
            if ids is not None and not (isinstance(ids, list) and all(_is_int(i) and i >= 0 for i in ids)):
                raise WorkloadError(f"{where}: {columns['hash_ids']!r} must be a list of integers >= 0")
            if input_len == 0 or output_len == 0:
                skipped["zero_length"] += 1
                continue
            rows.append(TraceRow(len(rows) + sum(skipped.values()), t, input_len, output_len, ids or None))
    return rows, skipped


def _read_burstgpt(path: Path, model: str | None) -> tuple[list[TraceRow], dict[str, int]]:
    rows: list[TraceRow] = []
    skipped = {"zero_length": 0, "other_model": 0}
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        names = BURSTGPT_COLUMNS
        missing = [c for c in names.values() if c not in (reader.fieldnames or [])]
        if missing:
            raise WorkloadError(
                f"{path}: not a BurstGPT CSV (no column {', '.join(map(repr, missing))}; "
                f"for another layout give --trace-columns on a JSONL file)"
            )
        for i, entry in enumerate(reader):
            where = f"{path} line {reader.line_num}"
            if model is not None and entry[names["model"]] != model:
                skipped["other_model"] += 1
                continue
            t = _number(entry, names["timestamp"], where, text=True)
            input_len = _count(entry, names["input"], where, text=True)
            output_len = _count(entry, names["output"], where, text=True)
            if input_len == 0 or output_len == 0:  # BurstGPT logs failed requests with 0 response tokens
                skipped["zero_length"] += 1
                continue
            rows.append(TraceRow(i, t, input_len, output_len))
    return rows, skipped


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(entry: dict, key: str, where: str, text: bool = False) -> float:
    value = entry.get(key)
    if text and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise WorkloadError(f"{where}: {key!r} must be a finite number >= 0, got {value!r}")
    return float(value)


def _count(entry: dict, key: str, where: str, text: bool = False) -> int:
    value = entry.get(key)
    if text and isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WorkloadError(f"{where}: {key!r} must be an integer >= 0, got {value!r}")
    return value


def window_rows(rows: list[TraceRow], options: TraceOptions, limit: int | None) -> tuple[list[TraceRow], dict]:
    """The rows inside --trace-window (seconds after the trace's first timestamp), at most `limit` of them."""
    start, end = parse_window(options.window)
    first = rows[0].t_s
    chosen = [r for r in rows if start <= r.t_s - first < end]
    in_window = len(chosen)
    if limit is not None:
        chosen = chosen[:limit]
    if not chosen:
        span = rows[-1].t_s - first
        raise WorkloadError(f"--trace-window {options.window} holds no request: the trace spans {span:g} s")
    return chosen, {
        "window_s": [start, None if math.isinf(end) else end],
        "rows_in_window": in_window,
        "rows_used": len(chosen),
        "first_row": chosen[0].row,
        "speed": options.speed,
        "recorded_span_s": chosen[-1].t_s - chosen[0].t_s,
    }


class _Blocks:
    """Token ids and text of hash blocks, each drawn once per (seed, id) and reused by every request naming it."""

    def __init__(self, tokenizer: Tokenizer, seed: int, block_tokens: int):
        self.tokenizer, self.seed, self.block = tokenizer, seed, block_tokens
        # Real vocabulary only, as the random dataset: special tokens would change what engines do.
        self.allowed = np.array(sorted(set(range(tokenizer.vocab_size)) - tokenizer.special_ids))
        self._ids: dict[int, np.ndarray] = {}
        self._text: dict[tuple[int, int], str] = {}

    def shared(self, hash_id: int, n: int) -> tuple[list[int], str]:
        if hash_id not in self._ids:
            rng = np.random.default_rng([self.seed, 0, hash_id])
            self._ids[hash_id] = self.allowed[rng.integers(0, self.allowed.size, self.block)]
        if (hash_id, n) not in self._text:
            self._text[hash_id, n] = self.tokenizer.decode(self._ids[hash_id][:n].tolist())
        return self._ids[hash_id][:n].tolist(), self._text[hash_id, n]

    def unshared(self, row: int, n: int) -> tuple[list[int], str]:
        rng = np.random.default_rng([self.seed, 1, row])
        ids = self.allowed[rng.integers(0, self.allowed.size, n)].tolist()
        return ids, self.tokenizer.decode(ids)


def trace_requests(
    rows: list[TraceRow], tokenizer: Tokenizer, seed: int, speed: float, block_tokens: int = BLOCK_TOKENS
) -> tuple[list[RequestSpec], dict]:
    """One request per row, arriving (t - first t) / speed after the run start. Block k of a prompt is hash id k's
    tokens (the last block cut to the prompt's length); blocks past the ids are the row's own. The text is the
    blocks' texts joined, so requests sharing ids share that text too."""
    blocks = _Blocks(tokenizer, seed, block_tokens)
    first = rows[0].t_s
    requests: list[RequestSpec] = []
    mismatched = 0
    for i, row in enumerate(rows):
        ids: list[int] = []
        texts: list[str] = []
        hash_ids = row.hash_ids or []
        n_blocks = math.ceil(row.input_len / block_tokens)
        mismatched += bool(hash_ids) and len(hash_ids) != n_blocks
        for k, hash_id in enumerate(hash_ids[:n_blocks]):
            block_ids, text = blocks.shared(hash_id, min(block_tokens, row.input_len - k * block_tokens))
            ids += block_ids
            texts.append(text)
        if len(ids) < row.input_len:
            rest_ids, text = blocks.unshared(row.row, row.input_len - len(ids))
            ids += rest_ids
            texts.append(text)
        requests.append(
            RequestSpec(f"req-{i:05d}", ids, "".join(texts), row.output_len, arrival_s=(row.t_s - first) / speed)
        )
    shared = {h for r in rows for h in (r.hash_ids or [])}
    return requests, {
        "block_tokens": block_tokens,
        "hash_ids": len(shared),
        "rows_with_hash_ids": sum(bool(r.hash_ids) for r in rows),
        "rows_hash_ids_not_one_per_block": mismatched,
    }


def sample_trace(
    dataset: str, tokenizer: Tokenizer, options: TraceOptions, seed: int, limit: int | None
) -> tuple[list[RequestSpec], dict]:
    """(requests on the trace's own schedule, the workload's source: file digest, format, window, rows used)."""
    path = Path(dataset.removeprefix(TRACE_PREFIX)).expanduser()
    fmt, rows, source = read_trace(path, options)
    chosen, window = window_rows(rows, options, limit)
    block = int(source["columns"].get("block", BLOCK_TOKENS)) if fmt == "generic" else BLOCK_TOKENS
    requests, prompts = trace_requests(chosen, tokenizer, seed, options.speed, block)
    return requests, {**source, **window, "prompts": prompts}


def trace_schedule(source: dict, max_concurrency: int | None) -> dict:
    """The workload's schedule: the trace's timestamps, not a generated process."""
    return {
        "kind": "trace",
        "request_rate": None,
        "burstiness": None,
        "max_concurrency": max_concurrency,
        "trace_format": source["format"],
        "speed": source["speed"],
        "replay_span_s": source["recorded_span_s"] / source["speed"],
    }
