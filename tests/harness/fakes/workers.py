"""Fake backend workers for the worker-protocol and runner tests (stdlib only, like a real worker).

Each runs in a real subprocess via `python -m benchctl.worker tests.harness.fakes.workers:Name`. Records carry
synthetic, exactly known timestamps so the derived latencies can be checked by hand:
request i (0-based) starts at arrival_s + 0.001*i, its first token comes TTFT_S later, then one token
every TPOT_S.
"""

from __future__ import annotations

import os
import sys

TTFT_S = 0.125
TPOT_S = 0.03125  # powers of two: the derived ttft/tpot come out exact in floating point


def fake_record(request: dict, index: int) -> dict:
    n = request["output_len"]
    start = request["arrival_s"] + 0.001 * index
    times = [start + TTFT_S + TPOT_S * k for k in range(n)]
    return {
        "request_id": request["request_id"],
        "prompt_tokens": len(request["prompt_token_ids"]),
        "expected_output_tokens": n,
        "output_tokens": n,
        "arrival_s": request["arrival_s"],
        "start_s": start,
        "first_token_s": times[0],
        "finish_s": times[-1],
        "token_times_s": times,
        "extra": {"index": index},
    }


class EchoWorker:
    """Loads instantly and reports every request with the synthetic times above."""

    def load(self, model: dict, options: dict) -> dict:
        self.options = options
        return {"engine": "echo", "model_seen": model.get("name"), "options_seen": options}

    def run(self, requests: list[dict], ctx) -> dict:
        for i, r in enumerate(requests):
            ctx.emit(fake_record(r, i))
        return {"requests_seen": len(requests), "max_concurrency_seen": ctx.admission.max_concurrency}


class StepWorker(EchoWorker):
    """Also reports one engine step per request (for steps.jsonl)."""

    def run(self, requests: list[dict], ctx) -> dict:
        for i, r in enumerate(requests):
            ctx.emit_step({"step": i, "batch_size": 1})
            ctx.emit(fake_record(r, i))
        return {}


class PrintingWorker(EchoWorker):
    """Writes to stdout in every way an engine might: print, sys.stdout.write, and fd 1 directly."""

    def load(self, model: dict, options: dict) -> dict:
        print("hello from load")  # print() in Python
        sys.stdout.write('{"event": "fatal", "error": "forged"}\n')  # protocol-looking text
        sys.stdout.flush()
        os.write(1, b"raw fd1 write without newline")  # a C library writing to fd 1
        return super().load(model, options)

    def run(self, requests: list[dict], ctx) -> dict:
        for i, r in enumerate(requests):
            print(f"progress {i}", end="")  # partial lines must not merge with protocol lines
            os.write(1, b"\n{not json\n")
            ctx.emit(fake_record(r, i))
        sys.stderr.write("stderr line\n")
        return {"printed": True}


class FailingLoadWorker:
    def load(self, model: dict, options: dict) -> dict:
        raise RuntimeError("engine could not start: marker-4711")

    def run(self, requests: list[dict], ctx) -> dict:  # pragma: no cover - never reached
        return {}


class DyingWorker(EchoWorker):
    """Reports two records, then the process vanishes (a segfault or OOM kill, as far as the host knows)."""

    def run(self, requests: list[dict], ctx) -> dict:
        for i, r in enumerate(requests[:2]):
            ctx.emit(fake_record(r, i))
        sys.stderr.write("about to die\n")
        sys.stderr.flush()
        os._exit(3)


class RaisingRunWorker(EchoWorker):
    """Reports one record, then raises: a `fatal` event with the traceback."""

    def run(self, requests: list[dict], ctx) -> dict:
        ctx.emit(fake_record(requests[0], 0))
        raise ValueError("kernel failed on request 2")


class ForgetfulWorker(EchoWorker):
    """Says done without reporting the last request."""

    def run(self, requests: list[dict], ctx) -> dict:
        for i, r in enumerate(requests[:-1]):
            ctx.emit(fake_record(r, i))
        return {}


class StrangerWorker(EchoWorker):
    """Reports a request the harness never sent."""

    def run(self, requests: list[dict], ctx) -> dict:
        ctx.emit(fake_record(requests[0], 0))
        ctx.emit({**fake_record(requests[1], 1), "request_id": "who-is-this"})
        return {}


class FloodWorker(EchoWorker):
    """Reports every record at once, each padded to ~2 KB (far more than a pipe buffer holds), and says in its stats
    when it had written the last one (time.monotonic, the harness's clock too)."""

    def run(self, requests: list[dict], ctx) -> dict:
        import time

        for i, r in enumerate(requests):
            ctx.emit({**fake_record(r, i), "extra": {"index": i, "padding": "x" * 2000}})
        return {"emitted_at": time.monotonic()}


class StallingWorker(EchoWorker):
    """Reports one record (naming its pid), then hangs, as an engine stuck in a kernel would."""

    def run(self, requests: list[dict], ctx) -> dict:
        import time

        ctx.emit({**fake_record(requests[0], 0), "extra": {"pid": os.getpid()}})
        time.sleep(30)
        return {}


def _spawn_grandchild():
    """A process of the worker's own (as vLLM's EngineCore is), in the worker's process group."""
    import subprocess

    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], stdin=subprocess.DEVNULL)


class GroupWorker(EchoWorker):
    """Starts a process of its own, reports one record naming both pids, then works on for a minute."""

    def run(self, requests: list[dict], ctx) -> dict:
        import time

        child = _spawn_grandchild()
        ctx.emit({**fake_record(requests[0], 0), "extra": {"pid": os.getpid(), "child_pid": child.pid}})
        time.sleep(60)
        return {}


class OrphaningWorker(EchoWorker):
    """Starts a process of its own, reports one record naming it, then dies, leaving that process behind."""

    def run(self, requests: list[dict], ctx) -> dict:
        child = _spawn_grandchild()
        ctx.emit({**fake_record(requests[0], 0), "extra": {"pid": os.getpid(), "child_pid": child.pid}})
        os._exit(3)
