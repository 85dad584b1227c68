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
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchctl.workload import RequestSpec

FLUSH_S = 0.02  # a child sends its finished records at least this often
READY_TIMEOUT_S = 120.0


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


def _child(k: int, options, tokenizer_dir: str | None, requests: list[RequestSpec], control: mp.Queue,
           out: mp.Queue) -> None:
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

        def watch_stop() -> None:  # a "stop" control message means: send nothing more
            kind, reason = control.get()
            if kind == "stop":
                loop.call_soon_threadsafe(client.stop, reason)

        threading.Thread(target=watch_stop, daemon=True).start()
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


def conversation_groups(requests: Sequence[RequestSpec]) -> list[list[RequestSpec]]:
    """Requests in arrival order, a conversation's turns kept together (a later turn waits for the earlier one's
    answer, so one process must send them all); each single-turn request is a group of its own."""
    groups: dict[str, list[RequestSpec]] = {}
    for r in sorted(requests, key=lambda r: (r.arrival_s if r.after is None else float("inf"))):
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
        self.shares = [[r for group in groups[k::self.n] for r in group] for k in range(self.n)]
        self.pending = [{r.request_id: r for r in share} for share in self.shares]
        self.controls = [ctx.Queue() for _ in range(self.n)]
        self.procs = []
        for k, limit in enumerate(split_concurrency(options.max_concurrency, self.n)):
            child_options = dataclasses.replace(options, max_concurrency=limit)
            proc = ctx.Process(target=_child, name=f"load-client-{k}", daemon=True,
                               args=(k, child_options, tokenizer_dir, self.shares[k], self.controls[k], self.out))
            proc.start()
            self.procs.append(proc)
        self._stopped = self._closed = False
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
                    raise RuntimeError(f"load client processes did not start: {', '.join(dead) or 'timeout'}")
                continue
            if kind == "ready":
                ready.add(k)

    def run(self, t0: float, emit: Callable[[dict], None]) -> ShardResult:
        """Release every process at t0 and pass records to `emit` until all are done or dead (or close())."""
        from benchctl.serving.client import LoadClient

        records = LoadClient(self.options)  # only for the records of requests a dead process never finished
        for control in self.controls:
            control.put(("start", t0))
        done: dict[int, tuple[int, float]] = {}
        died: dict[int, str] = {}
        while len(done) + len(died) < self.n and not self._closed:
            try:
                kind, k, payload = self.out.get(timeout=0.2)
            except queue.Empty:
                for k, proc in enumerate(self.procs):
                    if k in done or k in died or proc.exitcode is None:
                        continue
                    self._drain(emit, done)  # what it sent before dying
                    if k in done:
                        continue
                    died[k] = f"{proc.name} exited with code {proc.exitcode} before finishing"
                    for spec in self.pending[k].values():
                        emit(records.unsent_record(spec, t0, f"load client process died: {died[k]}"))
                    self.pending[k].clear()
                continue
            self._handle(kind, k, payload, emit, done)
        return ShardResult(peak_in_flight=sum(peak for peak, _ in done.values()), died=list(died.values()),
                           cpu_s=sum(cpu for _, cpu in done.values()))

    def _drain(self, emit, done) -> None:
        while True:
            try:
                kind, k, payload = self.out.get_nowait()
            except queue.Empty:
                return
            self._handle(kind, k, payload, emit, done)

    def _handle(self, kind: str, k: int, payload, emit, done) -> None:
        if kind == "records":
            for record in payload:
                self.pending[k].pop(record["request_id"], None)
                emit(record)
        elif kind == "done":
            done[k] = payload

    def stop(self, reason: str) -> None:
        """Send nothing more; unsent requests come back as failed records with `reason`."""
        if not self._stopped:
            self._stopped = True
            for control in self.controls:
                control.put(("stop", reason))

    def close(self) -> None:
        self._closed = True
        for control in self.controls:
            control.put(("abort", None))  # a process still waiting for its start
            control.cancel_join_thread()
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
