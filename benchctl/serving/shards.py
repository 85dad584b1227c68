"""The load client over several processes, for request rates one Python event loop cannot keep up with.

One asyncio loop costs a few hundred microseconds of CPU per streamed request (HTTP, SSE parsing, timestamps),
so a single process tops out near 2,000 requests/s per core. `--client-processes N` splits the schedule across N
processes: request i goes to process i % N (a conversation's turns go where its first turn goes), each keeps the
*absolute* arrival times of the shared t0 (one time.monotonic clock for the whole machine on Linux), and a
max-concurrency cap C is split so the shares add up to C (a slot free in one process cannot be used by another;
with N > 1 the cap is never exceeded, but can be under-used). Records flow back to the parent over a
multiprocessing queue in small batches and go through the same RecordSink as single-process runs: on disk as
they finish, a crash loses nothing already received.

A process that dies takes only its own unfinished requests with it: the parent records each of them as failed.
close() before the end (Ctrl-C) tells every process at once to cut its requests off and flush its records, and
waits for all of them together (CLOSE_GRACE_S at most, then terminates the rest): every request still has one
record, finished or failed with the reason.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchctl.workload import RequestSpec

FLUSH_S = 0.02  # a child sends its finished records at least this often
READY_TIMEOUT_S = 120.0
CLOSE_GRACE_S = 1.0  # close(): how long the processes get to flush and exit before they are terminated


@dataclass(slots=True)
class ShardResult:
    peak_in_flight: int  # the sum of the processes' peaks (an upper bound of the true peak)
    died: list[str]  # one line per process that exited without finishing
    cpu_s: float  # CPU seconds the processes spent from t0 to their last record (startup excluded)


def split_concurrency(limit: int | None, n: int) -> list[int | None]:
    """C over n processes: shares that add up to C, none below 1 (so n is capped at C by the caller)."""
    if not limit:
        return [None] * n
    return [limit // n + (1 if k < limit % n else 0) for k in range(n)]


def _child(
    k: int, options, tokenizer_dir: str | None, requests: list[RequestSpec], control: mp.Queue, out: mp.Queue
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the run stops
    import asyncio

    from benchctl.serving.client import LoadClient, run_event_loop

    tokenizer = None
    if tokenizer_dir:
        from benchctl.workload import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_dir)
    client = LoadClient(options, tokenizer)
    buffer: list[dict] = []

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if buffer:
                out.put(("records", k, buffer[:]))
                buffer.clear()

    async def main() -> None:
        await client.open(options.max_concurrency or max(len(requests), 1))
        loop = asyncio.get_running_loop()
        out.put(("ready", k, None))
        kind, t0 = await loop.run_in_executor(None, control.get)
        cpu0 = time.process_time()
        if kind != "start":
            await client.close()
            return

        def watch_control() -> None:  # "stop": send nothing more; "abort": cut off what is in flight, then end
            while True:
                kind, reason = control.get()
                try:
                    loop.call_soon_threadsafe(client.stop if kind == "stop" else client.interrupt, reason)
                except RuntimeError:  # the loop has already finished
                    return
                if kind != "stop":
                    return

        threading.Thread(target=watch_control, daemon=True).start()
        flush = asyncio.create_task(flusher())
        try:
            await client.run(requests, t0, buffer.append)
        finally:
            flush.cancel()
            await client.close()
        if buffer:
            out.put(("records", k, buffer[:]))
        out.put(("done", k, (client.peak_in_flight, time.process_time() - cpu0)))

    run_event_loop(main())
    # Every record is in the pipe once the queue's feeder has flushed: then leave without the interpreter's
    # teardown, which took ~1 s of CPU per process on a loaded 2-core machine (4 processes exiting at once).
    out.close()
    out.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def conversation_groups(requests: Sequence[RequestSpec]) -> list[list[RequestSpec]]:
    """Requests in arrival order, a conversation's turns kept together (a later turn waits for the earlier one's
    answer, so one process must send them all); each single-turn request is a group of its own."""
    groups: dict[str, list[RequestSpec]] = {}
    for r in sorted(requests, key=lambda r: r.arrival_s if r.after is None else float("inf")):
        groups.setdefault(r.conversation_id or r.request_id, []).append(r)
    return list(groups.values())


class ShardedClient:
    """Start the processes (each opens its connections), then `run(t0, emit)` from any thread."""

    def __init__(self, options, requests: Sequence[RequestSpec], processes: int, tokenizer_dir: str | None = None):
        import dataclasses

        self.options = options
        groups = conversation_groups(requests)
        self.n = max(1, min(processes, len(groups) or 1, options.max_concurrency or processes))
        ctx = mp.get_context("spawn")  # the parent has threads (record pump, scraper watcher): never fork it
        self.out: mp.Queue = ctx.Queue()
        self.shares = [[r for group in groups[k :: self.n] for r in group] for k in range(self.n)]
        self.pending = [{r.request_id: r for r in share} for share in self.shares]
        self.controls = [ctx.Queue() for _ in range(self.n)]
        self.procs = []
        for k, limit in enumerate(split_concurrency(options.max_concurrency, self.n)):
            child_options = dataclasses.replace(options, max_concurrency=limit)
            proc = ctx.Process(
                target=_child,
                name=f"load-client-{k}",
                daemon=True,
                args=(k, child_options, tokenizer_dir, self.shares[k], self.controls[k], self.out),
            )
            proc.start()
            self.procs.append(proc)
        self._stopped = self._closed = False
        self._lock = threading.RLock()
        self._running = self._settled = False
        self._emit: Callable[[dict], None] | None = None
        self._t0 = 0.0
        self._reason = "run interrupted"
        self._done: dict[int, tuple[int, float]] = {}
        self._died: dict[int, str] = {}
        self._wait_ready()

    def _wait_ready(self) -> None:
        ready: set[int] = set()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(ready) < self.n:
            try:
                kind, k, _ = self.out.get(timeout=0.5)
            except queue.Empty:
                dead = [p.name for p in self.procs if p.exitcode is not None]
                if dead or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"load client processes did not start: {', '.join(dead) or 'timeout'}") from None
                continue
            if kind == "ready":
                ready.add(k)

    def run(self, t0: float, emit: Callable[[dict], None]) -> ShardResult:
        """Release every process at t0 and pass records to `emit` until all are done or dead (or close()); every
        request gets exactly one record, here or, when run() was left by an exception, from close()."""
        with self._lock:
            self._running, self._emit, self._t0 = True, emit, t0
        for control in self.controls:
            control.put(("start", t0))
        done, died = self._done, self._died
        ended = False
        try:
            while len(done) + len(died) < self.n and not self._closed:
                try:
                    kind, k, payload = self.out.get(timeout=0.2)
                except queue.Empty:
                    for k, proc in enumerate(self.procs):
                        if k in done or k in died or proc.exitcode is None:
                            continue
                        self._drain(emit)  # what it sent before dying
                        if k not in done:
                            died[k] = f"{proc.name} exited with code {proc.exitcode} before finishing"
                    continue
                self._handle(kind, k, payload, emit)
            ended = True
        finally:
            with self._lock:
                self._running = False
                if ended:
                    self._settle()
        return ShardResult(
            peak_in_flight=sum(peak for peak, _ in done.values()),
            died=list(died.values()),
            cpu_s=sum(cpu for _, cpu in done.values()),
        )

    def _settle(self) -> None:
        """Once, after the processes are done, dead or closed: what is left in the queue, then a failed record
        for every request no process recorded."""
        if self._settled or self._emit is None:
            return
        self._settled = True
        from benchctl.serving.client import LoadClient

        self._drain(self._emit)
        records = LoadClient(self.options)  # only to build the records of requests no process finished
        for k, pending in enumerate(self.pending):
            if k in self._died:
                prefix = f"interrupted: {self._reason}; " if self._closed else ""
                reason, kind = f"{prefix}load client process died: {self._died[k]}", "client_process_died"
            elif k not in self._done:
                reason, kind = f"interrupted: {self._reason}", "interrupted"
            else:  # the process finished without recording them: a client bug, but every request is accounted for
                reason, kind = "client error: the load client process sent no record", "client_error"
            for spec in pending.values():
                self._emit(records.unsent_record(spec, self._t0, reason, kind))
            pending.clear()

    def _drain(self, emit) -> None:
        while True:
            try:
                kind, k, payload = self.out.get_nowait()
            except queue.Empty:
                return
            self._handle(kind, k, payload, emit)

    def _handle(self, kind: str, k: int, payload, emit) -> None:
        if kind == "records":
            for record in payload:
                if self.pending[k].pop(record["request_id"], None) is not None:
                    emit(record)
        elif kind == "done":
            self._done[k] = payload

    def stop(self, reason: str) -> None:
        """Send nothing more; unsent requests come back as failed records with `reason`."""
        if not self._stopped:
            self._stopped = True
            for control in self.controls:
                control.put(("stop", reason))

    def interrupt(self, reason: str) -> None:
        """As LoadClient.interrupt: every process sends nothing more and cuts off its requests in flight."""
        if not self._stopped:
            self._stopped = True
            for control in self.controls:
                control.put(("abort", reason))

    def close(self, reason: str = "run interrupted") -> None:
        """End every process (after run() finished, or to stop it early): all are told at once to cut off their
        requests in flight and flush their records, and are waited for together."""
        if self._closed:
            return
        self._reason = reason
        for control in self.controls:
            control.put(("abort", reason))  # waiting for the start: exit; running: interrupt, flush, exit
            control.cancel_join_thread()
        deadline = time.monotonic() + CLOSE_GRACE_S
        while any(p.is_alive() for p in self.procs) and time.monotonic() < deadline:
            with self._lock:
                if not self._running and self._emit is not None:
                    self._drain(self._emit)  # run() was left early: keep the pipes flowing, or a child cannot exit
            time.sleep(0.01)
        alive = [p for p in self.procs if p.is_alive()]
        for proc in alive:
            proc.terminate()
        for proc in alive:
            proc.join(timeout=max(0.0, deadline + 1.0 - time.monotonic()))
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
            if proc.exitcode not in (0, None) and self.procs.index(proc) not in self._done:
                self._died.setdefault(self.procs.index(proc), f"{proc.name} exited with code {proc.exitcode}")
        with self._lock:
            self._closed = True
            if not self._running:
                self._settle()
