"""Helpers for the serving tests: the deterministic fake server in its own process, and a direct client driver."""

from __future__ import annotations

import math
import time

from benchctl.serving.bench import FakeServerProcess, fake_requests  # noqa: F401 (re-exported)
from benchctl.serving.client import ClientOptions, LoadClient, run_event_loop
from benchctl.workload import RequestSpec


def run_client(
    base_url: str,
    requests: list[RequestSpec],
    max_concurrency: int | None = None,
    timeout_s: float | None = 30.0,
    endpoint: str = "completions",
    tokenizer=None,
    lead_s: float = 0.05,
    warmup: int = 0,
) -> tuple[list[dict], float, LoadClient]:
    """Records (as the client emits them, no derived latencies) in emit order, t0, and the client.
    `warmup` requests first open that many pooled connections, as --warmup-requests does."""
    out: list[dict] = []
    client = LoadClient(
        ClientOptions(
            base_url=base_url,
            model_name="fake-model",
            endpoint=endpoint,
            request_timeout_s=timeout_s,
            max_concurrency=max_concurrency,
        ),
        tokenizer,
    )
    box: list[float] = []

    async def go() -> None:
        await client.open(max_concurrency or len(requests))
        try:
            if warmup:
                await client.warmup(requests, warmup)
            box.append(time.monotonic() + lead_s)
            await client.run(requests, box[0], out.append)
        finally:
            await client.close()

    run_event_loop(go())
    return out, box[0], client


def spec(i: int, output_len: int = 4, prompt: str = "hi", arrival_s: float = 0.0) -> RequestSpec:
    return RequestSpec(f"req-{i:05d}", [1], prompt, output_len, arrival_s)


def close(measured: float, expected: float, abs_tol: float = 0.002, rel_tol: float = 0.02) -> bool:
    """The issue's bar: within 2 ms or 2%, whichever is looser."""
    return math.isclose(measured, expected, abs_tol=abs_tol, rel_tol=rel_tol)


class MisbehavingServerProcess:
    """tests/harness/fakes_serving/misbehaving_server.py on a free port; `events()` is what it noted."""

    def __init__(self) -> None:
        import subprocess
        import sys
        from pathlib import Path

        script = Path(__file__).with_name("misbehaving_server.py")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "0"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"misbehaving server did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[-1])}"

    def events(self) -> list[dict]:
        import json
        import urllib.request

        with urllib.request.urlopen(self.base_url + "/debug/events", timeout=30) as resp:
            return json.loads(resp.read())

    def events_of(self, request_ids: list[str], timeout_s: float = 10.0) -> dict[str, dict]:
        """Events by request id, waiting until each of `request_ids` has one (the server notes a hang-up late)."""
        deadline = time.monotonic() + timeout_s
        while True:
            events = {e["request"]: e for e in self.events()}
            if all(r in events for r in request_ids) or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def __enter__(self) -> MisbehavingServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
