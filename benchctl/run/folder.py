"""results/<run-id>/ of one run: created at the start, its run.json written here and nowhere else."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchctl import envinfo, hwinfo, metrics, store
from benchctl.backend import Backend
from benchctl.models import ResolvedModel
from benchctl.run.config import Progress, RunConfig
from benchctl.run.sink import RecordSink
from benchctl.workload import Workload


class RunFolder:
    """A run folder and its run.json: `start` writes it with status `running`, `finalize` with the outcome."""

    def __init__(self, path: Path, run: dict, slos_ms: dict[str, float] | None = None):
        self.path = path
        self.run = run
        self.slos_ms = slos_ms

    @classmethod
    def start(cls, config: RunConfig, backend: Backend, model: ResolvedModel, workload: Workload,
              extra_config: dict | None = None) -> RunFolder:
        path = store.new_run_dir(Path(config.output_dir), backend.name)
        run = {
            "schema_version": store.SCHEMA_VERSION,
            "run_id": path.name,
            "status": "running",
            "created_at": _now(),
            "label": config.label,
            "config": {"backend": backend.name, "model": model.to_json(), "mode": config.mode,
                       "batch_size": config.batch_size, "engine_args": config.engine_args,
                       "slos_ms": config.slos_ms, "workload_options": _jsonable(asdict(config.workload)),
                       **(extra_config or {})},
            "workload": workload.spec(),
            "environment": envinfo.environment(),
        }
        folder = cls(path, run, config.slos_ms or None)
        folder.save()
        return folder

    def sink(self, progress: Progress, on_record=None) -> RecordSink:
        return RecordSink(self.path / "requests.jsonl", progress, on_record)

    def save(self) -> None:
        store.write_json_atomic(self.path / "run.json", store.clean_floats(self.run))

    def finalize(self, rows: list[dict], status: str, error: str | None) -> None:
        run = self.run
        run["status"] = status
        run["error"] = error
        run["finished_at"] = _now()
        run["summary"] = metrics.summarize(rows, slos_ms=self.slos_ms)
        run.setdefault("environment", {})["hwinfo"] = hwinfo.near_run(run)  # this machine's ceilings around the run
        if rows:
            store.write_parquet(rows, self.path / "requests.parquet")
        self.save()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _jsonable(value: Any) -> Any:
    return store.clean_floats(json.loads(json.dumps(value, default=str)))
