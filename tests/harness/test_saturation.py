"""Stopping a run early (benchctl/saturation.py): the detector on records of known shape, then against a server with
a known capacity, one slower than the offered load and one faster."""

from __future__ import annotations

import time

import numpy as np

from benchctl.run.sink import finish_record
from benchctl.saturation import SaturationDetector, StopRules, stop_rules, watch
from benchctl.serving.client import ClientOptions, LoadClient, run_event_loop
from benchctl.workload import RequestSpec
from tests.harness.fakes_serving.slot_server import SlotServerProcess


def served(rate: float, capacity: float, service_s: float, n: int, ttft_s: float = 0.05) -> list[dict]:
    """Records of n requests arriving at `rate` (constant) at a FIFO server finishing `capacity` per second."""
    free_at, out = 0.0, []
    for i in range(n):
        arrival = i / rate
        begin = max(arrival, free_at)
        free_at = begin + 1 / capacity
        finish = begin + service_s
        out.append(
            {
                "request_id": f"r{i}",
                "prompt_tokens": 1,
                "expected_output_tokens": 4,
                "output_tokens": 4,
                "arrival_s": arrival,
                "start_s": arrival,
                "first_token_s": begin + ttft_s,
                "finish_s": finish,
                "token_times_s": [begin + ttft_s, finish],
                "error": None,
                "extra": {},
            }
        )
    return sorted(out, key=lambda r: r["finish_s"])


def feed(records: list[dict], rules: StopRules) -> SaturationDetector:
    detector = SaturationDetector([r["arrival_s"] for r in records], rules)
    for r in records:
        if detector.add(r):
            break
    return detector


def test_a_server_slower_than_the_load_is_stopped_and_a_faster_one_is_not():
    slow = feed(served(20.0, 12.0, 0.2, 400), StopRules())
    assert slow.stopped is not None and slow.stopped["reason"] in ("over-saturated", "ttft-growing")
    assert 4.0 <= slow.stopped["t_s"] < 8.0, slow.stopped  # 0.2 s to settle, then two or three windows of 2 s
    fast = feed(served(20.0, 30.0, 0.2, 400), StopRules())
    assert fast.stopped is None and len(fast.checks) > 5
    assert max(c["arrived"] - c["finished"] for c in fast.checks) <= 2  # the deficit it did not act on


def test_ttft_growing_without_bound_is_a_stop_even_when_requests_keep_finishing():
    # A server that finishes as many as arrive, but each waits longer for its first token (a queue in front of a
    # fixed-length decode); the backlog test sees nothing wrong
    records = []
    for i in range(300):
        arrival = i / 20
        ttft = 0.05 + 0.004 * i
        records.append(
            {
                "request_id": f"r{i}",
                "output_tokens": 2,
                "expected_output_tokens": 2,
                "arrival_s": arrival,
                "start_s": arrival,
                "first_token_s": arrival + ttft,
                "finish_s": arrival + 0.2,
                "token_times_s": [arrival + ttft, arrival + 0.2],
                "error": None,
                "prompt_tokens": 1,
            }
        )
    detector = feed(records, StopRules())
    assert detector.stopped is not None and detector.stopped["reason"] == "ttft-growing", detector.checks[-3:]
    flat = feed(
        [
            {**r, "first_token_s": r["arrival_s"] + 0.05 + 0.01 * (i % 3), "token_times_s": None}
            for i, r in enumerate(records)
        ],
        StopRules(),
    )
    assert flat.stopped is None


def test_the_error_rate_stop_counts_the_last_finished_requests():
    records = served(10.0, 100.0, 0.1, 100)
    for r in records[30:]:
        if int(r["request_id"][1:]) % 3 == 0:
            r["error"] = "HTTP 500: boom"
    stopped = feed(records, StopRules(on_saturation=False, max_error_rate=0.2)).stopped
    assert (
        stopped is not None
        and stopped["reason"] == "error-rate"
        and "more than --max-error-rate 0.2" in stopped["detail"]
    )
    assert feed(records, StopRules(on_saturation=False, max_error_rate=0.5)).stopped is None
    assert feed(records, StopRules(on_saturation=False)).stopped is None
    assert stop_rules({"stop": {"on_saturation": True, "max_error_rate": 0.1}}) == StopRules(
        on_saturation=True, max_error_rate=0.1
    )
    assert stop_rules({}) is None


