"""How much the load client itself costs: `benchctl bench-client`.

Two measurements against benchctl.serving.fake_server in a separate process, with the client exactly as a
serving run uses it (one process, or --client-processes N as benchctl.serving.shards runs it) (schedule,
semaphore, streaming parse, records through the pump to an fsynced JSONL):
- throughput: an instant server (all chunks at once) and an unbounded schedule -> requests/s the client sustains;
- added latency: a server that sends each chunk at a known time and remembers it; for every chunk, the client's
  timestamp minus the server's send time (both time.monotonic, one clock on Linux) is what the client adds.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from benchctl import metrics
from benchctl.run.config import Progress
from benchctl.run.sink import RecordPump, RecordSink
from benchctl.serving.client import ClientOptions, LoadClient, run_event_loop
from benchctl.serving.shards import ShardedClient
from benchctl.workload import RequestSpec, arrival_times


class FakeServerProcess:
    """`python -m benchctl.serving.fake_server` on a free port; a context manager that always stops it."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchctl.serving.fake_server", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        if self.proc.stdout is None:  # stdout=PIPE always gives a pipe; this narrows the type
            self.stop()
            raise RuntimeError("fake server started without a stdout pipe")
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.port = int(line.split()[-1])
        self.base_url = f"http://127.0.0.1:{self.port}"

    def timings(self) -> dict:
        with urllib.request.urlopen(self.base_url + "/debug/timings", timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> FakeServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fake_requests(
    n: int, output_len: int, rate: float = math.inf, seed: int = 0, prompt: str = "hi"
) -> list[RequestSpec]:
    arrivals = arrival_times(n, rate, kind="poisson", seed=seed)
    return [RequestSpec(f"req-{i:05d}", [1], prompt, output_len, float(t)) for i, t in enumerate(arrivals)]


def drive(
    base_url: str,
    requests: list[RequestSpec],
    max_concurrency: int | None,
    out_dir: Path,
    endpoint: str = "completions",
    timeout_s: float = 60.0,
    processes: int = 1,
) -> tuple[list[dict], float, float]:
    """Run the client as a serving run does (over `processes` processes when > 1); returns (finished rows, t0 on
    time.monotonic, CPU seconds the client processes spent in the run: 0 with one process)."""
    sink = RecordSink(out_dir / "requests.jsonl", Progress())
    pump = RecordPump(sink)
    options = ClientOptions(
        base_url=base_url,
        model_name="fake-model",
        endpoint=endpoint,
        request_timeout_s=timeout_s,
        max_concurrency=max_concurrency,
    )
    t0_box: list[float] = []
    shard_cpu_s = 0.0
    try:
        if processes > 1:
            sharded = ShardedClient(options, requests, processes)
            try:
                t0_box.append(time.monotonic() + 0.05)
                shard_cpu_s = sharded.run(t0_box[0], pump.put).cpu_s
            finally:
                sharded.close()
        else:
            client = LoadClient(options)

            async def go() -> None:
                await client.open(max_concurrency or len(requests))
                try:
                    t0_box.append(time.monotonic() + 0.05)
                    await client.run(requests, t0_box[0], pump.put)
                finally:
                    await client.close()

            run_event_loop(go())
    finally:
        pump.close()
        sink.close()
    return sink.rows, t0_box[0], shard_cpu_s


def client_lag_s(rows: list[dict], t0: float, timings: dict) -> list[float]:
    """Per chunk: client timestamp - server send time (seconds)."""
    lags = []
    for row in rows:
        sent = timings.get(row["request_id"], {}).get("chunks", [])
        for t_client, t_server in zip(row.get("token_times_s") or [], sent):
            lags.append(t0 + t_client - t_server)
    return lags


def bench_client(
    num_requests: int = 5000,
    concurrency: int = 64,
    output_len: int = 8,
    ttft_ms: float = 20.0,
    itl_ms: float = 5.0,
    latency_requests: int = 200,
    latency_rate: float = 50.0,
    processes: int = 1,
) -> dict:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        with FakeServerProcess("--raw") as server:
            drive(
                server.base_url,
                fake_requests(min(200, num_requests), output_len),
                concurrency,
                Path(tmp),
                processes=processes,
            )  # warm-up
            server_cpu0 = sum(psutil.Process(server.proc.pid).cpu_times()[:2])
            # this process (event loop or record receiver, record pump) and the client processes' run
            cpu0 = time.process_time()
            rows, _, shard_cpu_s = drive(
                server.base_url, fake_requests(num_requests, output_len), concurrency, Path(tmp), processes=processes
            )
            client_cpu_s = time.process_time() - cpu0 + shard_cpu_s
            server_cpu_s = sum(psutil.Process(server.proc.pid).cpu_times()[:2]) - server_cpu0
        throughput = metrics.summarize(rows)
        with FakeServerProcess("--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--spin-us", "300") as server:
            reqs = fake_requests(latency_requests, output_len, rate=latency_rate)
            lat_rows, t0, _ = drive(server.base_url, reqs, None, Path(tmp), processes=processes)
            lags = client_lag_s(lat_rows, t0, server.timings())
        latency = metrics.summarize(lat_rows)
    return {
        "throughput": {
            "requests": num_requests,
            "max_concurrency": concurrency,
            "output_tokens": output_len,
            "client_processes": processes,
            "completed": throughput["completed"],
            "failed": throughput["failed"],
            "duration_s": throughput["duration_s"],
            "request_throughput": throughput["request_throughput"],
            "chunks_per_s": throughput["request_throughput"] * output_len,
            # Contention-proof: CPU seconds the client spent per request, and what one core allows.
            "client_cpu_us_per_request": 1e6 * client_cpu_s / num_requests,
            "client_capacity_req_s_per_core": num_requests / client_cpu_s if client_cpu_s else math.inf,
            "server_cpu_us_per_request": 1e6 * server_cpu_s / num_requests,
            "load_average_1m": load_before,
        },
        "latency": {
            "requests": latency_requests,
            "request_rate": latency_rate,
            "server_ttft_ms": ttft_ms,
            "server_itl_ms": itl_ms,
            "failed": latency["failed"],
            "client_lag_ms": {k: v * 1000 for k, v in metrics.distribution(lags).items() if k != "count"},
            "chunks": len(lags),
            "measured_ttft_ms": {k: latency["ttft_s"][k] * 1000 for k in ("mean", "p50", "p99")},
            "measured_tpot_ms": {k: latency["tpot_s"][k] * 1000 for k in ("mean", "p50", "p99")},
            "measured_itl_ms": {k: latency["itl_s"][k] * 1000 for k in ("mean", "p50", "p99")},
        },
    }
