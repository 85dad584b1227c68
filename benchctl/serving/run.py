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
import contextlib
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from benchctl import store
from benchctl.backend import Backend, BackendError
from benchctl.models import ResolvedModel
from benchctl.runner import (
    Progress,
    RecordSink,
    RunConfig,
    RunFailed,
    check_engine_args,
    finalize,
    model_context_len,
    start_run,
)
from benchctl.workload import Workload, load_tokenizer

HOST = "127.0.0.1"
START_LEAD_S = 0.2  # t0 is this far after the client is ready, so the first arrival is not already late


def check_serving(backend: Backend, config: RunConfig) -> None:
    """User errors of a serving run, raised before a run folder exists."""
    from benchctl.serving.client import ENDPOINTS

    if importlib.util.find_spec("aiohttp") is None:
        raise BackendError("serving mode needs aiohttp: pip install 'benchctl[serving]'")
    if config.endpoint not in ENDPOINTS:
        raise BackendError(f"--endpoint must be one of {', '.join(ENDPOINTS)}, got {config.endpoint!r}")
    if config.batch_size is not None:
        raise BackendError("--batch-size applies to offline mode; a server batches on its own")
    if config.warmup_requests < 0:
        raise BackendError(f"--warmup-requests must be >= 0, got {config.warmup_requests}")
    if config.client_processes < 1:
        raise BackendError(f"--client-processes must be >= 1, got {config.client_processes}")
    if not config.request_timeout_s > 0:
        raise BackendError(f"--request-timeout must be > 0 seconds, got {config.request_timeout_s}")
    if config.base_url is not None:
        urls = [config.base_url, *config.extra_base_urls]
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise BackendError(f"--base-url must start with http:// or https://, got {url!r}")
        if len(set(urls)) < len(urls):
            raise BackendError("--base-url: the same server is given twice")
        if config.engine_args:
            raise BackendError("--engine-arg configures a server benchctl launches; "
                               "with --base-url the server is already running")
        for url in urls:
            probe_server(url, config.api_key)
        return
    if backend.server is None:
        if backend.capabilities.serving:
            raise BackendError(f"backend {backend.name!r} attaches to a running server: give --base-url URL")
        raise BackendError(f"backend {backend.name!r} has no server benchctl can launch; give --base-url of a "
                           f"running OpenAI-compatible server, or use --mode offline")
    reason = backend.unavailable_reason()
    if reason:
        raise BackendError(f"backend {backend.name!r} is unavailable here: {reason}")
    check_engine_args(backend, config)
    per_request = sorted(set(config.engine_args) & set(backend.server.request_args))
    if per_request:
        raise BackendError(f"--engine-arg {', '.join(per_request)}: in serving mode sampling is set per request by "
                           f"the load client (greedy), not by the server")


def probe_server(base_url: str, api_key: str | None) -> None:
    """One GET /v1/models: a wrong URL or key is one clear line, not a run of failed requests."""
    from benchctl.serving.client import api_root

    url = api_root(base_url) + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30):
            pass
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise BackendError(f"the server at {base_url} refused the request (HTTP {e.code}); check --api-key") from None
        # 404 and friends: some servers have no /v1/models; the run will tell.
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BackendError(f"cannot reach an OpenAI-compatible server at {base_url}: {reason}") from None


class RecordPump:
    """Carries records from the client's event loop to the RecordSink on a thread: the per-record fsync
    never blocks the loop that timestamps chunks."""

    _END = object()

    def __init__(self, sink: RecordSink):
        self.sink = sink
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
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
                    self.sink.add_many(batch)
                except BaseException as e:  # a bug; surfaced by close()
                    self.error = e

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(self._END)
            self._thread.join()
        if self.error is not None:
            raise self.error


