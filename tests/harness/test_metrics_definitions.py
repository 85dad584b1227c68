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


def rec(
    request_id,
    expected,
    output,
    start,
    first,
    finish,
    *,
    error=None,
    turn=None,
    conversation=None,
    prompt=10,
    extra=None,
):
    return {
        "request_id": request_id,
        "prompt_tokens": prompt,
        "expected_output_tokens": expected,
        "output_tokens": output,
        "arrival_s": 0.0,
        "start_s": start,
        "first_token_s": first,
        "finish_s": finish,
        "token_times_s": None,
        "chunk_tokens": None,
        "error": error,
        "turn": turn,
        "conversation_id": conversation,
        "extra": extra or {},
    }


# --- "completed" -----------------------------------------------------------------------------------------------


def test_completed_is_one_definition_that_record_ok_and_every_summary_ask(monkeypatch, tmp_path):
    assert metrics.is_completed({"error": None, "finish_s": 1.0})
    assert not metrics.is_completed({"error": "boom", "finish_s": 1.0})
    assert not metrics.is_completed({"error": None, "finish_s": None})  # never finished
    for record in (
        RequestRecord("a", 1, 1, finish_s=1.0),
        RequestRecord("b", 1, 1, error="x", finish_s=1.0),
        RequestRecord("c", 1, 1),
    ):
        assert record.ok == metrics.is_completed(record.to_dict())

    # Change the definition (say, a zero-token answer is a failure) and every reader follows it.
    rows = [
        rec("a", 4, 4, 0.0, 0.5, 1.0, turn=0, conversation="c"),
        rec("b", 4, 0, 0.0, None, 1.0, turn=1, conversation="c"),
    ]
    assert metrics.summarize(rows)["completed"] == 2
    monkeypatch.setattr(
        metrics_latency,
        "is_completed",
        lambda r: r.get("error") is None and r.get("finish_s") is not None and r["output_tokens"] > 0,
    )
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
    return RunData(
        path=Path("run"),
        run=run or {"run_id": "run"},
        records=rows,
        summary=metrics.summarize(rows),
        latencies=[metrics.request_latencies(r) for r in done],
        done=done,
        steps=None,
    )


# Two conversations of two turns, and a failed third turn. TTFTs (s): turn 0: 0.5, 0.7; turn 1: 0.1, 0.3.
TURNS = [
    rec("a0", 4, 4, 0.0, 0.5, 1.0, turn=0, conversation="a"),
    rec("a1", 4, 4, 2.0, 2.1, 3.0, turn=1, conversation="a"),
    rec("b0", 4, 4, 0.0, 0.7, 1.0, turn=0, conversation="b"),
    rec("b1", 4, 4, 2.0, 2.3, 3.0, turn=1, conversation="b"),
    rec("b2", 4, 0, 4.0, None, 4.5, turn=2, conversation="b", error="HTTP 500"),
]


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

    rows = [
        rec("a", 4, 4, 0.0, 0.5, 1.0, prompt=100, extra={"num_cached_tokens": 0}),
        rec("b", 4, 4, 0.0, 0.5, 1.0, prompt=300, extra={"num_cached_tokens": 240}),
        rec("c", 4, 4, 0.0, 0.5, 1.0, prompt=600),
    ]  # its engine does not say: left out, not counted as 0
    assert metrics.cached_prompt_fraction(rows) == pytest.approx(240 / 400)
    assert metrics.cached_prompt_fraction(rows[2:]) is None
    assert metrics.cached_fraction is metrics.cached_prompt_fraction  # the old name, kept for importers
    assert metrics.server_prefix_cache_hit_rate(600.0, 1000.0) == {
        "hit_tokens": 600.0,
        "query_tokens": 1000.0,
        "hit_rate": 0.6,
    }
    assert metrics.server_prefix_cache_hit_rate(0.0, 0.0)["hit_rate"] is None  # nothing looked up
    assert metrics.server_prefix_cache_hit_rate(None, 10.0) is None
    # the scraper's summary of /metrics asks the same function: change it and the scrape result follows
    series = {
        "reference_engine:prefix_cache_hits_total": {"first": 0.0, "max": 30.0, "last": 30.0},
        "reference_engine:prefix_cache_queries_total": {"first": 0.0, "max": 120.0, "last": 120.0},
    }
    assert scrape.prefix_cache_hit_rate(series) == {
        "source": "reference_engine:prefix_cache_queries",
        "hit_tokens": 30.0,
        "query_tokens": 120.0,
        "hit_rate": 0.25,
    }
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

    runs = [
        load(make_run(tmp_path, name, n=3, engine_args=args))
        for name, args in (("base", {"block_size": "16"}), ("other", {"block_size": "32"}))
    ]
    table = ablation.ablation_table(runs)
    assert list(table.columns[-len(STEP_TIME_PARTS) :]) == [f"{p.removesuffix('_s')} (s)" for p in STEP_TIME_PARTS]
    steps = pd.DataFrame({"t_s": [1.0], **{part: [0.1] for part in STEP_TIME_PARTS}})
    assert list(internals.step_times(steps).columns) == ["t_s", *STEP_TIME_PARTS, "idle_s"]


