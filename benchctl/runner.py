"""Run one benchmark: workload -> backend worker (offline) or server (serving) -> records on disk -> metrics -> run.json.

The runner never special-cases an engine: it reads the backend's capabilities, and the worker (or the
engine's own server, benchctl.serving) does the engine-specific work in its own process. Both modes share
the run folder, the record path (RecordSink) and the finalisation.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from benchctl import envinfo, hwinfo, metrics, profile, store
from benchctl.backend import Backend, BackendError, get_backend
from benchctl.models import ResolvedModel, resolve_model
from benchctl.records import RecordWriter, RequestRecord
from benchctl.workload import Workload, WorkloadError, WorkloadOptions, build_workload, load_tokenizer
from benchctl.worker.host import WorkerDied, WorkerProcess


class RunFailed(RuntimeError):
    """The engine failed mid-run; finished records are on disk and run.json says `failed`."""

    def __init__(self, message: str, run_dir: Path, log_tail: str = ""):
        super().__init__(message)
        self.run_dir = run_dir
        self.log_tail = log_tail


@dataclass(slots=True)
class RunConfig:
    backend: str = "reference"
    model: str = "smollm2-135m"
    mode: str = "offline"
    workload: WorkloadOptions = field(default_factory=WorkloadOptions)
    batch_size: int | None = None
    engine_args: dict[str, str] = field(default_factory=dict)
    output_dir: Path = Path("results")
    slos_ms: dict[str, float] = field(default_factory=dict)
    label: str | None = None
    # serving mode (benchctl.serving): attach to base_url, or launch the backend's server when None
    base_url: str | None = None
    # more servers of a load-balanced deployment: requests go round-robin over base_url and these
    extra_base_urls: list[str] = field(default_factory=list)
    endpoint: str = "completions"  # completions | chat
    api_key: str | None = None
    warmup_requests: int = 0
    request_timeout_s: float = 600.0
    client_processes: int = 1  # load client processes (benchctl.serving.shards when > 1)
    profile: str = "none"  # none | torch | nsys (benchctl.profile)


class Progress:
    """What the runner tells its caller; the CLI draws it with rich, tests ignore it."""

    def stage(self, text: str) -> None: ...
    def start_requests(self, total: int) -> None: ...
    def request_done(self, record: dict) -> None: ...


def parse_engine_args(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BackendError(f"--engine-arg expects KEY=VALUE, got {pair!r}")
        parsed[key.strip()] = value.strip()
    return parsed


def model_context_len(model: ResolvedModel) -> int | None:
    config = json.loads((model.hf_dir / "config.json").read_text())
    return config.get("max_position_embeddings")


def check_backend(backend: Backend, config: RunConfig) -> None:
    caps = backend.capabilities
    profile.check_profile(config.profile)
    if config.profile != "none" and config.mode != "offline":
        raise BackendError("--profile profiles the engine's worker process: it needs --mode offline")
    if config.mode == "serving":
        from benchctl.serving.run import check_serving

        check_serving(backend, config)
        return
    if config.mode != "offline":
        raise BackendError(f"--mode must be offline or serving, got {config.mode!r}")
    if config.base_url is not None:
        raise BackendError("--base-url needs --mode serving")
    if not caps.offline:
        raise BackendError(f"backend {backend.name!r} has no offline mode")
    reason = backend.unavailable_reason()
    if reason:
        raise BackendError(f"backend {backend.name!r} is unavailable here: {reason}")
    w = config.workload
    if not caps.arrivals and (not math.isinf(w.request_rate) or w.max_concurrency is not None):
        raise BackendError(f"backend {backend.name!r} runs a whole batch at once: it cannot honour "
                           f"--request-rate or --max-concurrency in offline mode")
    if not caps.arrivals and w.kind == "conversations":
        raise BackendError(f"backend {backend.name!r} runs a whole batch at once: it cannot replay conversations "
                           f"(each turn waits for the previous answer) in offline mode; use --mode serving")
    if config.batch_size is not None and (config.batch_size < 1 or not caps.batch_size):
        raise BackendError(f"--batch-size must be >= 1 and supported by the backend "
                           f"({backend.name!r} {'supports' if caps.batch_size else 'does not support'} it)")
    check_engine_args(backend, config)


def check_engine_args(backend: Backend, config: RunConfig) -> None:
    unknown = sorted(set(config.engine_args) - set(backend.engine_args))
    if unknown:
        accepted = ", ".join(sorted(backend.engine_args)) or "none"
        raise BackendError(f"backend {backend.name!r} does not accept engine arg(s) {', '.join(unknown)}; "
                           f"accepted: {accepted}")
    if backend.check_args is not None:
        backend.check_args(config.engine_args)


def _max_model_len(engine_args: dict[str, str]) -> int | None:
    if "max_model_len" not in engine_args:
        return None
    try:
        value = int(engine_args["max_model_len"])
    except ValueError:
        value = 0
    if value <= 0:
        raise BackendError(f"--engine-arg max_model_len must be a positive integer, got "
                           f"{engine_args['max_model_len']!r}")
    return value


def check_context(workload: Workload, context_len: int | None) -> None:
    if context_len is None:
        return
    for r in workload.requests:
        if r.prompt_len + r.output_len > context_len:
            raise WorkloadError(f"request {r.request_id}: prompt ({r.prompt_len}) + output ({r.output_len}) "
                                f"tokens exceed the model's context of {context_len}")


def prepare(config: RunConfig, progress: Progress) -> tuple[Backend, ResolvedModel, Workload]:
    """Everything that can fail because of user input happens here, before a run folder exists."""
    backend = get_backend(config.backend)
    check_backend(backend, config)
    model = resolve_model(config.model, progress=progress.stage)
    workload = build_workload(config.workload, load_tokenizer(str(model.hf_dir)))
    context = _max_model_len(config.engine_args) or model_context_len(model)
    check_context(workload, context)
    return backend, model, workload


def run_benchmark(config: RunConfig, progress: Progress | None = None,
                  on_record: Callable[[dict], None] | None = None) -> Path:
    progress = progress or Progress()
    backend, model, workload = prepare(config, progress)
    if config.mode == "serving":
        from benchctl.serving.run import run_serving

        return run_serving(config, backend, model, workload, progress, on_record)
    run_dir, run = start_run(config, backend, model, workload)
    expected = {r.request_id: r for r in workload.requests}
    worker = WorkerProcess(backend.worker, python=backend.python(), log_path=run_dir / "worker.log",
                           prefix=profile.nsys_prefix(run_dir) if config.profile == "nsys" else None)
    step_writer: RecordWriter | None = None
    sink = RecordSink(run_dir / "requests.jsonl", progress, on_record)
    try:
        with sink:
            progress.stage(f"loading {backend.name} engine")
            t_load = time.monotonic()
            options = {"batch_size": config.batch_size, "engine_args": config.engine_args,
                       "seed": workload.seed}
            ready = worker.request({"op": "load", "model": model.to_json(), "options": options}, "ready")
            run["engine"] = {**ready["info"], "load_s": time.monotonic() - t_load}
            store.write_json_atomic(run_dir / "run.json", store.clean_floats(run))
            progress.start_requests(len(workload.requests))
            worker.send({"op": "run", "requests": [r.to_wire() for r in workload.requests],
                         "max_concurrency": workload.schedule.get("max_concurrency"),
                         "torch_trace": str(run_dir / TORCH_TRACE) if config.profile == "torch" else None})
            for event in worker.events():
                if event["event"] == "record":
                    if event["record"].get("request_id") not in expected:
                        raise WorkerDied(f"worker reported an unknown request {event['record'].get('request_id')!r}")
                    sink.add(event["record"])
                elif event["event"] == "step":
                    if step_writer is None:  # only engines that report steps get a steps.jsonl
                        step_writer = RecordWriter(run_dir / "steps.jsonl")
                    step_writer.append(event["step"])
                elif event["event"] == "done":
                    run["engine_stats"] = event.get("stats", {})
                    break
    except WorkerDied as e:
        finalize(run, run_dir, sink.rows, config, status="failed", error=str(e))
        raise RunFailed(f"{backend.name} worker failed: {e}", run_dir, e.log_tail) from None
    except BaseException as e:  # Ctrl-C or a harness bug: stop the engine now, keep what was measured
        worker.kill()
        finalize(run, run_dir, sink.rows, config, status="failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        worker.close()
        if step_writer is not None:
            step_writer.close()
    rows = sink.rows
    if config.profile != "none":
        run["profile"] = _profile_summary(config.profile, run_dir)
    missing = sorted(set(expected) - {r["request_id"] for r in rows})
    finalize(run, run_dir, rows, config, status="completed" if not missing else "failed",
             error=f"{len(missing)} requests never reported" if missing else None)
    if missing:
        raise RunFailed(f"{len(missing)} requests were never reported by the worker", run_dir)
    return run_dir


TORCH_TRACE = "torch_trace.json"


def _profile_summary(mode: str, run_dir: Path) -> dict:
    """Summaries of the run's trace (full tables in profile_summary.json, headline numbers in run.json)."""
    try:
        if mode == "torch":
            summary = profile.summarize_torch_trace(run_dir / TORCH_TRACE)
        else:
            summary = profile.summarize_nsys(run_dir)
    except Exception as e:  # a broken trace must not lose the run's measurements
        return {"mode": mode, "error": f"{type(e).__name__}: {e}"}
    store.write_json_atomic(run_dir / "profile_summary.json", store.clean_floats(summary))
    return {"mode": mode, **{k: v for k, v in summary.items() if not isinstance(v, (list, dict))}}