def run_serving(config: RunConfig, backend: Backend, model: ResolvedModel, workload: Workload,
                progress: Progress, on_record: Callable[[dict], None] | None = None) -> Path:
    serving_info = {"base_url": config.base_url, "extra_base_urls": list(config.extra_base_urls),
                    "endpoint": config.endpoint, "launched": config.base_url is None,
                    "api_key": "set" if config.api_key else None, "warmup_requests": config.warmup_requests,
                    "request_timeout_s": config.request_timeout_s, "client_processes": config.client_processes}
    run_dir, run = start_run(config, backend, model, workload, extra_config={"serving": serving_info})
    with _sigterm_as_interrupt():
        return _run_serving(config, backend, model, workload, progress, on_record, run_dir, run)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM unwinds like Ctrl-C, so the `finally` that stops the server runs (it lives in its own session and
    would otherwise outlive us)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_serving(config: RunConfig, backend: Backend, model: ResolvedModel, workload: Workload, progress: Progress,
                 on_record: Callable[[dict], None] | None, run_dir: Path, run: dict) -> Path:
    from benchctl.serving.client import server_root
    from benchctl.serving.launch import ServerFailed, ServerProcess, free_port, server_argv
    from benchctl.serving.scrape import prefix_cache_hit_rate, server_spec_decode, summarize_series

    server: ServerProcess | None = None
    sink = RecordSink(run_dir / "requests.jsonl", progress, on_record)
    pump = RecordPump(sink)
    state: dict = {}
    try:
        base_url, metrics_route = config.base_url, "/metrics"
        if base_url is None:
            spec = backend.server
            port = free_port(HOST)
            context = config.engine_args.get("max_model_len") or model_context_len(model) or ""
            values = {"python": backend.python(), "model_dir": str(model.hf_dir),
                      "gguf_path": str(model.gguf_path or ""), "model_name": config.model, "host": HOST,
                      "port": str(port), "max_model_len": str(context)}
            argv, env = server_argv(spec, values, config.engine_args)
            progress.stage(f"starting the {backend.name} server on {HOST}:{port}")
            server = ServerProcess(argv, run_dir / "server.log", env)
            base_url = f"http://{HOST}:{port}"
            startup_s = server.wait_healthy(base_url + spec.health_route, spec.startup_timeout_s)
            metrics_route = spec.metrics_route
            run["engine"] = {"server_argv": argv, "server_env": env, "base_url": base_url, "startup_s": startup_s}
            store.write_json_atomic(run_dir / "run.json", store.clean_floats(run))
        metrics_url = server_root(base_url) + metrics_route if metrics_route else None
        tokenizer = load_tokenizer(str(model.hf_dir))
        coro = _drive(config, workload, tokenizer, base_url, server, pump, progress, run_dir, metrics_url, state)
        from benchctl.serving.client import run_event_loop

        run_event_loop(coro)
        _stop(state.get("scraper"))
        if state.get("scraper") is not None:  # one last sample, after the last request: the state the run left
            _final_scrape(metrics_url, run_dir / "server_metrics.jsonl", state["t0"], config.api_key)
        pump.close()
    except ServerFailed as e:
        _stop(state.get("scraper"))
        pump.close()
        finalize(run, run_dir, sink.rows, config, status="failed", error=str(e))
        raise RunFailed(f"{backend.name} server failed: {e}", run_dir, e.log_tail) from None
    except BaseException as e:  # Ctrl-C or a harness bug: stop everything, keep what was measured
        _stop(state.get("scraper"))
        try:
            pump.close()
        finally:
            finalize(run, run_dir, sink.rows, config, status="failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        if server is not None:
            code = server.stop()
            state.setdefault("server_exit_code", code)
        sink.close()
    rows = sink.rows
    errors = collections.Counter(_error_kind(r["error"]) for r in rows if r.get("error"))
    run["serving_stats"] = {"model_name": state.get("model_name"), "warmup": state.get("warmup"),
                            "peak_in_flight": state.get("peak_in_flight"), "failures_by_error": dict(errors),
                            "client_processes": state.get("client_processes", {"processes": 1}),
                            "servers": _per_server(rows) if config.extra_base_urls else None,
                            "server_metrics": summarize_series(run_dir / "server_metrics.jsonl")}
    series = run["serving_stats"]["server_metrics"]["series"]
    run["serving_stats"]["prefix_cache"] = prefix_cache_hit_rate(series)
    run["serving_stats"]["spec_decode"] = server_spec_decode(series)
    died = state.get("server_died")
    finalize(run, run_dir, rows, config, status="failed" if died else "completed", error=died)
    if died:
        raise RunFailed(f"{backend.name} server failed mid-run: {died}", run_dir, server.log_tail() if server else "")
    return run_dir


async def _drive(config: RunConfig, workload: Workload, tokenizer, base_url: str, server, pump: RecordPump,
                 progress: Progress, run_dir: Path, metrics_url: str | None, state: dict) -> None:
    import aiohttp

    from benchctl.serving.client import ClientOptions, LoadClient
    from benchctl.serving.launch import ServerFailed

    max_concurrency = workload.schedule.get("max_concurrency")
    options = ClientOptions(base_url=base_url, extra_base_urls=tuple(config.extra_base_urls),
                            model_name=config.model, endpoint=config.endpoint,
                            api_key=config.api_key, request_timeout_s=config.request_timeout_s,
                            max_concurrency=max_concurrency)
    client = LoadClient(options, tokenizer)
    await client.open(max_concurrency or len(workload.requests))
    watcher = None
    try:
        try:
            served = await client.list_models()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError):
            served = []  # no usable /v1/models: send the name the user gave
        options.model_name = config.model if config.model in served or not served else served[0]
        state["model_name"] = options.model_name
        if config.warmup_requests:
            progress.stage(f"warming up with {config.warmup_requests} requests")
            warm = await client.warmup(workload.requests, config.warmup_requests)
            failed = [r for r in warm if r["error"]]
            state["warmup"] = {"requests": len(warm), "failed": len(failed)}
            if len(failed) == len(warm):
                raise ServerFailed(f"every warm-up request failed; first error: {failed[0]['error']}",
                                   server.log_tail() if server else "")
        sharded = None
        if config.client_processes > 1:
            from benchctl.serving.shards import ShardedClient

            progress.stage(f"starting {config.client_processes} load client processes")
            tokenizer_dir = str(tokenizer.model_dir) if tokenizer is not None else None
            sharded = await asyncio.get_running_loop().run_in_executor(
                None, lambda: ShardedClient(options, workload.requests, config.client_processes, tokenizer_dir))
            state["sharded"] = sharded
        t0 = state["t0"] = time.monotonic() + START_LEAD_S
        if metrics_url:
            state["scraper"] = _start_scraper(metrics_url, run_dir / "server_metrics.jsonl", t0, config.api_key)
        if server is not None:
            watcher = asyncio.create_task(_watch(server, sharded or client, state))
        progress.start_requests(len(workload.requests))
        if sharded is None:
            await client.run(workload.requests, t0, pump.put)
            state["peak_in_flight"] = client.peak_in_flight
        else:
            result = await asyncio.get_running_loop().run_in_executor(None, sharded.run, t0, pump.put)
            state["peak_in_flight"] = result.peak_in_flight
            state["client_processes"] = {"processes": sharded.n, "died": result.died, "cpu_s": result.cpu_s}
    finally:
        if watcher is not None:
            watcher.cancel()
        if state.get("sharded") is not None:
            state.pop("sharded").close()
        await client.close()


