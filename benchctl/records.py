"""One record per request, appended to `requests.jsonl` the moment the request finishes.

Worker side builds records (stdlib only: it may run under another interpreter); the host adds the
derived latencies from benchctl.metrics before writing, so a reader of the JSONL needs no code.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    prompt_tokens: int
    expected_output_tokens: int  # what the workload asked for (exact lengths, ignore_eos)
    output_tokens: int = 0  # what the engine produced
    # Seconds since the run start (t0 = first possible submission), one monotonic clock:
    arrival_s: float = 0.0  # scheduled arrival
    start_s: float | None = None  # handed to the engine (after any concurrency cap)
    first_token_s: float | None = None
    finish_s: float | None = None
    # Times at which output chunks became available; each chunk carries chunk_tokens[i] tokens
    # (None = one token per chunk). The first entry is the first token.
    token_times_s: list[float] | None = None
    chunk_tokens: list[int] | None = None
    error: str | None = None
    conversation_id: str | None = None  # multi-turn workloads: which conversation, and which turn (0 = first)
    turn: int | None = None
    output_tokens_source: str = "engine"  # engine | usage | retokenized (serving fallback)
    extra: dict[str, Any] = field(default_factory=dict)  # engine-specific (cached tokens, preemptions...)

    @property
    def ok(self) -> bool:
        """Completed, by benchctl.metrics.is_completed (the one definition)."""
        from benchctl.metrics.latency import is_completed  # on use: workers build records without the harness's numpy

        return is_completed(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class RecordWriter:
    """Appends one JSON line per finished request, flushed and fsynced: a crash loses nothing written."""

    def __init__(self, path: Path):
        self.path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8")
        self.count = 0

    def append(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.count += 1

    def append_many(self, rows: list[dict[str, Any]]) -> None:
        """Several rows, one fsync: a serving run finishes thousands of requests a second."""
        if not rows:
            return
        self._file.write("".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.count += len(rows)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a requests.jsonl; a torn last line (a crash mid-write) is skipped, not fatal."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
