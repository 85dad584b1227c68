"""The harness's end of a backend worker: spawn, send commands, read events, notice death.

A thread drains the worker's protocol pipe into a queue as fast as the worker writes, so a harness that is slow to
handle events (an fsync per record on a slow disk) never blocks the engine on a full pipe.
"""

from __future__ import annotations

import math
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

from benchctl.worker.children import die_with_parent
from benchctl.worker.protocol import decode, encode

REPO_ROOT = Path(__file__).resolve().parents[2]


class WorkerDied(RuntimeError):
    """The worker exited or reported a fatal error; `log_tail` holds the end of its stderr."""

    def __init__(self, message: str, log_tail: str = ""):
        super().__init__(message)
        self.log_tail = log_tail


class WorkerStalled(WorkerDied):
    """The worker sent no event for longer than the run allows (a hung engine); it is still running."""


class WorkerProcess:
    def __init__(
        self,
        target: str,
        python: str = sys.executable,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ):
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab") if log_path else open(os.devnull, "wb")
        child_env = {**os.environ, **(env or {})}
        # Another interpreter (an engine's own virtualenv) finds benchctl.worker and backends here.
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH")) if p)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        child_env.setdefault("PYTHONSAFEPATH", "1")  # `python -m` would put the cwd first: its platform.py would run
        # prefix: a wrapper such as `nsys profile ...` that runs the worker under a profiler
        self.proc = subprocess.Popen(
            [*(prefix or []), python, "-m", "benchctl.worker", target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=child_env,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        self._stdin, self._stdout = cast(IO[bytes], self.proc.stdin), cast(IO[bytes], self.proc.stdout)  # PIPEs
        self._lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()  # None: the pipe reached EOF
        self._reader = threading.Thread(target=self._drain, name="worker-pipe", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        try:
            for line in self._stdout:
                self._lines.put(line)
        finally:
            self._lines.put(None)

    def send(self, message: dict[str, Any]) -> None:
        try:
            self._stdin.write(encode(message))
            self._stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died("worker exited before it could receive a command") from None

    def events(self, stall_timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Events until the stream ends; a `fatal` event or an early EOF raises WorkerDied, and no event for
        stall_timeout_s seconds (None or inf: wait for ever) raises WorkerStalled."""
        timeout = stall_timeout_s if stall_timeout_s is not None and math.isfinite(stall_timeout_s) else None
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                self._log.flush()
                raise WorkerStalled(
                    f"no event from the worker for {stall_timeout_s:g} s (--stall-timeout): the engine stalled",
                    self.log_tail(),
                ) from None
            if line is None:
                break
            event = decode(line)
            if event.get("event") == "fatal":
                raise self._died(event.get("error", "worker failed"), event.get("traceback", ""))
            yield event
        self._lines.put(None)  # the end stays visible to the next call
        raise self._died("worker exited unexpectedly")

    def request(self, message: dict[str, Any], expect: str) -> dict[str, Any]:
        self.send(message)
        for event in self.events():
            if event.get("event") == expect:
                return event
        raise AssertionError("unreachable")

    def _died(self, message: str, traceback_text: str = "") -> WorkerDied:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self._log.flush()
        tail = traceback_text or self.log_tail()
        suffix = f" (exit code {code})" if code not in (None, 0, 1) else ""
        return WorkerDied(message + suffix, tail)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the worker's whole process group, whether its leader still runs or not: engines spawn their own
        processes (vLLM's EngineCore), and they outlive a leader that crashed."""
        _kill_group(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.wait()

    def close(self, timeout_s: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            try:
                self.send({"op": "shutdown"})
            except WorkerDied:
                pass
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # whatever the worker left in its group
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
