"""Helpers for the serving tests: the deterministic fake server in its own process, and a direct client driver."""

from __future__ import annotations

import math
import time

from benchctl.serving.bench import FakeServerProcess, fake_requests  # noqa: F401 (re-exported)
from benchctl.serving.client import ClientOptions, LoadClient, run_event_loop
from benchctl.workload import RequestSpec


def run_client(base_url: str, requests: list[RequestSpec], max_concurrency: int | None = None,
               timeout_s: float = 30.0, endpoint: str = "completions", tokenizer=None,
               lead_s: float = 0.05, warmup: int = 0) -> tuple[list[dict], float, LoadClient]:
    """Records (as the client emits them, no derived latencies) in emit order, t0, and the client.
    `warmup` requests first open that many pooled connections, as --warmup-requests does."""
    out: list[dict] = []
    client = LoadClient(ClientOptions(base_url=base_url, model_name="fake-model", endpoint=endpoint,
                                      request_timeout_s=timeout_s, max_concurrency=max_concurrency), tokenizer)
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
