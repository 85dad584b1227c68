"""Where every finished request goes, in both modes: validated, derived latencies added, on disk, then reported.

RecordSink appends to requests.jsonl (fsynced) before the caller hears of a record; RecordPump puts the sink on a
thread of its own, so whoever produces records (the load client's event loop) never waits on the disk.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from benchctl import metrics
from benchctl.records import RecordWriter, RequestRecord
from benchctl.run.config import Progress

_RECORD_FIELDS = tuple(f.name for f in fields(RequestRecord))


def finish_record(raw: dict) -> dict:
    """Validate a raw record (worker or load client), then add the derived latencies (benchctl.metrics)."""
    parsed = RequestRecord.from_dict(raw)
    record = {name: getattr(parsed, name) for name in _RECORD_FIELDS}  # shallow: asdict's deep copy costs ~3x
    return {**record, **metrics.request_latencies(record)}


class RecordSink:
    """Validated records with their derived latencies (benchctl.metrics.request_latencies), appended to
    requests.jsonl, reported to the caller."""

    def __init__(self, path: Path, progress: Progress, on_record: Callable[[dict], None] | None = None):
        self.writer = RecordWriter(path)
        self.progress = progress
        self.on_record = on_record
        self.rows: list[dict] = []

    def add(self, raw: dict) -> dict:
        return self.add_many([raw])[0]

    def add_many(self, raws: list[dict]) -> list[dict]:
        return self.write([finish_record(raw) for raw in raws])

    def write(self, rows: list[dict]) -> list[dict]:
        """Rows finish_record made: on disk, then told."""
        self.writer.append_many(rows)  # on disk before anyone is told
        self.rows.extend(rows)
        for row in rows:
            self.progress.request_done(row)
            if self.on_record:
                self.on_record(row)
        return rows

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> RecordSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordPump:
    """Carries records to the RecordSink on a thread: the per-record fsync never blocks the producer (the loop that
    timestamps chunks, or the thread that drains a worker's pipe)."""

    _END = object()

    def __init__(self, sink: RecordSink):
        self.sink = sink
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None  # a failure to write or to tell: a bug or a full disk
        self.rejected: dict[str, str] = {}  # request id -> why its record was not valid (it gets a failed one)
        self.duplicates = 0  # second records for a request already recorded: not written
        self._seen: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="record-pump", daemon=True)
        self._thread.start()

    def put(self, record: dict) -> None:
        self._queue.put(record)

    def _run(self) -> None:
        end = False
        while not end:
            batch = [self._queue.get()]  # block for one, then take whatever else is waiting: one fsync per batch
            while not self._queue.empty() and len(batch) < 1000:
                batch.append(self._queue.get())
            if batch[-1] is self._END:
                end = True
                batch.pop()
            if batch and self.error is None:
                try:
                    self.sink.write(self._accept(batch))
                except BaseException as e:  # a bug; surfaced by close()
                    self.error = e

    def _accept(self, batch: list[dict]) -> list[dict]:
        """The valid first record of each request; one malformed record must not cost the others theirs."""
        rows = []
        for raw in batch:
            request_id = raw.get("request_id") if isinstance(raw, dict) else None
            if request_id in self._seen:
                self.duplicates += 1
                continue
            try:
                row = finish_record(raw)
            except Exception as e:  # noqa: BLE001 - any malformed record: its request is recorded failed instead
                self.rejected[str(request_id)] = f"{type(e).__name__}: {e}"
                continue
            self._seen.add(row["request_id"])
            rows.append(row)
        return rows

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(self._END)
            self._thread.join()
        if self.error is not None:
            raise self.error
