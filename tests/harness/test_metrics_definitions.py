"""One definition per concept in benchctl.metrics, and every reader (report, console, gate) using it.

Numbers are worked out by hand in the comments, in the style of test_metrics.py.
"""

from __future__ import annotations

import json

import pytest
from report_fixtures import make_run

from benchctl import metrics
from benchctl.metrics import latency as metrics_latency
from benchctl.records import RequestRecord
from benchctl.report.load import load


def rec(request_id, expected, output, start, first, finish, *, error=None, turn=None, conversation=None,
        prompt=10, extra=None):
    return {"request_id": request_id, "prompt_tokens": prompt, "expected_output_tokens": expected,
            "output_tokens": output, "arrival_s": 0.0, "start_s": start, "first_token_s": first, "finish_s": finish,
            "token_times_s": None, "chunk_tokens": None, "error": error, "turn": turn,
            "conversation_id": conversation, "extra": extra or {}}


# --- "completed" -----------------------------------------------------------------------------------------------

def test_completed_is_one_definition_that_record_ok_and_every_summary_ask(monkeypatch, tmp_path):
    assert metrics.is_completed({"error": None, "finish_s": 1.0})
    assert not metrics.is_completed({"error": "boom", "finish_s": 1.0})
    assert not metrics.is_completed({"error": None, "finish_s": None})  # never finished
    for record in (RequestRecord("a", 1, 1, finish_s=1.0), RequestRecord("b", 1, 1, error="x", finish_s=1.0),
                   RequestRecord("c", 1, 1)):
        assert record.ok == metrics.is_completed(record.to_dict())

    # Change the definition (say, a zero-token answer is a failure) and every reader follows it.
    rows = [rec("a", 4, 4, 0.0, 0.5, 1.0, turn=0, conversation="c"), rec("b", 4, 0, 0.0, None, 1.0, turn=1,
                                                                             conversation="c")]
    assert metrics.summarize(rows)["completed"] == 2
    monkeypatch.setattr(metrics_latency, "is_completed",
                        lambda r: r.get("error") is None and r.get("finish_s") is not None and r["output_tokens"] > 0)
    s = metrics.summarize(rows)
    assert (s["completed"], s["failed"]) == (1, 1)
    assert s["conversations"]["completed_conversations"] == 0  # turn 1 failed: the conversation did not complete
    assert metrics.request_latencies(rows[1])["e2el_s"] is None
    assert not RequestRecord("z", 1, 0, finish_s=1.0).ok
    run_dir = make_run(tmp_path, "run", n=2)
    (run_dir / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["request_id"] for r in load(run_dir).done] == ["a"]


# --- TTFT by turn --------------------------------------------------------------------------------------------

def _run_data(rows, run=None):
    from pathlib import Path

    from benchctl.report.load import RunData

    done = metrics.completed(rows)
    return RunData(path=Path("run"), run=run or {"run_id": "run"}, records=rows, summary=metrics.summarize(rows),
                   latencies=[metrics.request_latencies(r) for r in done], done=done, steps=None)


# Two conversations of two turns, and a failed third turn. TTFTs (s): turn 0: 0.5, 0.7; turn 1: 0.1, 0.3.
TURNS = [rec("a0", 4, 4, 0.0, 0.5, 1.0, turn=0, conversation="a"), rec("a1", 4, 4, 2.0, 2.1, 3.0, turn=1,
                                                                        conversation="a"),
         rec("b0", 4, 4, 0.0, 0.7, 1.0, turn=0, conversation="b"), rec("b1", 4, 4, 2.0, 2.3, 3.0, turn=1,
                                                                        conversation="b"),
         rec("b2", 4, 0, 4.0, None, 4.5, turn=2, conversation="b", error="HTTP 500")]


def test_ttft_by_turn_is_computed_once_and_the_report_draws_it():
    from benchctl.report import conversations

    by_turn = metrics.ttft_by_turn(TURNS)
    assert list(by_turn) == [0, 1]  # the failed turn 2 has no TTFT
    # turn 1: [0.1, 0.3] -> median 0.2, p90 = 0.1 + 0.9 * 0.2 = 0.28, p99 = 0.1 + 0.99 * 0.2 = 0.298
    assert by_turn[1]["count"] == 2 and by_turn[1]["median"] == pytest.approx(0.2)
    assert by_turn[1]["p90"] == pytest.approx(0.28) and by_turn[1]["p99"] == pytest.approx(0.298)
    assert by_turn[0]["p90"] == pytest.approx(0.5 + 0.9 * 0.2)
    stored = metrics.summarize(TURNS)["conversations"]["ttft_by_turn_s"]
    assert stored == {str(k): v for k, v in by_turn.items()}  # the summary keeps exactly these
    [trace] = conversations.turn_figure([_run_data(TURNS)]).data
    assert list(trace.x) == [0, 1]
    assert list(trace.y) == pytest.approx([600.0, 200.0])  # medians, ms
    assert list(trace.error_y.array) == pytest.approx([80.0, 80.0])  # median to p90: 680 - 600, 280 - 200
    assert [c[1] for c in trace.customdata] == [2, 2]


