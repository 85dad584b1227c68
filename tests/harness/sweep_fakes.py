"""A fake engine for sweep tests: instant, deterministic timings, no model (registered via BENCHCTL_BACKENDS).

Engine args: step_ms (time per output token), fail (the run raises), hang_s (the run blocks that long, after
writing the worker's pid to pid_file, so a test can check the process is gone after the cell was killed)."""

from __future__ import annotations

import os
import time

from backends._common import record
from benchctl.backend import Backend, Capabilities

BACKEND = Backend(
    name="fake",
    description="synthetic timings for tests",
    worker="tests.harness.sweep_fakes:FakeWorker",
    capabilities=Capabilities(arrivals=True, per_token_times=True),
    engine_args={
        "step_ms": "simulated time per output token",
        "fail": "raise in run",
        "hang_s": "block in run",
        "pid_file": "where a hanging run writes its pid",
    },
)


class FakeWorker:
    def load(self, model: dict, options: dict) -> dict:
        self.args = options.get("engine_args") or {}
        self.step_s = float(self.args.get("step_ms", 10)) / 1000
        return {"engine": "fake", "versions": {}}

    def run(self, requests: list[dict], ctx) -> dict:
        if self.args.get("fail"):
            raise RuntimeError("the fake engine was told to fail")
        if self.args.get("hang_s"):
            with open(self.args["pid_file"], "w") as f:
                f.write(str(os.getpid()))
            time.sleep(float(self.args["hang_s"]))
        for r in requests:
            start = r["arrival_s"]
            times = [start + self.step_s * (i + 1) for i in range(r["output_len"])]
            ctx.emit(
                record(
                    r,
                    output_tokens=r["output_len"],
                    start_s=start,
                    first_token_s=times[0],
                    finish_s=times[-1],
                    token_times_s=times,
                )
            )
        return {"fake": True}