# --- ceilings, the roofline bound and the other arithmetic the report and console no longer do ---------------------


def _measurement(when, gemm_flop_s, cpu="Test CPU"):
    return {"measured_at": when, "gemm_fp32_flop_s": gemm_flop_s, "hardware": {"cpu": cpu}}


def test_ceiling_shares_by_hand():
    from benchctl.metrics import ceiling

    assert ceiling.compute_ceiling_tok_s(1e9, 500) == 1e6  # 1e9 FLOP/s ÷ (2 × 500 FLOPs per token)
    near, best = _measurement("10:00", 4e9), _measurement("12:00", 8e9)
    assert ceiling.best_measurement("Test CPU", [near, best, _measurement("11:00", 9e9, cpu="Other")]) is best
    got = ceiling.ceiling_from((near, 3.0), parameters=1000, total_tok_s=500.0, best=best)
    # ceiling 4e9 / 2000 = 2e6 tok/s, share 500 / 2e6; at the best rate 8e9 / 2000 = 4e6 tok/s, share 500 / 4e6
    assert got["ceiling_tok_s"] == 2e6 and got["share"] == pytest.approx(2.5e-4)
    assert got["share_of_best"] == pytest.approx(1.25e-4) and got["minutes_away"] == 3.0
    assert ceiling.below_best(got)  # 4 < 0.9 × 8 GFLOP/s
    assert not ceiling.below_best(ceiling.ceiling_from((_measurement("12:05", 7.5e9), 0.0), 1000, 500.0, best))
    assert ceiling.ceiling_from((near, 0.0), 1000, None)["share"] is None  # a failed run has no total
    assert ceiling.ceiling_from(None, 1000, 500.0) is None


def test_report_console_and_hwinfo_call_the_metrics_functions():
    from benchctl import console, hwinfo
    from benchctl.metrics import ceiling, steps
    from benchctl.report import internals, roofline

    assert hwinfo.ceiling_from is ceiling.ceiling_from and hwinfo.best_measurement is ceiling.best_measurement
    assert hwinfo.compute_ceiling_tok_s is ceiling.compute_ceiling_tok_s and console.below_best is ceiling.below_best
    assert roofline.step_bounds is steps.step_bounds
    assert internals.step_times is steps.step_times and internals.batch_size is steps.batch_size