def start_run(config: RunConfig, backend: Backend, model: ResolvedModel, workload: Workload,
              extra_config: dict | None = None) -> tuple[Path, dict]:
    """Create results/<run-id>/ and its first run.json (status `running`)."""
    run_dir = store.new_run_dir(Path(config.output_dir), backend.name)
    run = {
        "schema_version": store.SCHEMA_VERSION,
        "run_id": run_dir.name,
        "status": "running",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "label": config.label,
        "config": {"backend": backend.name, "model": model.to_json(), "mode": config.mode,
                   "batch_size": config.batch_size, "engine_args": config.engine_args,
                   "slos_ms": config.slos_ms, "workload_options": _jsonable(asdict(config.workload)),
                   **(extra_config or {})},
        "workload": workload.spec(),
        "environment": envinfo.environment(),
    }
    store.write_json_atomic(run_dir / "run.json", store.clean_floats(run))
    return run_dir, run


class RecordSink:
    """Where every finished request goes, in both modes: validated, derived latencies added
    (benchctl.metrics.request_latencies), appended to requests.jsonl, reported to the caller."""

    def __init__(self, path: Path, progress: Progress, on_record: Callable[[dict], None] | None = None):
        self.writer = RecordWriter(path)
        self.progress = progress
        self.on_record = on_record
        self.rows: list[dict] = []

    def add(self, raw: dict) -> dict:
        return self.add_many([raw])[0]

    def add_many(self, raws: list[dict]) -> list[dict]:
        rows = [finish_record(raw) for raw in raws]
        self.writer.append_many(rows)  # on disk before anyone is told
        self.rows.extend(rows)
        for row in rows:
            self.progress.request_done(row)
            if self.on_record:
                self.on_record(row)
        return rows

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "RecordSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_RECORD_FIELDS = tuple(f.name for f in fields(RequestRecord))


def finish_record(raw: dict) -> dict:
    """Validate a raw record (worker or load client), then add the derived latencies (benchctl.metrics)."""
    parsed = RequestRecord.from_dict(raw)
    record = {name: getattr(parsed, name) for name in _RECORD_FIELDS}  # shallow: asdict's deep copy costs ~3x
    return {**record, **metrics.request_latencies(record)}


def finalize(run: dict, run_dir: Path, rows: list[dict], config: RunConfig, status: str,
              error: str | None) -> None:
    run["status"] = status
    run["error"] = error
    run["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run["summary"] = metrics.summarize(rows, slos_ms=config.slos_ms or None)
    run.setdefault("environment", {})["hwinfo"] = hwinfo.near_run(run)  # this machine's ceilings around the run
    if rows:
        store.write_parquet(rows, run_dir / "requests.parquet")
    store.write_json_atomic(run_dir / "run.json", store.clean_floats(run))


def _jsonable(value: Any) -> Any:
    return store.clean_floats(json.loads(json.dumps(value, default=str)))
