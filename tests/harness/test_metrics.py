"""Every metric of benchctl/metrics.py against values computed by hand from four records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchctl.metrics import LATENCY_METRICS, distribution, flat_metrics, meets_slos, request_latencies, summarize


def rec(request_id, prompt, expected, output, arrival, start, first, finish, times=None, chunks=None, error=None):
    return {
        "request_id": request_id,
        "prompt_tokens": prompt,
        "expected_output_tokens": expected,
        "output_tokens": output,
        "arrival_s": arrival,
        "start_s": start,
        "first_token_s": first,
        "finish_s": finish,
        "token_times_s": times,
        "chunk_tokens": chunks,
        "error": error,
    }


# A: queued 0.5 s behind a concurrency cap, 4 tokens one per chunk.
A = rec("a", 10, 4, 4, arrival=0.0, start=0.5, first=1.0, finish=2.0, times=[1.0, 1.25, 1.5, 2.0])
# B: a single output token: TPOT undefined, no ITL gaps.
B = rec("b", 20, 1, 1, arrival=0.25, start=0.25, first=0.75, finish=0.75, times=[0.75])
# C: 6 tokens in chunks of 1, 3, 2 (ITL != TPOT), and 2 tokens short of the 8 asked for.
C = rec("c", 30, 8, 6, arrival=0.0, start=0.0, first=0.25, finish=1.25, times=[0.25, 1.0, 1.25], chunks=[1, 3, 2])
# D: failed; it still ran until 2.5 s, which counts toward the run duration.
D = rec("d", 40, 5, 0, arrival=1.0, start=1.0, first=None, finish=2.5, error="engine exploded")
RECORDS = [A, B, C, D]

# Per-request values by hand (seconds):
#        ttft   e2el   tpot              itl                 queue   e2el/out
# A      0.5    1.5    (1.5-0.5)/3=1/3   [0.25, 0.25, 0.5]   0.5     0.375
# B      0.5    0.5    None              []                  0.0     0.5
# C      0.25   1.25   (1.25-0.25)/5=0.2 [0.75, 0.25]        0.0     1.25/6
EXPECTED = {
    "a": {
        "ttft_s": 0.5,
        "e2el_s": 1.5,
        "tpot_s": 1 / 3,
        "itl_s": [0.25, 0.25, 0.5],
        "queue_s": 0.5,
        "latency_per_token_s": 0.375,
    },
    "b": {"ttft_s": 0.5, "e2el_s": 0.5, "tpot_s": None, "itl_s": [], "queue_s": 0.0, "latency_per_token_s": 0.5},
    "c": {
        "ttft_s": 0.25,
        "e2el_s": 1.25,
        "tpot_s": 0.2,
        "itl_s": [0.75, 0.25],
        "queue_s": 0.0,
        "latency_per_token_s": 1.25 / 6,
    },
    "d": {"ttft_s": None, "e2el_s": None, "tpot_s": None, "itl_s": [], "queue_s": 0.0, "latency_per_token_s": None},
}


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r["request_id"])
def test_request_latencies_by_hand(record):
    got = request_latencies(record)
    want = EXPECTED[record["request_id"]]
    assert set(got) == set(want)
    for key, value in want.items():
        if value is None:
            assert got[key] is None, key
        elif isinstance(value, list):
            assert got[key] == pytest.approx(value, abs=1e-12), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key


def test_start_defaults_to_arrival_when_missing():
    r = rec("x", 1, 2, 2, arrival=0.25, start=None, first=0.75, finish=1.0, times=[0.75, 1.0])
    lat = request_latencies(r)
    assert lat["queue_s"] == 0.0 and lat["ttft_s"] == 0.5 and lat["e2el_s"] == 0.75 and lat["tpot_s"] == 0.25


SUMMARY = summarize(RECORDS)


def test_counts_tokens_and_duration():
    s = SUMMARY
    assert (s["num_requests"], s["completed"], s["failed"]) == (4, 3, 1)
    assert s["duration_s"] == 2.5  # the failed request's finish at 2.5 s is the tail
    assert s["total_input_tokens"] == 10 + 20 + 30  # completed requests only
    assert s["total_output_tokens"] == 4 + 1 + 6
    assert s["output_tokens_short"] == 1  # C produced 6 of 8


def test_throughputs_use_the_run_duration():
    s = SUMMARY
    assert s["request_throughput"] == pytest.approx(3 / 2.5)
    assert s["input_tok_s"] == pytest.approx(60 / 2.5)
    assert s["output_tok_s"] == pytest.approx(11 / 2.5)
    assert s["total_tok_s"] == pytest.approx(71 / 2.5)
    explicit = summarize(RECORDS, duration_s=5.0)
    assert explicit["duration_s"] == 5.0 and explicit["output_tok_s"] == pytest.approx(11 / 5)
    assert math.isnan(summarize(RECORDS, duration_s=0.0)["request_throughput"])


def test_ttft_distribution_by_hand():
    # values [0.5, 0.5, 0.25]; sorted [0.25, 0.5, 0.5]
    t = SUMMARY["ttft_s"]
    assert t["count"] == 3
    assert t["mean"] == pytest.approx(1.25 / 3)
    assert t["median"] == pytest.approx(0.5)
    assert t["std"] == pytest.approx(math.sqrt(((0.5 - 1.25 / 3) ** 2 * 2 + (0.25 - 1.25 / 3) ** 2) / 3))
    assert (t["min"], t["max"]) == (0.25, 0.5)
    # numpy linear interpolation: p90 at rank 1.8 -> between 0.5 and 0.5
    assert t["p90"] == pytest.approx(0.5) and t["p99"] == pytest.approx(0.5) and t["p50"] == pytest.approx(0.5)


def test_tpot_distribution_by_hand():
    # B has no TPOT; values [1/3, 0.2]
    t = SUMMARY["tpot_s"]
    assert t["count"] == 2
    assert t["mean"] == pytest.approx((1 / 3 + 0.2) / 2)
    assert t["median"] == pytest.approx((1 / 3 + 0.2) / 2)
    assert t["std"] == pytest.approx((1 / 3 - 0.2) / 2)
    assert t["p90"] == pytest.approx(0.2 + 0.9 * (1 / 3 - 0.2))
    assert t["p99"] == pytest.approx(0.2 + 0.99 * (1 / 3 - 0.2))


def test_itl_is_pooled_over_requests_without_ttft():
    # gaps [0.25, 0.25, 0.5] from A and [0.75, 0.25] from C: 5 gaps, no TTFT among them
    values = np.array([0.25, 0.25, 0.5, 0.75, 0.25])
    t = SUMMARY["itl_s"]
    assert t["count"] == 5
    assert t["mean"] == pytest.approx(2.0 / 5)
    assert t["median"] == pytest.approx(0.25)
    assert t["std"] == pytest.approx(float(np.std(values)))
    # sorted [0.25, 0.25, 0.25, 0.5, 0.75]: p90 at rank 3.6 -> 0.5 + 0.6 * 0.25 = 0.65
    assert t["p90"] == pytest.approx(0.65)
    assert t["p95"] == pytest.approx(0.5 + 0.8 * 0.25)
    assert t["p99"] == pytest.approx(0.5 + 0.96 * 0.25)
    # C's chunk of 3 tokens makes its ITL (0.75, 0.25) differ from its TPOT (0.2)
    assert SUMMARY["tpot_s"]["count"] == 2


def test_e2el_queue_and_latency_per_token_distributions():
    e = SUMMARY["e2el_s"]  # [1.5, 0.5, 1.25] -> sorted [0.5, 1.25, 1.5]
    assert e["mean"] == pytest.approx(3.25 / 3) and e["median"] == pytest.approx(1.25)
    assert e["p90"] == pytest.approx(1.25 + 0.8 * 0.25) and e["p99"] == pytest.approx(1.25 + 0.98 * 0.25)
    assert e["std"] == pytest.approx(float(np.std([1.5, 0.5, 1.25])))
    q = SUMMARY["queue_s"]  # [0.5, 0, 0]; the failed request is not among them
    assert q["count"] == 3 and q["mean"] == pytest.approx(0.5 / 3) and q["max"] == 0.5
    lpt = SUMMARY["latency_per_token_s"]
    assert lpt["mean"] == pytest.approx((0.375 + 0.5 + 1.25 / 6) / 3)


@pytest.mark.parametrize(
    "slos, good",
    [
        ({"ttft": 450}, ["c"]),  # A and B have TTFT 500 ms
        ({"ttft": 600}, ["a", "b", "c"]),
        ({"e2el": 1300}, ["b", "c"]),  # A takes 1500 ms
        ({"tpot": 250}, ["b", "c"]),  # B's undefined TPOT passes; A's is 333 ms
        ({"tpot": 100}, ["b"]),
        ({"ttft": 600, "tpot": 250, "e2el": 1000}, ["b"]),
    ],
)
def test_goodput_by_hand(slos, good):
    s = summarize(RECORDS, slos_ms=slos)
    assert s["good_requests"] == len(good)
    assert s["goodput_req_s"] == pytest.approx(len(good) / 2.5)
    assert s["slos_ms"] == slos
    assert sorted(r["request_id"] for r in RECORDS[:3] if meets_slos(request_latencies(r), slos)) == good


def test_failed_request_never_meets_slos_and_unknown_slo_is_rejected():
    assert not meets_slos(request_latencies(D), {"ttft": 1e9})
    assert "goodput_req_s" not in SUMMARY
    with pytest.raises(ValueError, match="unknown SLO 'itl'"):
        summarize(RECORDS, slos_ms={"itl": 10})


def test_distribution_and_empty_runs():
    d = distribution([3.0, None, 1.0, 2.0, 4.0], percentiles=(25, 75))
    assert d == {
        "count": 4,
        "mean": 2.5,
        "median": 2.5,
        "std": pytest.approx(math.sqrt(1.25)),
        "min": 1.0,
        "max": 4.0,
        "p25": 1.75,
        "p75": 3.25,
    }
    assert distribution([None]) == {"count": 0}
    s = summarize([])
    assert s["completed"] == 0 and s["duration_s"] == 0.0 and math.isnan(s["output_tok_s"])
    assert s["ttft_s"] == {"count": 0}
    only_failed = summarize([D])
    assert only_failed["completed"] == 0 and only_failed["failed"] == 1 and only_failed["request_throughput"] == 0


def test_flat_metrics_keys_and_values():
    s = summarize(RECORDS, slos_ms={"ttft": 600})
    flat = flat_metrics(s)
    stats = ("mean", "median", "std", "min", "max", "p50", "p90", "p95", "p99")
    expected_keys = {"request_throughput", "input_tok_s", "output_tok_s", "total_tok_s", "goodput_req_s"}
    expected_keys |= {f"{m.removesuffix('_s')}_{k}_ms" for m in LATENCY_METRICS for k in stats}
    assert set(flat) == expected_keys
    assert flat["output_tok_s"] == pytest.approx(4.4)
    assert flat["goodput_req_s"] == pytest.approx(1.2)
    assert flat["ttft_mean_ms"] == pytest.approx(1250 / 3)
    assert flat["tpot_p99_ms"] == pytest.approx(1000 * (0.2 + 0.99 * (1 / 3 - 0.2)))
    assert flat["itl_p90_ms"] == pytest.approx(650)
    assert flat["e2el_max_ms"] == pytest.approx(1500)
    assert all(isinstance(v, float) for v in flat.values())
    assert "goodput_req_s" not in flat_metrics(SUMMARY)
    # a metric with no values contributes no keys
    no_tpot = flat_metrics(summarize([B]))
    assert not any(k.startswith("tpot_") for k in no_tpot) and no_tpot["ttft_mean_ms"] == pytest.approx(500)
