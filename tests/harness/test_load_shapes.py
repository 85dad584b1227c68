"""Load shapes (benchctl/workload/shapes.py) and their windows' metrics (benchctl/metrics/windows.py): the schedules
as numbers, then against the fake server: a time-bounded run with warm-up and cool-down, and a linear ramp."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchctl import metrics
from benchctl.run.sink import finish_record
from benchctl.workload import WorkloadError, WorkloadOptions, build_workload
from benchctl.workload.shapes import MAX_SCHEDULED_REQUESTS, parse_seconds, parse_stages, parse_window, ramp_rate
from tests.harness.fakes_serving import FakeServerProcess, run_client

RANDOM = {"dataset": "random", "random_input_len": 8, "random_output_len": 4}


def workload(tok, **options):
    return build_workload(WorkloadOptions(**{**RANDOM, **options}), tok)


def test_times_windows_and_stages_parse():
    assert [parse_seconds(v, "--duration") for v in (60, "60", "60s", "1.5m", "500ms", "1h")] == [
        60.0,
        60.0,
        60.0,
        90.0,
        0.5,
        3600.0,
    ]
    assert parse_window("20r", "--warmup") == ("r", 20.0) and parse_window("10s", "--warmup") == ("s", 10.0)
    assert parse_stages("2:30s,4.5:1m") == [(2.0, 30.0), (4.5, 60.0)]
    for bad in ("0s", "-3s", "ten", "5 parsecs", "20r"):
        with pytest.raises(WorkloadError, match="--duration must be"):
            parse_seconds(bad, "--duration")
    with pytest.raises(WorkloadError, match="whole number"):
        parse_window("2.5r", "--cooldown")
    for bad in ("2", "0:30s", "2:30s,x:1s", ""):
        with pytest.raises(WorkloadError, match="--stages"):
            parse_stages(bad)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"duration": "10s"}, "--duration needs a finite --request-rate or a ramp"),
        ({"duration": "10s", "request_rate": 2.0, "num_prompts": 5}, "--duration decides how many requests"),
        ({"stages": "2:1s", "duration": "3s"}, "cannot be combined"),
        ({"stages": "2:1s", "request_rate": 3.0}, "--request-rate is set by the ramp or the stages"),
        ({"ramp_up_strategy": "linear", "ramp_up_start_rps": 1}, "needs both --ramp-up-start-rps"),
        ({"ramp_up_strategy": "steep", "ramp_up_start_rps": 1, "ramp_up_end_rps": 2}, "must be one of linear"),
        ({"ramp_up_strategy": "linear", "ramp_up_start_rps": 4, "ramp_up_end_rps": 2}, "must not exceed"),
        ({"ramp_up_strategy": "exponential", "ramp_up_start_rps": 0, "ramp_up_end_rps": 2}, "a finite rate > 0"),
        ({"ramp_up_start_rps": 1, "ramp_up_end_rps": 2}, "need --ramp-up-strategy"),
        ({"warmup": "2s", "kind": "conversations", "dataset": "tiny-sharegpt"}, "apply to single-turn workloads"),
        ({"max_error_rate": 1.5}, "--max-error-rate must be a fraction"),
    ],
)
def test_bad_shape_options_are_one_clear_error(options, message):
    with pytest.raises(WorkloadError, match=message):
        WorkloadOptions(**{**RANDOM, **options})


def test_a_schedule_past_the_cap_is_refused_before_it_is_drawn(tok):
    with pytest.raises(WorkloadError, match=f"more than the {MAX_SCHEDULED_REQUESTS:,}"):
        workload(tok, duration="2h", request_rate=1000.0)


def test_a_duration_draws_the_same_arrivals_as_a_count_up_to_the_deadline(tok):
    timed = workload(tok, duration="20s", request_rate=5.0)
    arrivals = np.array([r.arrival_s for r in timed.requests])
    assert arrivals.max() < 20.0 and 70 < arrivals.size < 130  # Poisson: 100 expected
    counted = workload(tok, num_prompts=arrivals.size + 1, request_rate=5.0)
    reference = np.array([r.arrival_s for r in counted.requests])
    assert np.allclose(arrivals, reference[:-1]) and reference[-1] >= 20.0  # the next one would be late
    assert timed.spec()["schedule"]["duration_s"] == 20.0 and timed.spec()["num_requests"] == arrivals.size


def test_a_ramp_over_requests_is_vllms_rule(tok):
    n = 50
    for strategy in ("linear", "exponential"):
        w = workload(
            tok,
            num_prompts=n,
            arrival="constant",
            ramp_up_strategy=strategy,
            ramp_up_start_rps=2.0,
            ramp_up_end_rps=20.0,
        )
        gaps = np.diff([r.arrival_s for r in w.requests])
        # vLLM: request i's gap is 1 / rate(i / (n - 1)) with burstiness inf (constant); its first gap is the
        # wait before request 0, which benchctl does not wait
        expected = 1 / ramp_rate(strategy, 2.0, 20.0, np.arange(1, n) / (n - 1))
        assert np.allclose(gaps, expected)
        assert w.spec()["schedule"]["ramp"]["over"] == "requests"
    expected_linear = 2.0 + 18.0 * 0.5
    assert ramp_rate("linear", 2.0, 20.0, 0.5) == expected_linear
    assert ramp_rate("exponential", 2.0, 20.0, 0.5) == pytest.approx(math.sqrt(40.0))


@pytest.mark.parametrize("strategy", ["linear", "exponential"])
def test_a_ramp_over_a_duration_puts_the_rates_integral_in_every_second(tok, strategy):
    w = workload(
        tok, duration="10s", arrival="constant", ramp_up_strategy=strategy, ramp_up_start_rps=4.0, ramp_up_end_rps=40.0
    )
    counts = np.histogram([r.arrival_s for r in w.requests], bins=np.arange(11))[0]
    t = np.linspace(0, 10, 10_001)
    rate = ramp_rate(strategy, 4.0, 40.0, t / 10)
    integral = [np.trapezoid(rate[k * 1000 : (k + 1) * 1000 + 1], t[k * 1000 : (k + 1) * 1000 + 1]) for k in range(10)]
    assert np.all(np.abs(counts - np.array(integral)) <= 1.0), (counts, integral)


def test_stages_each_run_their_own_rate_for_their_own_time(tok):
    w = workload(tok, stages="4:5s,12:5s,2:2.5s", arrival="constant")
    stages = [r.labels["stage"] for r in w.requests]
    arrivals = np.array([r.arrival_s for r in w.requests])
    assert [stages.count(k) for k in range(3)] == [20, 60, 5]
    assert np.all(np.diff(arrivals) > 0) and arrivals[20] == 5.0 and arrivals[80] == 10.0
    described = w.spec()["schedule"]["stages"]
    assert [(s["request_rate"], s["start_s"], s["end_s"], s["requests"]) for s in described] == [
        (4.0, 0.0, 5.0, 20),
        (12.0, 5.0, 10.0, 60),
        (2.0, 10.0, 12.5, 5),
    ]


def test_windows_label_requests_by_time_or_by_count(tok):
    w = workload(tok, duration="10s", request_rate=10.0, arrival="constant", warmup="2s", cooldown="1s")
    phases = [r.labels["phase"] for r in w.requests]
    assert phases == ["warmup"] * 20 + ["steady"] * 70 + ["cooldown"] * 10
    windows = w.spec()["schedule"]["windows"]
    assert (windows["steady_start_s"], windows["steady_end_s"]) == (2.0, 9.0)
    assert windows["requests"] == {"warmup": 20, "steady": 70, "cooldown": 10}
    counted = workload(tok, num_prompts=10, request_rate=4.0, arrival="constant", warmup="3r", cooldown="2r")
    assert [r.labels["phase"] for r in counted.requests] == ["warmup"] * 3 + ["steady"] * 5 + ["cooldown"] * 2
    assert counted.schedule["windows"]["steady_start_s"] == 0.75 and counted.schedule["windows"]["steady_end_s"] == 2.0
    with pytest.raises(WorkloadError, match="leave no request in the steady state"):
        workload(tok, num_prompts=4, warmup="2r", cooldown="2r")


def _record(i: int, arrival: float, phase: str, first: float, gap: float, n: int, stage: int | None = None) -> dict:
    times = [first + k * gap for k in range(n)]
    extra = {"phase": phase} if stage is None else {"phase": phase, "stage": stage}
    return finish_record(
        {
            "request_id": f"r{i}",
            "prompt_tokens": 10,
            "expected_output_tokens": n,
            "output_tokens": n,
            "arrival_s": arrival,
            "start_s": arrival,
            "first_token_s": times[0],
            "finish_s": times[-1],
            "token_times_s": times,
            "extra": extra,
        }
    )


def test_steady_state_rates_count_what_the_server_did_inside_the_window():
    # 10 req/s for 10 s, each request 4 tokens 0.1 s apart starting 0.2 s after arrival; windows of 2 s and 1 s
    records = [
        _record(i, i / 10, "warmup" if i < 20 else "cooldown" if i >= 90 else "steady", i / 10 + 0.2, 0.1, 4)
        for i in range(100)
    ]
    schedule = {"windows": {"steady_start_s": 2.0, "steady_end_s": 9.0}}
    steady = metrics.summarize_windows(records, schedule, {"ttft": 250})["steady_state"]
    assert steady["num_requests"] == 70 and steady["phases"] == {"warmup": 20, "steady": 70, "cooldown": 10}
    assert steady["request_throughput"] == pytest.approx(10.0, rel=0.02)  # 70 finishes in 7 s
    assert steady["output_tok_s"] == pytest.approx(40.0, rel=0.02)  # 4 tokens per request, at their token times
    assert steady["goodput_req_s"] == pytest.approx(10.0, rel=0.02)
    assert steady["ttft_s"]["median"] == pytest.approx(0.2)
    whole = metrics.summarize(records)
    assert whole["request_throughput"] == pytest.approx(100 / 10.4)  # the drain after the last arrival counts
    assert metrics.summarize_windows(records, {}) == {}


def test_each_stage_is_summarized_over_its_own_span():
    records = [_record(i, i / 4, "steady", i / 4 + 0.1, 0.05, 3, stage=0) for i in range(8)]  # 4 req/s for 2 s
    records += [_record(8 + i, 2 + i / 8, "steady", 2 + i / 8 + 0.3, 0.05, 3, stage=1) for i in range(16)]
    schedule = {
        "stages": [
            {"stage": 0, "request_rate": 4.0, "start_s": 0.0, "end_s": 2.0, "requests": 8},
            {"stage": 1, "request_rate": 8.0, "start_s": 2.0, "end_s": 4.0, "requests": 16},
        ]
    }
    stages = metrics.summarize_windows(records, schedule)["stages"]
    assert [s["num_requests"] for s in stages] == [8, 16]
    assert [s["offered_request_rate"] for s in stages] == [4.0, 8.0]
    assert [s["ttft_s"]["median"] for s in stages] == [pytest.approx(0.1), pytest.approx(0.3)]
    # what the server finished in [2, 4): stage 1's requests finish 0.4 s after arriving, so those arriving from
    # 3.6 s on finish after the stage; nothing of stage 0 is left for it (its last finished at 1.95 s)
    assert stages[1]["request_throughput"] == pytest.approx(13 / 2)
    assert stages[0]["request_throughput"] == pytest.approx(8 / 2) and stages[1]["output_tok_s"] == pytest.approx(
        (13 * 3 + 1 * 2) / 2
    )  # plus the two tokens of the request arriving at 3.625 s that fall before 4 s


def test_a_timed_run_reports_its_windows_and_the_tail_does_not_lower_steady_throughput(tok):
    # 6 s at 20 req/s with 1 s windows (the 30 s with 5 s windows, shortened for CI: the same code paths,
    # 120 requests), each request ~0.65 s long so the drain after the last arrival is visible in the whole run
    w = workload(
        tok, duration="6s", request_rate=20.0, arrival="constant", warmup="1s", cooldown="1s", random_output_len=8
    )
    with FakeServerProcess("--ttft-ms", "300", "--itl-ms", "50", "--no-timings") as server:
        raw, _, _ = run_client(server.base_url, w.requests, warmup=8)
    rows = [finish_record(r) for r in raw]
    assert len(rows) == 120 and all(r["error"] is None for r in rows)
    assert sorted(metrics.phase_of(r) for r in rows) == sorted(r.labels["phase"] for r in w.requests)
    windows = metrics.summarize_windows(rows, w.spec()["schedule"])
    steady = windows["steady_state"]
    assert steady["phases"] == {"warmup": 20, "steady": 80, "cooldown": 20}
    assert steady["window_s"] == [1.0, 5.0]
    assert steady["request_throughput"] == pytest.approx(20.0, rel=0.05)
    assert steady["output_tok_s"] == pytest.approx(160.0, rel=0.05)  # 8 tokens per request
    whole = metrics.summarize(rows)
    assert whole["request_throughput"] < 0.92 * steady["request_throughput"]  # 120 in ~6.6 s


def test_a_linear_ramp_reaches_its_target_rate_every_second(tok):
    w = workload(
        tok, duration="5s", arrival="constant", ramp_up_strategy="linear", ramp_up_start_rps=40.0, ramp_up_end_rps=120.0
    )
    with FakeServerProcess("--no-timings") as server:
        raw, _, _ = run_client(server.base_url, w.requests, warmup=16)
    assert len(raw) == len(w.requests) == 400 and all(r["error"] is None for r in raw)
    achieved = np.histogram([r["start_s"] for r in raw], bins=np.arange(6))[0]
    target = [ramp_rate("linear", 40.0, 120.0, (k + 0.5) / 5) for k in range(5)]  # the rate's mean in second k
    assert np.all(np.abs(achieved / np.array(target) - 1) < 0.05), (achieved, target)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "5s"], "--duration needs a finite --request-rate"),
        (["--stages", "2:1s", "--num-prompts", "3"], "--stages decides how many requests"),
        (["--warmup", "ten"], "--warmup must be a time such as 10s or 20r"),
        (["--ramp-up-strategy", "linear", "--ramp-up-start-rps", "1"], "needs both --ramp-up-start-rps"),
        (["--trace-speed", "2"], "--trace-speed apply to --dataset trace:PATH"),
    ],
)
def test_the_cli_takes_the_shape_options_and_refuses_bad_ones_with_exit_2(capsys, tmp_path, argv, message):
    from benchctl.cli import main

    code = main(["run", "--dataset", "random", "--output-dir", str(tmp_path), *argv])
    assert code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before a run folder exists


def test_the_console_says_which_numbers_are_the_whole_run_and_which_a_window():
    from benchctl.console import window_rows

    summary = {
        "steady_state": {
            "window_s": [1.0, 5.0],
            "request_throughput": 20.0,
            "output_tok_s": 160.0,
            "ttft_s": {"p99": 0.3},
        },
        "stages": [{"stage": 0, "offered_request_rate": 2.0, "request_throughput": 1.9, "ttft_s": {"p99": 0.05}}],
    }
    stop = {"reason": "over-saturated", "t_s": 5.25, "detail": "23 requests finished while 56 arrived"}
    rows = dict(window_rows({"summary": summary, "serving_stats": {"saturation_stop": stop}}))
    assert rows["throughput and latencies above"].startswith("whole run")
    assert rows["steady state (1.00-5.00 s): req/s · output tokens/s · TTFT p99 (ms)"] == "20.000 · 160.00 · 300.00"
    assert rows["stage 0 (2.00 req/s offered): req/s · TTFT p99 (ms)"] == "1.900 · 50.00"
    assert rows["stopped early"].startswith("over-saturated at 5.2 s")
    assert window_rows({"summary": {}}) == []
