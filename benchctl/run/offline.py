"""Offline mode: the engine runs the whole workload inside a backend worker process (benchctl.worker).

The harness sends the requests with their precomputed arrival times and turns the worker's events into
records (requests.jsonl), engine steps (steps.jsonl) and the run's engine info and statistics (run.json).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from benchctl import profile, store
from benchctl.backend import Backend
from benchctl.models import ResolvedModel
from benchctl.records import RecordWriter
from benchctl.run.config import Progress, RunConfig, RunFailed
from benchctl.run.folder import RunFolder
from benchctl.run.interrupts import failure_reason
from benchctl.worker.host import WorkerDied, WorkerProcess
from benchctl.workload import Workload

TORCH_TRACE = "torch_trace.json"


def run_offline(
    config: RunConfig,
    backend: Backend,
    model: ResolvedModel,
    workload: Workload,
    progress: Progress,
    on_record: Callable[[dict], None] | None = None,
) -> Path:
    folder = RunFolder.start(config, backend, model, workload)
    run_dir = folder.path
    expected = {r.request_id: r for r in workload.requests}
    worker = WorkerProcess(
        backend.worker,
        python=backend.python(),
        log_path=run_dir / "worker.log",
        prefix=profile.worker_prefix(config.profile, run_dir),  # nsys / ncu wrap the worker; torch runs inside it
    )
    step_writer: RecordWriter | None = None
    engine_stats: dict | None = None
    sink = folder.sink(progress, on_record)
    try:
        with sink:
            progress.stage(f"loading {backend.name} engine")
            t_load = time.monotonic()
            options = {"batch_size": config.batch_size, "engine_args": config.engine_args, "seed": workload.seed}
            ready = worker.request({"op": "load", "model": model.to_json(), "options": options}, "ready")
            load_s = time.monotonic() - t_load
            folder.engine_ready({**ready["info"], "load_s": load_s}, setup_s=load_s)
            progress.start_requests(len(workload.requests))
            folder.requests_started()
            worker.send(
                {
                    "op": "run",
                    "requests": [r.to_wire() for r in workload.requests],
                    "max_concurrency": workload.schedule.get("max_concurrency"),
                    "torch_trace": str(run_dir / TORCH_TRACE) if config.profile == "torch" else None,
                }
            )
            for event in worker.events(stall_timeout_s=config.stall_timeout_s):
                if event["event"] == "record":
                    record = event["record"]
                    spec = expected.get(record.get("request_id"))
                    if spec is None:
                        raise WorkerDied(f"worker reported an unknown request {record.get('request_id')!r}")
                    if spec.labels:  # a load shape's phase and stage, as serving records carry them
                        record["extra"] = {**(record.get("extra") or {}), **spec.labels}
                    sink.add(record)
                elif event["event"] == "step":
                    if step_writer is None:  # only engines that report steps get a steps.jsonl
                        step_writer = RecordWriter(run_dir / "steps.jsonl")
                    step_writer.append(event["step"])
                elif event["event"] == "done":
                    engine_stats = event.get("stats", {})
                    break
    except WorkerDied as e:  # exited, fatal, or stalled: its whole group goes, whatever its leader did
        worker.kill()
        folder.finalize(sink.rows, status="failed", error=str(e))
        raise RunFailed(f"{backend.name} worker failed: {e}", run_dir, e.log_tail) from None
    except BaseException as e:  # SIGINT, SIGTERM or a harness bug: stop the engine now, keep what was measured
        worker.kill()
        folder.finalize(sink.rows, status="failed", error=failure_reason(e))
        raise
    finally:
        worker.close()
        if step_writer is not None:
            step_writer.close()
    rows = sink.rows
    profiled = _profile_summary(config.profile, run_dir) if config.profile != "none" else None
    missing = sorted(set(expected) - {r["request_id"] for r in rows})
    folder.finalize(
        rows,
        status="completed" if not missing else "failed",
        error=f"{len(missing)} requests never reported" if missing else None,
        engine_stats=engine_stats,
        profile=profiled,
    )
    if missing:
        raise RunFailed(f"{len(missing)} requests were never reported by the worker", run_dir)
    return run_dir


def _profile_summary(mode: str, run_dir: Path) -> dict:
    """Summaries of the run's trace (full tables in profile_summary.json, headline numbers in run.json)."""
    try:
        summary = profile.summarize(mode, run_dir, TORCH_TRACE)
    except Exception as e:  # a broken trace must not lose the run's measurements
        return {"mode": mode, "error": f"{type(e).__name__}: {e}"}
    store.write_json_atomic(run_dir / "profile_summary.json", store.clean_floats(summary))
    return {"mode": mode, **{k: v for k, v in summary.items() if not isinstance(v, (list, dict))}}
