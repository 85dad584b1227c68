"""Serving mode: launch (or attach to) an OpenAI-compatible server, drive the workload's schedule through the
load client, scrape the server's metrics beside it, and leave a run folder shaped like an offline one.

results/<run-id>/: run.json, requests.jsonl (+ .parquet), server_metrics.jsonl (when the server has
/metrics), server.log (launched servers).

Several --base-url values benchmark a load-balanced deployment: requests go round-robin (in arrival order) over
the servers, each record names its server (extra.server), run.json counts requests and failures per server.
Server metrics are scraped from the first URL only.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchctl.backend import Backend
from benchctl.models import ResolvedModel
from benchctl.run.config import Progress, RunConfig, RunFailed
from benchctl.run.folder import RunFolder
from benchctl.run.interrupts import Interrupted, failure_reason
from benchctl.run.prepare import model_context_len
from benchctl.run.scraping import final_scrape, start_scraper, stop_scraper
from benchctl.run.sink import RecordPump, RecordSink
from benchctl.serving.launch import ServerFailed, ServerProcess, free_port, server_argv
from benchctl.serving.scrape import (
    prefix_cache_hit_rate,
    server_spec_decode,
    summarize_series,
)
from benchctl.workload import Workload, load_tokenizer

HOST = "127.0.0.1"
START_LEAD_S = 0.2  # t0 is this far after the client is ready, so the first arrival is not already late


@dataclass(slots=True)
class ServingState:
    """What the client's coroutine learns during the run, for the run's serving_stats and for cleanup."""

    model_name: str | None = None  # the name requests were sent with (from /v1/models when it answers)
    warmup: dict[str, int] | None = None  # {"requests": n, "failed": m}
    peak_in_flight: int | None = None
    client_processes: dict[str, Any] = field(default_factory=lambda: {"processes": 1})
    t0: float | None = None  # time.monotonic() of the run's start
    scraper: subprocess.Popen | None = None
    sharded: Any = None  # benchctl.serving.shards.ShardedClient while it runs
    server_died: str | None = None  # why a launched server ended the run
    interrupted_by: int | None = None  # the signal that cancelled the client (SIGTERM)
    saturation: Any = None  # benchctl.saturation.SaturationDetector when the workload asks for an early stop


def run_serving(
    config: RunConfig,
    backend: Backend,
    model: ResolvedModel,
    workload: Workload,
    progress: Progress,
    on_record: Callable[[dict], None] | None = None,
) -> Path:
    serving_info = {
        "base_url": config.base_url,
        "extra_base_urls": list(config.extra_base_urls),
        "endpoint": config.endpoint,
        "launched": config.base_url is None,
        "api_key": "set" if config.api_key else None,
        "warmup_requests": config.warmup_requests,
        "request_timeout_s": config.request_timeout_s,
        "client_processes": config.client_processes,
    }
    folder = RunFolder.start(config, backend, model, workload, serving=serving_info)
    return _run_serving(config, backend, model, workload, progress, on_record, folder)


def _run_serving(
    config: RunConfig,
    backend: Backend,
    model: ResolvedModel,
    workload: Workload,
    progress: Progress,
    on_record: Callable[[dict], None] | None,
    folder: RunFolder,
) -> Path:
    from benchctl.serving.client import server_root  # aiohttp: checked by prepare.check_serving

    run_dir = folder.path
    server: ServerProcess | None = None
    sink = folder.sink(progress, on_record)
    pump = RecordPump(sink)
    state = ServingState()
    try:
        base_url: str | None = config.base_url
        metrics_route: str | None = "/metrics"
        if base_url is None:
            spec = backend.server
            assert spec is not None, "prepare.check_serving admits no launch without a server spec"
            port = free_port(HOST)
            context = config.engine_args.get("max_model_len") or model_context_len(model) or ""
            values = {
                "python": backend.python(),
                "model_dir": str(model.hf_dir),
                "gguf_path": str(model.gguf_path or ""),
                "model_name": config.model,
                "host": HOST,
                "port": str(port),
                "max_model_len": str(context),
            }
            argv, env = server_argv(spec, values, config.engine_args)
            progress.stage(f"starting the {backend.name} server on {HOST}:{port}")
            server = ServerProcess(argv, run_dir / "server.log", env)
            base_url = f"http://{HOST}:{port}"
            startup_s = server.wait_healthy(base_url + spec.health_route, spec.startup_timeout_s)
            metrics_route = spec.metrics_route
            folder.engine_ready(
                {"server_argv": argv, "server_env": env, "base_url": base_url, "startup_s": startup_s},
                setup_s=startup_s,
            )
        metrics_url = server_root(base_url) + metrics_route if metrics_route else None
        tokenizer = load_tokenizer(str(model.hf_dir))
        _run_loop(
            _drive(config, workload, tokenizer, base_url, server, pump, progress, folder, metrics_url, state), state
        )
        stop_scraper(state.scraper)
        if state.scraper is not None and metrics_url and state.t0 is not None:  # one last sample: the state left
            final_scrape(metrics_url, run_dir / "server_metrics.jsonl", state.t0, config.api_key)
        pump.close()
        lost = _record_the_unrecorded(workload, sink, pump)
    except ServerFailed as e:
        stop_scraper(state.scraper)
        pump.close()
        folder.finalize(sink.rows, status="failed", error=str(e))
        raise RunFailed(f"{backend.name} server failed: {e}", run_dir, e.log_tail) from None
    except BaseException as e:  # SIGINT, SIGTERM (benchctl.run.interrupts) or a harness bug: stop everything
        stop_scraper(state.scraper)
        try:
            pump.close()
        finally:
            folder.finalize(sink.rows, status="failed", error=failure_reason(e))
        raise
    finally:
        if server is not None:
            server.stop()
        sink.close()
    rows = sink.rows
    errors = collections.Counter(_error_kind(r["error"]) for r in rows if r.get("error"))
    series_summary = summarize_series(run_dir / "server_metrics.jsonl")
    serving_stats = {
        "model_name": state.model_name,
        "warmup": state.warmup,
        "peak_in_flight": state.peak_in_flight,
        "failures_by_error": dict(errors),
        "client_processes": state.client_processes,
        "servers": _per_server(rows) if config.extra_base_urls else None,
        "server_metrics": series_summary,
        "prefix_cache": prefix_cache_hit_rate(series_summary["series"]),
        "spec_decode": server_spec_decode(series_summary["series"]),
        "duplicate_records_dropped": pump.duplicates,
        "saturation_stop": state.saturation.stopped if state.saturation is not None else None,
    }
    died = state.server_died
    unrecorded = f"{lost} of {len(workload.requests)} requests had no valid record from the load client" if lost else ""
    error = "; ".join(e for e in (died, unrecorded) if e) or None  # both, when the server died and records were lost
    folder.finalize(rows, status="failed" if error else "completed", error=error, serving_stats=serving_stats)
    if died:
        raise RunFailed(f"{backend.name} server failed mid-run: {error}", run_dir, server.log_tail() if server else "")
    if unrecorded:
        raise RunFailed(f"{unrecorded}; each is recorded as failed", run_dir)
    return run_dir


def _record_the_unrecorded(workload: Workload, sink: RecordSink, pump: RecordPump) -> int:
    """Every request gets exactly one record: one the client never delivered (or delivered malformed) is recorded
    failed, with the reason. Returns how many there were."""
    recorded = {r["request_id"] for r in sink.rows}
    failed = []
    for spec in workload.requests:
        if spec.request_id in recorded:
            continue
        why = pump.rejected.get(spec.request_id)
        error = f"invalid record from the load client: {why}" if why else "no record from the load client"
        failed.append(
            {
                "request_id": spec.request_id,
                "prompt_tokens": spec.prompt_len,
                "expected_output_tokens": spec.output_len,
                "arrival_s": spec.arrival_s,
                "conversation_id": spec.conversation_id,
                "turn": spec.turn,
                "error": error,
                "extra": {"error_kind": "invalid_record" if why else "no_record"},
            }
        )
    sink.add_many(failed)
    return len(failed)


async def _drive(
    config: RunConfig,
    workload: Workload,
    tokenizer,
    base_url: str,
    server: ServerProcess | None,
    pump: RecordPump,
    progress: Progress,
    folder: RunFolder,
    metrics_url: str | None,
    state: ServingState,
) -> None:
    import aiohttp

    from benchctl.serving.client import ClientOptions, LoadClient
    from benchctl.serving.shards import ShardedClient

    max_concurrency = workload.schedule.get("max_concurrency")
    options = ClientOptions(
        base_url=base_url,
        extra_base_urls=tuple(config.extra_base_urls),
        model_name=config.model,
        endpoint=config.endpoint,
        api_key=config.api_key,
        request_timeout_s=config.request_timeout_s,
        max_concurrency=max_concurrency,
    )
    _cancel_on_sigterm(state)
    client = LoadClient(options, tokenizer)
    await client.open(max_concurrency or len(workload.requests))
    watcher = None
    try:
        try:
            served = await client.list_models()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError):
            served = []  # no usable /v1/models: send the name the user gave
        options.model_name = config.model if config.model in served or not served else served[0]
        state.model_name = options.model_name
        if config.warmup_requests:
            progress.stage(f"warming up with {config.warmup_requests} requests")
            warm = await client.warmup(workload.requests, config.warmup_requests)
            failed = [r for r in warm if r["error"]]
            state.warmup = {"requests": len(warm), "failed": len(failed)}
            if len(failed) == len(warm):
                raise ServerFailed(
                    f"every warm-up request failed; first error: {failed[0]['error']}",
                    server.log_tail() if server else "",
                )
        tokenizer_dir = str(tokenizer.model_dir) if tokenizer is not None else None
        if config.load_generators:
            from benchctl.distributed import DistributedClient

            address = config.load_generators

            progress.stage(f"placing {config.generator_nodes} load generators on the Ray cluster")
            state.sharded = await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: DistributedClient(
                    options,
                    workload.requests,
                    address,
                    config.generator_nodes,
                    config.client_processes,
                    tokenizer_dir,
                    config.warmup_requests,
                ),
            )
        elif config.client_processes > 1:
            progress.stage(f"starting {config.client_processes} load client processes")
            state.sharded = await asyncio.get_running_loop().run_in_executor(
                None, lambda: ShardedClient(options, workload.requests, config.client_processes, tokenizer_dir)
            )
        t0 = state.t0 = time.monotonic() + START_LEAD_S
        if metrics_url:
            state.scraper = start_scraper(metrics_url, folder.path / "server_metrics.jsonl", t0, config.api_key)
        if server is not None:
            watcher = asyncio.create_task(_watch(server, state.sharded or client, state))
        progress.start_requests(len(workload.requests))
        folder.requests_started()
        if state.sharded is None:
            await client.run(workload.requests, t0, _stopping(workload, state, client, pump.put))
            state.peak_in_flight = client.peak_in_flight
        else:
            result = await asyncio.get_running_loop().run_in_executor(None, state.sharded.run, t0, pump.put)
            state.peak_in_flight = result.peak_in_flight
            state.client_processes = {"processes": state.sharded.n, "died": result.died, "cpu_s": result.cpu_s}
            if getattr(result, "generators", None):  # per node, the clock bound and what it distorts
                state.client_processes["load_generators"] = result.generators
                progress.stage(
                    f"load generators: worst clock error bound "
                    f"{result.generators['clock']['worst_error_bound_ms']:.3f} ms (arrival times, duration "
                    f"and rates; not TTFT/TPOT/ITL/E2EL)"
                )
    finally:
        if watcher is not None:
            watcher.cancel()
        if state.sharded is not None:
            state.sharded.close()
            state.sharded = None
        await client.close()


def _run_loop(coro, state: ServingState) -> None:
    """The client's event loop; a SIGTERM during it (which cancelled the client) comes out as Interrupted."""
    from benchctl.serving.client import run_event_loop

    in_main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if in_main else None
    try:
        run_event_loop(coro)
    except asyncio.CancelledError:
        if state.interrupted_by is None:
            raise
        raise Interrupted(state.interrupted_by) from None
    finally:
        if in_main:  # closing the loop left SIGTERM at its default (kill); the run's handler again
            signal.signal(signal.SIGTERM, handler)