async def _watch(server, client, state: dict) -> None:
    """A launched server that dies mid-run ends the run: in-flight requests fail, unsent ones are recorded failed."""
    while (code := server.exit_code()) is None:
        await asyncio.sleep(0.2)
    state["server_died"] = f"server exited with code {code} during the run"
    client.stop(state["server_died"])


def _start_scraper(url: str, out: Path, t0: float, api_key: str | None) -> subprocess.Popen | None:
    """Only when the URL answers with a Prometheus exposition; the scraper is its own process."""
    from benchctl.serving.scrape import API_KEY_ENV

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            if resp.status != 200:
                return None
    except (urllib.error.URLError, OSError):
        return None
    env = {**os.environ, **({API_KEY_ENV: api_key} if api_key else {})}
    return subprocess.Popen([sys.executable, "-m", "benchctl.serving.scrape", url, str(out), "--t0", repr(t0)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)


def _final_scrape(url: str, out: Path, t0: float, api_key: str | None) -> None:
    from benchctl.serving.scrape import parse_exposition

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    t = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            sample = {"t_s": round(t - t0, 6), "final": True,
                      "metrics": parse_exposition(resp.read().decode("utf-8", errors="replace"))}
    except (urllib.error.URLError, OSError):
        return
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(sample, separators=(",", ":")) + "\n")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