def test_decode_bandwidth_and_its_medians_by_hand():
    import pandas as pd

    from benchctl.metrics.steps import decode_bandwidth, decode_summary, kv_waste_pct, model_sizes

    frame = pd.DataFrame(
        {
            "t_s": [1.0, 2.0, 3.0],
            "forward_s": [0.4, 0.1, 0.3],
            "schedule_s": [0.1, 0.1, 0.1],
            "num_prefill_seqs": [1, 0, 0],
            "num_decode_seqs": [0, 2, 4],
            "kv_slots_filled": [10, 100, 300],
            "kv_slots_allocated": [16, 128, 320],
        }
    )
    sizes = {"weight_bytes": 1000, "kv_bytes_per_token": 10}
    dec = decode_bandwidth(frame, sizes)
    # the prefill step is left out; bytes 1000 + 100 × 10 = 2000 in 0.2 s, 1000 + 300 × 10 = 4000 in 0.4 s
    assert list(dec["bytes_read"]) == [2000, 4000]
    assert list(dec["step_gb_s"]) == pytest.approx([1e-5, 1e-5])
    assert list(dec["forward_gb_s"]) == pytest.approx([2e-5, 4000 / 0.3 / 1e9])
    found = decode_summary(dec, read_gb_s=1e-4)
    assert found["decode_steps"] == 2 and found["median_step_s"] == pytest.approx(0.3)
    assert found["median_decode_tok_s"] == pytest.approx((2 / 0.2 + 4 / 0.4) / 2)  # 10 tok/s each
    assert found["fraction_of_measured"] == pytest.approx(0.1)
    assert list(kv_waste_pct(frame)) == pytest.approx([37.5, 21.875, 6.25])  # 6/16, 28/128, 20/320 slots empty
    config = {
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_size": 16,
        "vocab_size": 64,
        "tie_word_embeddings": False,
    }
    sizes = model_sizes(config, parameters=5000, weight_bytes=20_000, dtype="bf16")
    # untied: embedding and LM head are 64 × 16 = 1024 each; KV: 2 × 2 layers × 2 heads × 4 dims × 2 bytes = 64
    assert sizes["lm_head_parameters"] == 1024 and sizes["gemm_parameters_per_token"] == 5000 - 2048
    assert sizes["kv_bytes_per_token"] == 64


def test_across_runs_and_over_requests_by_hand():
    assert metrics.ratios_to_first([2.0, 3.0, None, 0.0]) == [1.0, 1.5, None, 0.0]
    assert metrics.ratios_to_first([0.0, 3.0]) == [None, None] and metrics.ratios_to_first([None, 1.0]) == [None] * 2
    assert metrics.mean_present([None, 1.0, 3.0]) == 2.0 and metrics.mean_present([None]) is None
    assert metrics.spread_fraction([90.0, 110.0, None]) == pytest.approx(0.2)  # (110 - 90) / 100
    x, y = metrics.empirical_cdf([3.0, 1.0, 2.0, 2.0])
    assert list(x) == [1.0, 2.0, 2.0, 3.0] and list(y) == [0.25, 0.5, 0.75, 1.0]
    # a: in the engine 0-2 s, b: 1-3 s, c: never started (failed before it was sent)
    rows = [rec("a", 4, 4, 0.0, 0.5, 2.0), rec("b", 4, 4, 1.0, 1.5, 3.0), rec("c", 4, 0, None, None, None)]
    assert metrics.in_flight(rows, "start_s", "finish_s") == ([0.0, 0.0, 1.0, 2.0, 3.0], [0, 1, 2, 1, 0])
    lat = [metrics.request_latencies(r) for r in rows]
    assert metrics.latency_values(lat, "ttft_s") == [0.5, 0.5]  # c has none


# --- failures, short and over-long outputs: counted once, shown by show, compare, the report and the gate --------

# asked 4: a got 4, b got 2 (short), c got 6 (over), d failed after 5 (over, and failed), e asked for nothing
LENGTHS = [
    rec("a", 4, 4, 0.0, 0.5, 1.0),
    rec("b", 4, 2, 0.0, 0.5, 1.0),
    rec("c", 4, 6, 0.0, 0.5, 1.0),
    rec("d", 4, 5, 0.0, 0.5, 1.5, error="stream ended early"),
    rec("e", None, 3, 0.0, 0.5, 1.0),
]


def test_short_and_over_long_outputs_are_counted_from_the_records():
    s = metrics.summarize(LENGTHS)
    assert (s["completed"], s["failed"]) == (4, 1)
    assert s["output_tokens_short"] == 1  # b; d is short of nothing it finished, and failed anyway
    assert s["output_tokens_over"] == 2  # c and d: more tokens than max_tokens, whether or not the client failed it
    assert metrics.request_counts(s) == {"completed": 4, "failed": 1, "output_tokens_short": 1, "output_tokens_over": 2}
    assert metrics.request_counts({"completed": 3}) == {
        "completed": 3,
        "failed": None,
        "output_tokens_short": None,
        "output_tokens_over": None,
    }  # an older run.json
    assert metrics.request_counts(None)["failed"] is None


def _write_run(folder, run_id, summary, status="completed"):
    path = folder / run_id
    path.mkdir(parents=True)
    run = {
        "schema_version": 1,
        "run_id": run_id,
        "status": status,
        "config": {"backend": "hf"},
        "workload": {"num_requests": 4, "dataset": "random", "seed": 0},
        "environment": {"hardware": {}},
        "summary": summary,
    }
    if status == "failed":
        run["error"] = "server died"
    (path / "run.json").write_text(json.dumps(run))
    return path