def _cancel_on_sigterm(state: ServingState) -> None:
    """SIGTERM cancels the client's task from inside the loop. A signal handler that raises (benchctl.run.interrupts)
    can be lost in a loop's C callbacks (uvloop), leaving the run to finish as if nothing happened."""
    if threading.current_thread() is not threading.main_thread():
        return
    task = asyncio.current_task()
    if task is None:
        return

    def cancel() -> None:
        state.interrupted_by = signal.SIGTERM
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, cancel)


HEALTH_POLL_S = 2.0
HEALTH_FAILURES = 3  # answers other than 200 in a row before a live process counts as a dead server


async def _watch(server: ServerProcess, client, state: ServingState) -> None:
    """A launched server that dies mid-run ends the run: in-flight requests fail, unsent ones are recorded failed.
    Dead includes an engine that stopped while the HTTP process lives on: its health route keeps answering other
    than 200 (no answer in time is a busy server, not a dead one)."""
    bad: list[int] = []
    next_check = time.monotonic() + HEALTH_POLL_S
    while (code := server.exit_code()) is None:
        await asyncio.sleep(0.2)
        if server.health_url is None or time.monotonic() < next_check:
            continue
        status = await asyncio.to_thread(server.health_status)
        next_check = time.monotonic() + HEALTH_POLL_S
        bad = bad + [status] if status not in (200, None) else []
        if len(bad) >= HEALTH_FAILURES:
            state.server_died = (
                f"server's health check {server.health_url} answered {bad[-1]} "
                f"{len(bad)} times in a row during the run (its engine stopped)"
            )
            client.interrupt(state.server_died)  # requests in flight would wait out their timeout: cut them off
            return
    state.server_died = f"server exited with code {code} during the run"
    client.stop(state.server_died)


def _per_server(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Requests and failures per server of a load-balanced run (records' extra.server)."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        entry = out.setdefault((r.get("extra") or {}).get("server") or "?", {"requests": 0, "failed": 0})
        entry["requests"] += 1
        entry["failed"] += 1 if r.get("error") else 0
    return out


def _error_kind(error: str) -> str:
    """`HTTP 503: {...}` -> `HTTP 503`; other messages up to their first colon."""
    return error.split(":", 1)[0][:80]


def _stopping(workload: Workload, state: ServingState, client: Any, emit: Callable[[dict], None]) -> Callable:
    """`emit`, watched by benchctl.saturation when the workload asks for an early stop (--stop-on-saturation,
    --max-error-rate): when it fires, the client sends nothing more and cancels what is in flight."""
    from benchctl.saturation import SaturationDetector, stop_rules, watch

    rules = stop_rules(workload.schedule)
    if rules is None:
        return emit
    state.saturation = SaturationDetector([r.arrival_s for r in workload.requests if r.after is None], rules)
    return watch(state.saturation, emit, client.interrupt)
