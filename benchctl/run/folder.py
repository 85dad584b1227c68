"""results/<run-id>/ of one run, and the only writer of its run.json (a benchctl.manifest.RunManifest).

`start` creates the folder and writes the manifest with status `running`; the run reports what it learns
(`engine_ready`, `requests_started`); `finalize` writes the outcome, then requests.parquet. After a run, `open`
reads a folder back for the one later change there is: the machine's ceilings measured around it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchctl import envinfo, hwinfo, manifest, metrics, store, telemetry
from benchctl.backend import Backend
from benchctl.manifest import RunManifest
from benchctl.models import ResolvedModel
from benchctl.records import read_records
from benchctl.run.config import Progress, RunConfig
from benchctl.run.sink import RecordSink
from benchctl.workload import Workload


class RunFolder:
    def __init__(self, path: Path, run: RunManifest):
        self.path = path
        self.manifest = run
        self._t_start: float | None = time.monotonic()
        self._t_requests: float | None = None
        self._telemetry: telemetry.Recorder | None = None  # power and energy while the requests run

    @classmethod
    def start(
        cls,
        config: RunConfig,
        backend: Backend,
        model: ResolvedModel,
        workload: Workload,
        serving: dict[str, Any] | None = None,
    ) -> RunFolder:
        path = store.new_run_dir(Path(config.output_dir), backend.name)
        run_config = {
            "backend": backend.name,
            "model": model.to_json(),
            "mode": config.mode,
            "batch_size": config.batch_size,
            "engine_args": config.engine_args,
            "slos_ms": config.slos_ms,
            "workload_options": _jsonable(asdict(config.workload)),
        }
        if serving is not None:
            run_config["serving"] = serving
        run = RunManifest(
            run_id=path.name,
            created_at=_now(),
            label=config.label,
            config=run_config,
            workload=workload.spec(),
            environment=envinfo.environment(),
        )
        folder = cls(path, run)
        folder._write()
        return folder

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        """A finished run's folder (ManifestError if its run.json is not a valid manifest)."""
        folder = cls(path, manifest.read(path))
        folder._t_start = None  # this process did not run it: no timings of its own to add
        return folder

    def sink(self, progress: Progress, on_record: Callable[[dict], None] | None = None) -> RecordSink:
        return RecordSink(self.path / "requests.jsonl", progress, on_record)

    def engine_ready(self, engine: dict[str, Any], setup_s: float) -> None:
        """The engine (worker or server) is up: what it reported, and how long it took to get there."""
        self.manifest.engine = engine
        self.manifest.timings["setup_s"] = setup_s
        self._write()

    def requests_started(self) -> None:
        self._t_requests = time.monotonic()
        self._telemetry = telemetry.start(self.path, (self.manifest.engine or {}).get("device"))

    def finalize(
        self,
        rows: list[dict],
        status: str,
        error: str | None,
        *,
        engine_stats: dict | None = None,
        serving_stats: dict | None = None,
        profile: dict | None = None,
    ) -> None:
        """The run's outcome: the final run.json first, then requests.parquet (requests.jsonl's records in columns):
        whatever happens while the parquet is written, run.json already says how the run ended."""
        run = self.manifest
        t_end = time.monotonic()
        run.status, run.error, run.finished_at = status, error, _now()
        run.engine_stats = engine_stats if engine_stats is not None else run.engine_stats
        run.serving_stats = serving_stats if serving_stats is not None else run.serving_stats
        run.profile = profile if profile is not None else run.profile
        run.extra["energy"] = telemetry.finish(self._telemetry, rows)  # energy per run, J per output / total token
        run.summary = metrics.summarize(rows, slos_ms=run.config.get("slos_ms") or None)
        # beside the whole run: its steady state and stages (load shapes), and reasoning models' answer times
        run.summary.update(metrics.summarize_windows(rows, run.workload.get("schedule"), run.config.get("slos_ms")))
        run.summary.update(metrics.reasoning_summary(rows))
        if self._t_requests is not None:
            run.timings["requests_s"] = t_end - self._t_requests
        if self._t_start is not None:
            run.timings["total_s"] = t_end - self._t_start
        run.environment["hwinfo"] = hwinfo.near_run(run.to_dict())  # this machine's ceilings around the run
        self._write()
        if rows:
            store.write_parquet(rows, self.path / "requests.parquet")

    def fail_unfinished(self, error: str) -> bool:
        """A run whose process died before it could finalize (a sweep cell killed at its timeout) still says
        `running`: end it as failed, with the records it left in requests.jsonl. False if it had ended."""
        if self.manifest.status != "running":
            return False
        path = self.path / "requests.jsonl"
        self.finalize(read_records(path) if path.is_file() else [], "failed", error)
        return True

    def refresh_hwinfo(self) -> None:
        """Ceilings measured right after the run (benchctl run --measure-ceiling) join the ones near it."""
        self.manifest.environment["hwinfo"] = hwinfo.near_run(self.manifest.to_dict())
        self._write()

    def _write(self) -> None:
        store.write_json_atomic(self.path / "run.json", store.clean_floats(self.manifest.to_dict()))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _jsonable(value: Any) -> Any:
    return store.clean_floats(json.loads(json.dumps(value, default=str)))
