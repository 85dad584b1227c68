"""A fake engine for sweep tests: instant, deterministic timings, no model (registered via BENCHCTL_BACKENDS)."""

from __future__ import annotations

from backends._common import record
from benchctl.backend import Backend, Capabilities

BACKEND = Backend(name="fake", description="synthetic timings for tests", worker="tests.harness.sweep_fakes:FakeWorker",
                  capabilities=Capabilities(arrivals=True, per_token_times=True),
                  engine_args={"step_ms": "simulated time per output token"})


class FakeWorker:
    def load(self, model: dict, options: dict) -> dict:
        self.step_s = float((options.get("engine_args") or {}).get("step_ms", 10)) / 1000
        return {"engine": "fake", "versions": {}}

    def run(self, requests: list[dict], ctx) -> dict:
        for r in requests:
            start = r["arrival_s"]
            times = [start + self.step_s * (i + 1) for i in range(r["output_len"])]
            ctx.emit(record(r, output_tokens=r["output_len"], start_s=start, first_token_s=times[0],
                            finish_s=times[-1], token_times_s=times))
        return {"fake": True}