GOOD = {
    "num_requests": 4,
    "completed": 4,
    "failed": 0,
    "output_tokens_short": 0,
    "output_tokens_over": 1,
    "duration_s": 2.0,
    "request_throughput": 2.0,
    "input_tok_s": 100.0,
    "output_tok_s": 40.0,
    "total_tok_s": 140.0,
    "ttft_s": {"count": 4, "mean": 0.5, "median": 0.5, "p99": 0.8},
}
# every request failed: run.json stores null for the rates over no time and the percentiles of nothing
FAILED = {
    "num_requests": 4,
    "completed": 0,
    "failed": 4,
    "output_tokens_short": 0,
    "output_tokens_over": 0,
    "duration_s": 0.0,
    "request_throughput": None,
    "input_tok_s": None,
    "output_tok_s": None,
    "total_tok_s": None,
    "ttft_s": {"count": 0, "mean": None},
}


def test_compare_and_show_a_failed_run(tmp_path, capsys):
    from rich.console import Console

    from benchctl import console
    from benchctl.cli import main

    _write_run(tmp_path, "20250101-000000-hf-aaaaaa", GOOD)
    _write_run(tmp_path, "20250101-000001-hf-bbbbbb", FAILED, status="failed")
    assert main(["compare", "20250101-000000", "20250101-000001", "--output-dir", str(tmp_path), "--json"]) == 0
    rows = {r["metric"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["failed"]["values"] == [0, 4] and rows["completed"]["values"] == [4, 0]
    assert rows["output_tokens_over"]["values"] == [1, 0] and rows["failed"]["ratios"] == [None, None]
    assert rows["output_tok_s"]["values"] == [40.0, None] and rows["output_tok_s"]["ratios"] == [1.0, None]
    assert rows["ttft_mean_ms"]["values"] == [500.0, None]
    assert main(["compare", "20250101-000000", "20250101-000001", "--output-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    output_row = next(line for line in table.splitlines() if "output_tok_s" in line)
    assert "40.00" in output_row and "—" in output_row
    assert main(["show", "20250101-000001", "--output-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "0 / 4" in shown  # completed / failed
    wide = Console(width=200, record=True)
    wide.print(console.summary_table({"run_id": "x", "summary": GOOD}))
    text = wide.export_text()
    assert "outputs shorter / longer than asked for" in text and "0 / 1" in text
    wide.print(console.summary_table({"run_id": "old", "summary": {"completed": 3, "failed": 0}}))
    assert "— / —" in wide.export_text()  # an older run.json without the counts


def test_the_report_and_the_gate_count_them_too(tmp_path):
    from benchctl import regress
    from benchctl.report import overview

    data = _run_data(LENGTHS)
    column = overview.summary_table([data])[data.label]
    assert column["completed / failed"] == "4 / 1"
    assert column["outputs shorter / longer than asked for"] == "1 / 2"
    # the gate fails a candidate with any failed, short or over-long request
    assert regress.failure_count({"summary": metrics.summarize(LENGTHS)}) == 1 + 1 + 2
    assert regress.failure_count({"summary": {"failed": 0, "output_tokens_short": 0, "output_tokens_over": 3}}) == 3
    assert regress.failure_count({"summary": None}) == 0


# --- the anchors' names --------------------------------------------------------------------------------------


def test_docs_table_and_name_map_agree_and_cover_the_summary():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text(encoding="utf-8")
    section = text.split("## Requests, throughput and latency")[1].split("\n\n")[1]
    table = {}
    for line in section.splitlines()[2:]:
        ours, _, *anchors = [cell.strip() for cell in line.strip("|").split("|")]
        table[ours.strip("`")] = dict(
            zip(("vllm", "guidellm", "aiperf"), (None if a == "—" else a.replace("`", "") for a in anchors))
        )
    assert table == metrics.NAME_MAP
    summary = metrics.summarize(LENGTHS, slos_ms={"ttft": 100})
    scalars = {k for k, v in summary.items() if not isinstance(v, dict) or "count" in v}
    assert scalars - {"slos_ms", "good_requests"} == set(metrics.NAME_MAP)  # every number of a summary is named
