"""Capacity at an SLO (benchctl/capacity.py, benchctl/metrics/slo.py): the search and its interval on probes of known
shape, then a concurrency search against a server that serves exactly K streams within the SLO."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from benchctl import metrics
from benchctl.capacity import CapacityError, find_capacity
from benchctl.run.sink import finish_record
from benchctl.serving.client import ClientOptions, LoadClient, run_event_loop
from benchctl.workload import RequestSpec
from tests.harness.fakes_serving.slot_server import SlotServerProcess


def test_percentile_slos_parse_with_units_and_refuse_what_they_cannot_read():
    slos = metrics.parse_percentile_slos(["ttft_p99:500ms", "tpot_p95:0.05s", "e2el_median:2000", "ttft_p99:400ms"])
    assert [(s.name, s.limit_s) for s in slos] == [("ttft_p99", 0.4), ("tpot_p95", 0.05), ("e2el_median", 2.0)]
    assert slos[0].label == "p99 TTFT ≤ 400 ms"
    assert metrics.per_request_limits_ms(slos) == {"ttft": 400.0, "tpot": 50.0, "e2el": 2000.0}
    for bad in ("ttft:500", "ttfb_p99:5ms", "ttft_p99:", "ttft_p0:5ms", "ttft_p101:5ms", "ttft_p99:0ms"):
        with pytest.raises(ValueError):
            metrics.parse_percentile_slos([bad])


def _records(ttfts: np.ndarray, rate: float = 10.0) -> list[dict]:
    out = []
    for i, ttft in enumerate(ttfts):
        arrival = i / rate
        out.append(
            finish_record(
                {
                    "request_id": f"r{i}",
                    "prompt_tokens": 1,
                    "expected_output_tokens": 4,
                    "output_tokens": 4,
                    "arrival_s": arrival,
                    "start_s": arrival,
                    "first_token_s": arrival + ttft,
                    "finish_s": arrival + ttft + 0.03,
                    "token_times_s": [arrival + ttft + k * 0.01 for k in range(4)],
                    "error": None,
                }
            )
        )
    return out


def test_the_slo_estimate_has_an_interval_that_holds_the_truth():
    rng = np.random.default_rng(0)
    reps = [[metrics.request_latencies(r) for r in _records(rng.exponential(0.1, 400))] for _ in range(3)]
    slo = metrics.parse_percentile_slos(["ttft_p90:300ms"])[0]
    estimate = metrics.slo_estimate(reps, slo)
    truth = 0.1 * math.log(10)  # p90 of an exponential with mean 0.1 s
    # 1,200 values: +-0.017 s within one pool; resampling the 3 repetitions too widens it (conservative)
    assert estimate["low_s"] < truth < estimate["high_s"] and estimate["high_s"] - estimate["low_s"] < 0.08
    assert estimate["met"] and estimate["ratio"] == pytest.approx(estimate["value_s"] / 0.3)


def linear_probe(load: float, rep: int) -> list[dict]:
    """TTFT grows with the load: p99 = 0.02 * load s (+-1% between repetitions), so p99 <= 200 ms up to 10 req/s."""
    rng = np.random.default_rng(int(load * 1000) + rep)
    ttfts = 0.02 * load * (1 + 0.01 * (rep - 0.5)) * rng.uniform(0.5, 1.0, 300) / 0.995
    return _records(ttfts, rate=load)


def test_a_rate_search_finds_the_load_where_the_percentile_meets_its_limit():
    seen: list[float] = []
    slos = metrics.parse_percentile_slos(["ttft_p99:200ms"])
    result = find_capacity(
        linear_probe, slos, axis="rate", low=1.0, high=100.0, repetitions=2, on_probe=lambda p: seen.append(p.load)
    )
    assert seen[:5] == [1.0, 2.0, 4.0, 8.0, 16.0] and len(seen) <= 14
    assert result["capacity"] == pytest.approx(10.0, rel=0.03)
    low, high = result["interval"]
    assert low <= result["capacity"] <= high and 9.0 < low and high < 11.0
    assert result["statement"].startswith(
        f"capacity {result['capacity']:.3g} req/s [{low:.3g}, {high:.3g}] at p99 TTFT ≤ 200 ms; goodput "
    )
    assert result["goodput_req_s"] == pytest.approx(result["goodput_at_load"], rel=0.1)  # ~all requests good
    assert result["binding_slo"] == "ttft_p99"


def test_a_search_says_when_the_slos_fail_at_once_or_never():
    slos = metrics.parse_percentile_slos(["ttft_p99:200ms"])
    none = find_capacity(linear_probe, slos, axis="rate", low=20.0, high=80.0, repetitions=1)
    assert none["capacity"] is None and "fail at the lowest load probed, 20 req/s" in none["statement"]
    met = find_capacity(linear_probe, slos, axis="rate", low=1.0, high=4.0, repetitions=1)
    assert met["capacity"] == 4.0 and not met["bounded"] and "still met at the highest load probed" in met["statement"]
    with pytest.raises(CapacityError, match="needs at least one --slo"):
        find_capacity(linear_probe, [], axis="rate")
    with pytest.raises(CapacityError, match="whole numbers"):
        find_capacity(linear_probe, slos, axis="concurrency", low=1.5, high=8)


def concurrency_probe(base_url: str, rounds: int = 3):
    def probe(load: float, rep: int) -> list[dict]:
        c = int(load)
        requests = [RequestSpec(f"c{c}-r{rep}-{i:04d}", [1], "hi", 8) for i in range(rounds * c)]
        client = LoadClient(ClientOptions(base_url=base_url, model_name="fake-model", max_concurrency=c))
        out: list[dict] = []

        async def go() -> None:
            await client.open(c)
            try:
                await client.warmup(requests, c)  # open the c connections before the clock starts
                await client.run(requests, time.monotonic() + 0.02, out.append)
            finally:
                await client.close()

        run_event_loop(go())
        return [finish_record(r) for r in out]

    return probe


def test_a_concurrency_search_finds_a_server_that_serves_exactly_k_streams():
    # 4 slots; a request is 20 ms to its first token, then 7 x 10 ms: within 4 streams TTFT is ~20 ms, with a 5th
    # one request waits ~90 ms for a slot, which p99 TTFT <= 60 ms does not allow
    k = 4
    slos = metrics.parse_percentile_slos(["ttft_p99:60ms"])
    with SlotServerProcess(slots=k, ttft_ms=20, itl_ms=10) as server:
        result = find_capacity(
            concurrency_probe(server.base_url), slos, axis="concurrency", low=1, high=32, repetitions=2
        )
    assert abs(result["capacity"] - k) <= 0.1 * k, result["statement"]
    assert [p["load"] for p in result["probes"]] == [1, 2, 4, 5, 6, 8]
    assert result["bracket"] == [4, 5] and result["statement"].startswith("capacity 4 concurrent streams [")
    low, high = result["interval"]
    assert low <= 4 <= high <= 4
    assert result["goodput_req_s"] > 0


def test_the_sweep_runs_one_cell_per_probe_and_repetition_and_indexes_them(tmp_path):
    import json

    from benchctl import store
    from benchctl.capacity import capacity_sweep
    from benchctl.sweep import spec_from_dict

    seen = []

    def run_cell(config, timeout_s):
        """A server that keeps TTFT at 20 ms up to 6 streams, 200 ms beyond."""
        c = config.workload.max_concurrency
        seen.append((c, config.workload.num_prompts))
        run_dir = store.new_run_dir(config.output_dir, "probe")
        rows = _records(np.full(config.workload.num_prompts, 0.02 if c <= 6 else 0.2))
        (run_dir / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        store.write_json_atomic(run_dir / "run.json", {"run_id": run_dir.name, "status": "completed"})
        return {"run_dir": run_dir, "status": "completed", "error": None}

    spec = spec_from_dict(
        {"backends": ["reference"], "mode": "serving", "workload": {"dataset": "random", "num_prompts": 8}}
    )
    slos = metrics.parse_percentile_slos(["ttft_p99:100ms"])
    result = capacity_sweep(spec, tmp_path, "concurrency", slos, 1, 64, repetitions=2, run_cell=run_cell)
    assert result["capacity"] == 6 and result["statement"].startswith("capacity 6 concurrent streams [6, 6]")
    assert seen[:4] == [(1, 8), (1, 8), (2, 8), (2, 8)] and (8, 32) in seen  # at least 4 rounds of c requests
    index = store.load_run_index(result["sweep_dir"])
    assert index["kind"] == "capacity" and len(index["cells"]) == len(seen)
    assert index["capacity"]["capacity"] == 6 and {c["repetition"] for c in index["cells"]} == {0, 1}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "a capacity search needs at least one --slo"),
        (["--slo", "ttft_p9x:5"], "expected METRIC_STAT:LIMIT"),
        (["--slo", "ttft_p99:500ms", "--capacity-axis", "concurrency", "--capacity-low", "1.5"], "whole numbers"),
        (["--slo", "ttft_p99:500ms", "--capacity-axis", "tokens"], "--capacity-axis must be one of rate, concurrency"),
    ],
)
def test_sweep_capacity_refuses_bad_settings_before_any_cell(capsys, tmp_path, argv, message):
    from benchctl.cli import main

    code = main(["sweep", "--capacity", "--mode", "serving", "--output-dir", str(tmp_path), *argv])
    assert code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
