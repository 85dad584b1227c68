"""The load generator on one node: a Ray actor running today's load client over its share of the schedule.

The actor is threaded (several of its methods run at once): the client's event loop has a thread of its own
(or, with --client-processes P > 1, benchctl.serving.shards runs P processes on this node), `next_batch` blocks
until records are there, and `stop`/`abort` reach the loop from any thread. Records wait in a queue until the
driver pulls them (one outstanding `next_batch` per node), each tagged with this node and its clock.

The actor imports nothing of Ray itself; the driver wraps it with ray.remote.
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BATCH_MAX = 500  # records per next_batch reply: a few hundred kB at most through Ray's object store
MIN_INTERVAL_S = 0.02  # between replies: at most ~50 pulls a second per node, whatever the rate
READY_TIMEOUT_S = 120.0


class GeneratorActor:
    def __init__(self) -> None:
        self.records: queue.SimpleQueue = queue.SimpleQueue()
        self.done: dict | None = None  # set once every record of the share is in `records`
        self._done_event = threading.Event()
        self._started = threading.Event()
        self._ready = threading.Event()
        self._start_t0: float | None = None
        self._tag: dict = {}
        self._last_reply = 0.0
        self._client: Any = None
        self._sharded: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._aborted: str | None = None
        self._wake: asyncio.Event | None = None
        self._cpu0 = 0.0

    # -- setup (before t0) --------------------------------------------------------------------------------------

    def setup(self, options, requests: list, processes: int, tokenizer_json: bytes | None, warmup: int) -> dict:
        """Open this node's connections (and warm them up); returns where it runs."""
        from importlib.metadata import PackageNotFoundError, version

        import ray

        try:
            benchctl_version: str | None = version("benchctl")
        except PackageNotFoundError:
            benchctl_version = None
        tokenizer_dir = _tokenizer_dir(tokenizer_json)
        self.options, self.requests = options, requests
        if processes > 1:  # P processes on this node, as --client-processes runs them on one host
            from benchctl.serving.shards import ShardedClient

            self._sharded = ShardedClient(options, requests, processes, tokenizer_dir)
        else:
            threading.Thread(
                target=self._loop_main, args=(tokenizer_dir, warmup), name="load-client", daemon=True
            ).start()
            if not self._ready.wait(READY_TIMEOUT_S) or self._error is not None:
                raise RuntimeError(f"the load client did not start: {self._error!r}")
        ctx = ray.get_runtime_context()
        return {
            "node_id": ctx.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "benchctl_version": benchctl_version,
            "processes": self._sharded.n if self._sharded is not None else 1,
            "max_concurrency": options.max_concurrency,
            "requests": len(requests),
        }

    def _loop_main(self, tokenizer_dir: str | None, warmup: int) -> None:
        from benchctl.serving.client import LoadClient, run_event_loop

        async def main() -> None:
            tokenizer = None
            if tokenizer_dir:
                from benchctl.workload import load_tokenizer

                tokenizer = load_tokenizer(tokenizer_dir)
            self._client = client = LoadClient(self.options, tokenizer)
            self._loop = asyncio.get_running_loop()
            start = asyncio.Event()
            self._wake = start
            try:
                await client.open(self.options.max_concurrency or max(len(self.requests), 1))
                if warmup and self.requests:
                    await client.warmup(self.requests, warmup)  # this node's own connections, not the driver's
            except BaseException as e:
                self._error = e
                raise
            finally:
                self._ready.set()
            await start.wait()
            try:
                if self._start_t0 is not None and self._aborted is None:  # else aborted before the start
                    await client.run(self.requests, self._start_t0, self._emit)
            finally:
                await client.close()

        try:
            run_event_loop(main())
        except BaseException as e:  # noqa: BLE001 - reported through done / next_batch
            self._error = self._error or e
        self._finish(self._client.peak_in_flight if self._client is not None else 0, [], 0.0)

    def _emit(self, record: dict) -> None:
        record["extra"] = {**(record.get("extra") or {}), "generator": self._tag}
        self.records.put(record)

    def _finish(self, peak: int, died: list[str], child_cpu_s: float) -> None:
        if self._done_event.is_set():
            return
        self.done = {
            "peak_in_flight": peak,
            "died": died,
            "cpu_s": time.process_time() - self._cpu0 + child_cpu_s,
            "error": repr(self._error) if self._error is not None else None,
        }
        self._done_event.set()

    # -- the clock ----------------------------------------------------------------------------------------------

    def clock_now(self) -> float:
        return time.monotonic()

    def measure_clock(self, host: str, port: int) -> dict | None:
        from benchctl.distributed.clock import measure_udp

        offset = measure_udp(host, port)
        return offset.to_json() if offset is not None else None

    # -- the run ------------------------------------------------------------------------------------------------

    def start(self, node_t0: float, tag: dict) -> None:
        """Send the share at node_t0 + arrival_s (node_t0: the driver's t0 on this node's clock)."""
        self._tag, self._start_t0 = tag, node_t0
        self._cpu0 = time.process_time()
        self._started.set()
        if self._sharded is not None:
            threading.Thread(target=self._run_sharded, args=(node_t0,), name="shards", daemon=True).start()
        self._wake_loop()

    def _wake_loop(self) -> None:
        if self._loop is not None and self._wake is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop has already finished
                pass

    def _run_sharded(self, node_t0: float) -> None:
        peak, died, cpu = 0, [], 0.0
        try:
            result = self._sharded.run(node_t0, self._emit)
            peak, died, cpu = result.peak_in_flight, result.died, result.cpu_s
        except BaseException as e:  # noqa: BLE001 - the driver records what is missing
            self._error = e
        finally:
            self._sharded.close()
            self._finish(peak, died, cpu)

    def next_batch(self, wait_s: float) -> tuple[list[dict], dict | None]:
        """Up to BATCH_MAX records (waiting up to wait_s for the first), and `done` once nothing more will come."""
        batch: list[dict] = []
        delay = MIN_INTERVAL_S - (time.monotonic() - self._last_reply)
        if delay > 0:
            time.sleep(delay)
        try:
            batch.append(self.records.get(timeout=wait_s))
        except queue.Empty:
            pass
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self.records.get_nowait())
            except queue.Empty:
                break
        self._last_reply = time.monotonic()
        finished = self._done_event.is_set() and self.records.empty()
        return batch, (self.done if finished else None)

    def stop(self, reason: str) -> None:
        """Send nothing more; unsent requests come back as failed records with `reason`."""
        if self._sharded is not None:
            self._sharded.stop(reason)
        elif self._loop is not None and self._client is not None:
            self._loop.call_soon_threadsafe(self._client.stop, reason)

    def abort(self, reason: str) -> None:
        """Cut off what is in flight (Ctrl-C); every request still gets its record (the driver's, for requests
        a share aborted before its start never sent)."""
        self._aborted = reason
        if self._sharded is not None:
            self._sharded.close(reason)
            if not self._started.is_set():
                self._finish(0, [], 0.0)
            return
        if self._loop is not None and self._client is not None:
            try:
                self._loop.call_soon_threadsafe(self._client.interrupt, reason)
            except RuntimeError:  # the loop has already finished
                pass
        self._wake_loop()


def _tokenizer_dir(tokenizer_json: bytes | None) -> str | None:
    """The driver's tokenizer.json, written to a folder of this node (the model need not be installed here)."""
    if tokenizer_json is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="benchctl-tokenizer-"))
    (folder / "tokenizer.json").write_bytes(tokenizer_json)
    return str(folder)
