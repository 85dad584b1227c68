"""One benchmark run: its options checked, then offline (a backend worker) or serving (a server and a load client)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchctl.run.config import Progress, RunConfig
from benchctl.run.interrupts import interrupts_unwind
from benchctl.run.offline import run_offline
from benchctl.run.prepare import prepare
from benchctl.run.serving import run_serving


def run_benchmark(
    config: RunConfig, progress: Progress | None = None, on_record: Callable[[dict], None] | None = None
) -> Path:
    """Run the workload and return its folder, results/<run-id>/ (run.json, requests.jsonl, requests.parquet)."""
    progress = progress or Progress()
    backend, model, workload = prepare(config, progress)
    run = run_serving if config.mode == "serving" else run_offline
    with interrupts_unwind():  # from here on a run folder exists: a signal must end it cleanly
        return run(config, backend, model, workload, progress, on_record)
