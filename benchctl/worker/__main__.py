"""Worker process entry: `python -m benchctl.worker MODULE:CLASS`.

The class has `load(model: dict, options: dict) -> dict` (engine info: versions, device, config) and
`run(requests: list[dict], ctx: RunContext) -> dict` (engine stats), calling `ctx.emit(record)` as each
request finishes.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
import traceback

from benchctl.worker.admission import Admission
from benchctl.worker.children import kill_own_group_on_sigterm
from benchctl.worker.protocol import PROTOCOL_VERSION, Channel


class RunContext:
    def __init__(self, channel: Channel, requests: list[dict], max_concurrency: int | None):
        self._channel = channel
        self.admission = Admission(requests, max_concurrency)
        self.t0 = time.monotonic()

    def now(self) -> float:
        """Seconds since the run started (the time base of every record)."""
        return time.monotonic() - self.t0

    def emit(self, record: dict) -> None:
        self._channel.send({"event": "record", "record": record})

    def emit_step(self, step: dict) -> None:
        """One engine step's statistics (batch, KV use, time split), for steps.jsonl."""
        self._channel.send({"event": "step", "step": step})


def _load_worker(target: str):
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)()


def _run_profiled(worker, requests: list[dict], ctx: RunContext, trace_path: str) -> dict:
    """The same run under torch.profiler (CPU, and CUDA when present); the Chrome trace goes to trace_path."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, record_shapes=False) as prof:
        with record_function("worker.run"):
            stats = worker.run(requests, ctx)
    prof.export_chrome_trace(trace_path)
    return stats


def main(argv: list[str]) -> int:
    kill_own_group_on_sigterm()  # the harness died (parent-death signal) or stops us: the engine's processes too
    channel = Channel()
    try:
        worker = _load_worker(argv[1])
        while (message := channel.receive()) is not None:
            op = message.get("op")
            if op == "load":
                info = worker.load(message["model"], message.get("options", {}))
                info.setdefault("python", sys.executable)
                info.setdefault("python_version", platform.python_version())
                channel.send({"event": "ready", "protocol": PROTOCOL_VERSION, "info": info})
            elif op == "run":
                ctx = RunContext(channel, message["requests"], message.get("max_concurrency"))
                trace_path = message.get("torch_trace")
                if trace_path:
                    stats = _run_profiled(worker, message["requests"], ctx, trace_path)
                else:
                    stats = worker.run(message["requests"], ctx)
                channel.send({"event": "done", "stats": stats or {}, "duration_s": ctx.now()})
            elif op == "shutdown":
                return 0
            else:
                raise ValueError(f"unknown op {op!r}")
    except BaseException as e:  # report anything, including KeyboardInterrupt, then exit non-zero
        channel.send({"event": "fatal", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