# --- the prefix cache: the records' cached fraction and the server's hit rate ------------------------------------

def test_cached_prompt_fraction_and_server_hit_rate_are_two_named_definitions(monkeypatch):
    from benchctl.serving import scrape

    rows = [rec("a", 4, 4, 0.0, 0.5, 1.0, prompt=100, extra={"num_cached_tokens": 0}),
            rec("b", 4, 4, 0.0, 0.5, 1.0, prompt=300, extra={"num_cached_tokens": 240}),
            rec("c", 4, 4, 0.0, 0.5, 1.0, prompt=600)]  # its engine does not say: left out, not counted as 0
    assert metrics.cached_prompt_fraction(rows) == pytest.approx(240 / 400)
    assert metrics.cached_prompt_fraction(rows[2:]) is None
    assert metrics.cached_fraction is metrics.cached_prompt_fraction  # the old name, kept for importers
    assert metrics.server_prefix_cache_hit_rate(600.0, 1000.0) == {"hit_tokens": 600.0, "query_tokens": 1000.0,
                                                                   "hit_rate": 0.6}
    assert metrics.server_prefix_cache_hit_rate(0.0, 0.0)["hit_rate"] is None  # nothing looked up
    assert metrics.server_prefix_cache_hit_rate(None, 10.0) is None
    # the scraper's summary of /metrics asks the same function: change it and the scrape result follows
    series = {"reference_engine:prefix_cache_hits_total": {"first": 0.0, "max": 30.0, "last": 30.0},
              "reference_engine:prefix_cache_queries_total": {"first": 0.0, "max": 120.0, "last": 120.0}}
    assert scrape.prefix_cache_hit_rate(series) == {"source": "reference_engine:prefix_cache_queries",
                                                    "hit_tokens": 30.0, "query_tokens": 120.0, "hit_rate": 0.25}
    monkeypatch.setattr(metrics, "server_prefix_cache_hit_rate", lambda hits, queries: {"hit_rate": "from metrics"})
    assert scrape.prefix_cache_hit_rate(series)["hit_rate"] == "from metrics"


# --- goodput SLOs --------------------------------------------------------------------------------------------

def test_parse_slos_one_rule_finite_positive_milliseconds():
    assert metrics.parse_slos(["ttft:500", "tpot:12.5", "e2el:2000"]) == {"ttft": 500.0, "tpot": 12.5, "e2el": 2000.0}
    assert metrics.parse_slos([]) == {}
    for bad in ("ttft", "itl:50", "ttft:fast", "ttft:0", "ttft:-1", "ttft:inf", "e2el:Infinity", "tpot:nan", ":5"):
        with pytest.raises(ValueError, match=r"expected ttft\|tpot\|e2el:MILLISECONDS, got ") as err:
            metrics.parse_slos([bad])
        assert repr(bad) in str(err.value) and "\n" not in str(err.value)


def test_report_refuses_an_infinite_slo_like_run_does(tmp_path, capsys):
    from benchctl.cli import main

    run = make_run(tmp_path / "runs", "a", n=3)
    out = tmp_path / "r.html"
    assert main(["report", str(run), "-o", str(out), "--goodput", "ttft:inf"]) == 2  # the report took it before
    err = capsys.readouterr().err
    assert "expected ttft|tpot|e2el:MILLISECONDS, got 'ttft:inf' (a finite number > 0)" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


# --- the step-time split -------------------------------------------------------------------------------------

def test_one_step_time_split_for_the_internals_and_the_ablations(tmp_path):
    import pandas as pd

    from benchctl.metrics.steps import STEP_TIME_PARTS
    from benchctl.report import ablation, internals

    runs = [load(make_run(tmp_path, name, n=3, engine_args=args))
            for name, args in (("base", {"block_size": "16"}), ("other", {"block_size": "32"}))]
    table = ablation.ablation_table(runs)
    assert list(table.columns[-len(STEP_TIME_PARTS):]) == [f"{p.removesuffix('_s')} (s)" for p in STEP_TIME_PARTS]
    steps = pd.DataFrame({"t_s": [1.0], **{part: [0.1] for part in STEP_TIME_PARTS}})
    assert list(internals.step_times(steps).columns) == ["t_s", *STEP_TIME_PARTS, "idle_s"]