def drive_with_stop(base_url: str, rate: float, seconds: float) -> tuple[list[dict], SaturationDetector, float]:
    n = int(rate * seconds)
    requests = [RequestSpec(f"req-{i:05d}", [1], "hi", 10, i / rate) for i in range(n)]
    detector = SaturationDetector([r.arrival_s for r in requests])
    client = LoadClient(ClientOptions(base_url=base_url, model_name="fake-model", request_timeout_s=60))
    out: list[dict] = []

    async def go() -> None:
        await client.open(n)
        try:
            await client.warmup(requests, 4)
            await client.run(requests, time.monotonic() + 0.05, watch(detector, out.append, client.interrupt))
        finally:
            await client.close()

    began = time.monotonic()
    run_event_loop(go())
    return [finish_record(r) for r in out], detector, time.monotonic() - began


def test_a_run_against_a_server_that_cannot_keep_up_stops_and_keeps_its_records():
    # 2 slots of 0.2 s requests (10 tokens 20 ms apart) serve 10 req/s; 25 req/s are offered for 8 s
    with SlotServerProcess(slots=2, ttft_ms=20, itl_ms=20) as server:
        rows, detector, wall_s = drive_with_stop(server.base_url, 25.0, 8.0)
    assert detector.stopped is not None and detector.stopped["reason"] in ("over-saturated", "ttft-growing")
    stop_s = detector.stopped["t_s"]
    assert 3.0 < stop_s < 6.5 and wall_s < 8.0  # without the stop the backlog would take ~20 s to serve
    assert len(rows) == 200  # every request has its record
    done = [r for r in rows if r["error"] is None]
    assert done and all(r["finish_s"] <= stop_s + 0.1 for r in done)  # nothing completes after the stop
    failed = [r for r in rows if r["error"] is not None]
    assert failed and all("stopped early" in r["error"] for r in failed)
    assert np.median([r["ttft_s"] for r in done[-10:]]) > 5 * np.median([r["ttft_s"] for r in done[:5]])


def test_a_run_against_a_server_with_room_to_spare_is_not_stopped():
    # 8 slots serve 40 req/s; 25 req/s for 5 s keep about 5 busy
    with SlotServerProcess(slots=8, ttft_ms=20, itl_ms=20) as server:
        rows, detector, _ = drive_with_stop(server.base_url, 25.0, 5.0)
    assert detector.stopped is None and len(detector.checks) >= 2
    assert len(rows) == 125 and all(r["error"] is None for r in rows)


def test_a_serving_run_stops_records_why_and_keeps_its_steady_state(tmp_path):
    # the whole path: workload options -> the run's client watched by the detector -> run.json
    import json

    from benchctl.records import read_records
    from benchctl.run import RunConfig, run_benchmark
    from benchctl.workload import WorkloadOptions

    workload = WorkloadOptions(
        dataset="random",
        random_input_len=8,
        random_output_len=10,
        request_rate=25.0,
        arrival="constant",
        duration="8s",
        warmup="1s",
        stop_on_saturation=True,
    )
    with SlotServerProcess(slots=2, ttft_ms=20, itl_ms=20) as server:
        config = RunConfig(
            backend="openai", mode="serving", workload=workload, base_url=server.base_url, output_dir=tmp_path
        )
        run_dir = run_benchmark(config)
    run = json.loads((run_dir / "run.json").read_text())
    stop = run["serving_stats"]["saturation_stop"]
    assert run["status"] == "completed" and stop["reason"] in ("over-saturated", "ttft-growing")
    assert run["workload"]["schedule"]["stop"] == {"on_saturation": True, "max_error_rate": None}
    rows = read_records(run_dir / "requests.jsonl")
    assert len(rows) == 200 and run["summary"]["num_requests"] == 200
    assert sum(r["error"] is None for r in rows) == run["summary"]["completed"] < 100
    steady = run["summary"]["steady_state"]
    assert steady["phases"]["warmup"] == 25 and steady["window_s"] == [1.0, 8.0]
