"""benchctl report: the figures' data are benchctl.metrics' numbers; what is absent is said; CLI errors exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("plotly")
pytest.importorskip("jinja2")

from report_fixtures import KV_BYTES_PER_TOKEN, make_hwinfo, make_model, make_run  # noqa: E402

from benchctl.cli import main  # noqa: E402
from benchctl.metrics import request_latencies, summarize  # noqa: E402
from benchctl.records import read_records  # noqa: E402
from benchctl.report import ablation, internals, latency, overview, roofline, sweep, timeline  # noqa: E402
from benchctl.report.load import load, load_all  # noqa: E402
from benchctl.report.render import figure_ids, render_html  # noqa: E402


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path / "model")


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"


def _records(run_dir):
    return read_records(run_dir / "requests.jsonl")


def test_summary_is_computed_by_metrics_from_the_records(runs_dir, model):
    run_dir = make_run(runs_dir, "a", model_dir=model, rate=4.0, n=7)  # run.json's summary is left empty
    data = load(run_dir)
    assert data.summary == summarize(_records(run_dir))
    assert data.summary["completed"] == 7
    table = overview.summary_table([data])
    cell = table.loc["requests/s", data.label]
    # never a req/s without the tokens per request and the request count next to it
    assert cell.startswith(f"{data.summary['request_throughput']:,.3f}")
    mean_in = np.mean([r["prompt_tokens"] for r in _records(run_dir)])
    mean_out = np.mean([r["output_tokens"] for r in _records(run_dir)])
    assert f"{mean_in:.1f} in + {mean_out:.1f} out tokens/request, 7 requests" in cell
    assert "poisson 4 req/s" in table.loc["arrivals", data.label]
    assert table.loc["goodput (req/s)", data.label].startswith("no SLOs")


def test_cdf_data_are_the_metrics_latencies(runs_dir, model):
    runs = [
        load(make_run(runs_dir, "a", model_dir=model, n=6)),
        load(make_run(runs_dir, "b", model_dir=model, n=5, rate=2.0)),
    ]
    fig = latency.cdf_figure(runs)
    assert len(fig.data) == 2 * 4
    for trace_index, trace in enumerate(fig.data):
        data = runs[trace_index // 4]
        lat = [request_latencies(r) for r in data.records]
        if trace.meta == "itl_s":
            expected = [g for x in lat for g in x["itl_s"]]
        else:
            expected = [x[trace.meta] for x in lat]
        assert np.allclose(trace.x, np.sort(expected) * 1000.0)
        assert np.allclose(trace.y, np.arange(1, len(expected) + 1) / len(expected))
        assert trace.y[-1] == 1.0


def test_percentile_table_is_the_summary_in_ms(runs_dir, model):
    data = load(make_run(runs_dir, "a", model_dir=model, n=9))
    table = latency.percentile_table([data])
    for metric in ("ttft_s", "tpot_s", "itl_s", "e2el_s"):
        row = table.loc[(metric.removesuffix("_s").upper(), data.label)]
        assert row["count"] == data.summary[metric]["count"]
        assert row["p99 (ms)"] == pytest.approx(data.summary[metric]["p99"] * 1000.0, abs=0.005)


def test_throughput_bars_and_ratios_to_the_baseline(runs_dir, model):
    slow = make_run(runs_dir, "slow", model_dir=model, n=6, decode_gap_s=0.1)
    fast = make_run(runs_dir, "fast", model_dir=model, n=6, decode_gap_s=0.05)
    runs = load_all([str(slow), str(fast)], runs_dir)
    fig = overview.throughput_figure(runs)
    assert [t.name for t in fig.data] == ["requests/s", "output tokens/s", "total tokens/s"]
    for trace, key in zip(fig.data, ("request_throughput", "output_tok_s", "total_tok_s")):
        values = [d.summary[key] for d in runs]
        assert list(trace.y) == values
        assert trace.customdata[0] == pytest.approx(1.0)
        assert trace.customdata[1] == pytest.approx(values[1] / values[0])
        assert trace.customdata[1] > 1.0  # halving the decode gap makes the run faster
        assert "baseline" in trace.text[1]

    rebased = load_all([str(slow)], runs_dir, baseline=str(fast))  # --baseline comes first, added if absent
    assert [d.run_id for d in rebased] == ["fast", "slow"]
    ratios = overview.throughput_ratios(rebased)["output_tok_s"]
    assert ratios[1] == pytest.approx(rebased[1].summary["output_tok_s"] / rebased[0].summary["output_tok_s"])


def test_timeline_spans_are_queue_ttft_and_decode(runs_dir, model):
    data = load(make_run(runs_dir, "a", model_dir=model, n=6, rate=10.0, max_concurrency=2))
    spans = timeline.request_spans(data)
    for i, rec in enumerate(data.done):  # records are in arrival order here
        lat = request_latencies(rec)
        assert spans["queue"]["base"][i] == rec["arrival_s"]
        assert spans["queue"]["width"][i] == pytest.approx(lat["queue_s"])
        assert spans["prefill"]["base"][i] == pytest.approx(rec["start_s"])
        assert spans["prefill"]["width"][i] == pytest.approx(lat["ttft_s"])
        assert spans["decode"]["base"][i] == pytest.approx(rec["first_token_s"])
        assert spans["decode"]["base"][i] + spans["decode"]["width"][i] == pytest.approx(rec["finish_s"])
    assert max(spans["queue"]["width"]) > 0  # the concurrency cap made requests wait

    _, in_engine = timeline.in_flight(data, "start_s", "finish_s")
    _, waiting = timeline.in_flight(data, "arrival_s", "start_s")
    assert max(in_engine) == 2 and min(in_engine) == 0 and in_engine[-1] == 0
    assert max(waiting) >= 1 and min(waiting) == 0


def test_all_at_once_concurrency_peaks_at_the_request_count(runs_dir, model):
    data = load(make_run(runs_dir, "a", model_dir=model, n=6))
    times, counts = timeline.in_flight(data, "start_s", "finish_s")
    assert max(counts) == 6 and counts[-1] == 0
    assert timeline.in_flight(data, "arrival_s", "start_s") == ([], [])  # nobody waited for a slot


def test_step_times_idle_is_the_gap_between_steps():
    import pandas as pd

    steps = pd.DataFrame(
        {
            "t_s": [0.10, 0.30, 0.35],
            "schedule_s": [0.01] * 3,
            "forward_s": [0.03] * 3,
            "sample_s": [0.005] * 3,
            "detokenize_s": [0.005] * 3,
        }
    )
    times = internals.step_times(steps)  # each step lasts 0.05 s: starts 0.05, 0.25, 0.30
    assert np.allclose(times["idle_s"], [0.0, 0.15, 0.0])
    totals = internals.breakdown_totals(steps)
    assert totals["forward_s"] == pytest.approx(0.09) and totals["idle_s"] == pytest.approx(0.15)

    no_parts = internals.step_times(steps[["t_s"]])  # parts unknown: all time between steps is idle
    assert np.allclose(no_parts["idle_s"], [0.0, 0.2, 0.05])


def test_engine_internals_from_steps(runs_dir, model):
    data = load(make_run(runs_dir, "a", model_dir=model, n=6, rate=4.0))
    steps = data.steps
    assert list(internals.batch_size(steps)) == list(steps["num_prefill_seqs"] + steps["num_decode_seqs"])
    fig, absent = internals.timeseries_figure([data])
    assert absent == []
    by_panel = [t for t in fig.data if t.name == data.label]
    kv_used = 100.0 * steps["kv_blocks_used"] / steps["kv_blocks_total"]
    waste = 100.0 - 100.0 * steps["kv_slots_filled"] / steps["kv_slots_allocated"].replace(0, np.nan)
    assert np.allclose(by_panel[1].y, kv_used)
    assert np.allclose(by_panel[2].y, waste, equal_nan=True)
    assert list(by_panel[3].y) == list(steps["preemptions"])
    bars = internals.breakdown_figure([data])
    totals = internals.breakdown_totals(steps)
    assert [t.x[0] for t in bars.data] == pytest.approx([totals[p] for p in internals.PART_COLORS])


def test_engine_internals_say_what_is_absent(runs_dir, model):
    data = load(make_run(runs_dir, "hf", backend="hf", model_dir=model, n=4, steps=False))
    assert data.steps is None
    sec = internals.section([data])
    assert sec.figures == []
    assert any("no steps.jsonl" in n for n in sec.notes) and any("engine_stats" in n for n in sec.notes)
    ids = figure_ids([data], None)
    assert ids == ["fig-throughput", "fig-latency-cdf", "fig-timeline", "fig-concurrency"]


def test_roofline_bytes_and_bandwidth(runs_dir, model, tmp_path):
    run_dir = make_run(runs_dir, "a", model_dir=model, n=6, rate=4.0)
    data = load(run_dir)
    sizes, why = roofline.model_bytes(data.run)
    assert why is None
    assert sizes["weight_bytes"] == (model / "model.safetensors").stat().st_size
    assert sizes["parameters"] == 64 * 16 + 2 * 16 * 48
    assert sizes["kv_bytes_per_token"] == KV_BYTES_PER_TOKEN == 128
    dec = roofline.achieved_bandwidth(data, sizes)
    steps = data.steps
    pure = steps[(steps["num_prefill_seqs"] == 0) & (steps["num_decode_seqs"] > 0)].reset_index(drop=True)
    assert len(dec) == len(pure) > 0
    step_s = 0.001 + 0.03 + 0.005 + 0.002
    expected = (sizes["weight_bytes"] + pure["kv_slots_filled"] * 128) / step_s / 1e9
    assert np.allclose(dec["step_gb_s"], expected)
    assert np.allclose(dec["forward_gb_s"], expected * step_s / 0.03)

    hw = make_hwinfo(tmp_path / "cache", read_gb_s=0.001)
    sec = roofline.section([data], hw)
    [(div_id, fig)] = sec.figures
    whole = next(t for t in fig.data if t.name.endswith("whole step"))
    assert np.allclose(whole.y, expected / 0.001)  # plotted as a fraction of the measured bandwidth
    table = sec.tables[0][1]
    assert table.loc[data.label, "compute ceiling (tok/s)"] == pytest.approx(5e10 / (2 * sizes["parameters"]), rel=1e-3)


def test_roofline_sets_each_run_against_the_measurement_nearest_it(runs_dir, model, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHCTL_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = make_run(runs_dir, "a", model_dir=model, n=6)
    run = json.loads((run_dir / "run.json").read_text())
    run.update(created_at="2026-01-01T00:10:00Z", finished_at="2026-01-01T00:20:00Z")
    (run_dir / "run.json").write_text(json.dumps(run))
    data = load(run_dir)
    hw = make_hwinfo(tmp_path / "cache", gemm_flop_s=8e10)  # measured 2026-01-01T00:00:00Z, 10 min before
    table = roofline.section([data], hw).tables[0][1]
    ceiling = 8e10 / (2 * roofline.model_bytes(data.run)[0]["parameters"])
    assert table.loc[data.label, "compute ceiling (tok/s)"] == pytest.approx(ceiling, rel=1e-3)
    assert table.loc[data.label, "run's total tok/s ÷ ceiling"] == pytest.approx(
        data.summary["total_tok_s"] / ceiling, rel=1e-2
    )
    assert "10 min from the run" in table.loc[data.label, "ceiling measured"]
    caption, bounds = roofline.section([data], hw).tables[1]
    assert "80.0 GFLOP/s" in caption and "10 min from the run" in caption
    assert bounds.loc["all steps", "steps"] == len(data.steps)


def test_step_bounds_take_the_slower_of_compute_and_memory():
    import pandas as pd

    steps = pd.DataFrame(
        {
            "t_s": [1.0, 2.0, 3.0, 4.0],
            "schedule_s": [0.0] * 4,
            "forward_s": [0.5, 0.1, 0.2, 0.4],
            "sample_s": [0.0] * 4,
            "detokenize_s": [0.0] * 4,
            "num_batched_tokens": [100, 2, 40, 40],
            "num_prefill_tokens": [98, 0, 0, 0],
            "num_prefill_seqs": [1, 0, 0, 0],
            "num_decode_seqs": [2, 2, 40, 40],
            "kv_slots_filled": [100, 300, 0, 0],
        }
    )
    sizes = {
        "gemm_parameters_per_token": 1000,
        "lm_head_parameters": 100,
        "weight_bytes": 4000,
        "kv_bytes_per_token": 10,
    }
    bounds = roofline.step_bounds(steps, sizes, gemm_flop_s=1e6, read_bytes_s=1e5)
    # prefill step: 2 * (1000 * 100 + 100 * 3) = 200,600 FLOPs -> 0.2006 s; bytes 4000 + 1000 -> 0.05 s
    assert bounds.loc[0, "flops"] == 200_600 and bounds.loc[0, "bound_s"] == pytest.approx(0.2006)
    # 2-seq decode: 2 * (1000 * 2 + 100 * 2) = 4,400 FLOPs -> 0.0044 s; bytes 4000 + 3000 -> 0.07 s (memory-bound)
    assert bounds.loc[1, "bound_s"] == pytest.approx(0.07)
    assert list(bounds["kind"]) == ["with prefill tokens", "decode only, 1-8 seqs"] + ["decode only, 33-64 seqs"] * 2
    table = roofline.bound_table(bounds)
    assert list(table.index) == ["with prefill tokens", "decode only, 1-8 seqs", "decode only, 33-64 seqs", "all steps"]
    big = 2 * (1000 * 40 + 100 * 40) / 1e6  # 0.088 s each, compute-bound
    assert table.loc["decode only, 33-64 seqs", "bound (s)"] == pytest.approx(2 * big, rel=1e-3)
    assert table.loc["decode only, 33-64 seqs", "efficiency (bound ÷ time)"] == pytest.approx(2 * big / 0.6, rel=5e-3)
    assert table.loc["all steps", "time (s)"] == pytest.approx(1.2)
    assert table.loc["all steps", "efficiency (bound ÷ time)"] == pytest.approx(
        (0.2006 + 0.07 + 2 * big) / 1.2, rel=5e-3
    )  # 3 significant digits
    assert table.loc["decode only, 1-8 seqs", "ms per token"] == pytest.approx(50)
    # speculative decoding: 4 sequences with 8 draft tokens are 12 rows of GEMMs, each needing logits
    spec = steps.iloc[[1]].assign(num_batched_tokens=12, num_decode_seqs=4, num_draft_tokens=8, kv_slots_filled=0)
    assert roofline.step_bounds(spec, sizes, 1e6, 1e5).loc[0, "flops"] == 2 * (1000 * 12 + 100 * 12)


def test_roofline_says_what_is_missing(runs_dir, model, tmp_path):
    data = load(make_run(runs_dir, "a", model_dir=model, n=4))
    sec = roofline.section([data], None)
    assert any("benchctl hwinfo" in n for n in sec.notes)
    assert "measured bandwidth missing" in sec.figures[0][1].layout.title.text
    elsewhere = load(make_run(runs_dir, "b", model_dir=tmp_path / "gone", n=4))
    sec = roofline.section([elsewhere], None)
    assert sec.figures == [] and any("no *.safetensors" in n for n in sec.notes)
    other_cpu = roofline.section([data], make_hwinfo(tmp_path / "c", cpu="Other CPU"))
    assert any("Other CPU" in n for n in other_cpu.notes)


def test_sweeps_are_runs_differing_only_in_rate(runs_dir, model):
    a = load(make_run(runs_dir, "r1", model_dir=model, rate=1.0, n=5))
    b = load(make_run(runs_dir, "r4", model_dir=model, rate=4.0, n=5))
    c = load(make_run(runs_dir, "r2", model_dir=model, rate=2.0, n=5))
    other = load(make_run(runs_dir, "x", model_dir=model, rate=2.0, n=5, engine_args={"max_num_seqs": "2"}))
    [found] = sweep.find_sweeps([a, b, other, c])
    assert [d.run_id for d in found] == ["r1", "r2", "r4"]
    assert sweep.section([a, other]) is None
    table = sweep.sweep_table(found)
    assert list(table["offered (req/s)"]) == [1.0, 2.0, 4.0]
    assert list(table["TTFT p99 (ms)"]) == [round(d.summary["ttft_s"]["p99"] * 1000, 3) for d in found]
    fig = sweep.sweep_figure(found, 0)
    ttft = next(t for t in fig.data if t.name == "TTFT p99")
    assert list(ttft.x) == [1.0, 2.0, 4.0]


def test_goodput_override_is_computed_by_summarize(runs_dir, model):
    run_dir = make_run(runs_dir, "a", model_dir=model, n=6)
    data = load(run_dir, slos_ms={"ttft": 225})
    assert data.summary == summarize(_records(run_dir), slos_ms={"ttft": 225})
    assert data.summary["good_requests"] == 3  # TTFTs are 200, 210, ... 250 ms


def test_cli_writes_one_self_contained_file(runs_dir, model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCHCTL_CACHE_DIR", str(tmp_path / "cache"))
    make_hwinfo(tmp_path / "cache")
    a = make_run(runs_dir, "a", model_dir=model, rate=2.0, n=5)
    b = make_run(runs_dir, "b", model_dir=model, rate=4.0, n=5)
    out = tmp_path / "report.html"
    assert main(["report", str(a), "b", "--output-dir", str(runs_dir), "-o", str(out), "--goodput", "ttft:300"]) == 0
    html = out.read_text()
    assert html.count("* plotly.js v") == 1  # the library, inlined once
    assert "<script src=" not in html and '<link rel="stylesheet"' not in html  # nothing to fetch
    hw = json.loads((tmp_path / "cache/hwinfo.json").read_text())
    for div_id in figure_ids(load_all([str(a), str(b)], runs_dir), hw):
        assert html.count(f'id="{div_id}"') == 1
    assert html.count("Plotly.newPlot(") == 9
    assert "fig-sweep-1" in html and "&lt;" not in html.split("</head>")[0][-200:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["no-such-run"], "no run"),
        (["{run}", "-o", "{tmp}/missing-folder/r.html"], "does not exist"),
        (["{run}", "-o", "{tmp}"], "is a directory"),
        (["{run}", "--goodput", "ttft:fast"], "ttft|tpot|e2el"),
        (["{run}", "--baseline", "nope"], "no run"),
    ],
)
def test_cli_user_errors_exit_2(runs_dir, model, tmp_path, capsys, args, message):
    run = make_run(runs_dir, "a", model_dir=model, n=3)
    argv = ["report", *(a.format(run=run, tmp=tmp_path) for a in args), "--output-dir", str(runs_dir)]
    if "-o" not in args:
        argv += ["-o", str(tmp_path / "r.html")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_render_html_escapes_run_text(runs_dir, model):
    run_dir = make_run(runs_dir, "a", model_dir=model, n=3)
    run = json.loads((run_dir / "run.json").read_text())
    run["label"] = "<script>alert(1)</script>"
    (run_dir / "run.json").write_text(json.dumps(run))
    html = render_html([load(run_dir)], None)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html


def test_profile_section_shows_the_trace_summary(runs_dir, model):
    plain = make_run(runs_dir, "plain", model_dir=model)
    profiled = make_run(runs_dir, "profiled", model_dir=model)
    summary = {
        "num_steps": 12,
        "range_coverage": 0.97,
        "idle_between_steps_fraction": 0.02,
        "host_syncs_per_step": 1.0,
        "top_operators": [
            {"name": "aten::mm", "self_ms": 30.0, "calls": 90, "self_share": 0.75},
            {"name": "aten::index_select", "self_ms": 10.0, "calls": 60, "self_share": 0.25},
        ],
    }
    (profiled / "profile_summary.json").write_text(json.dumps(summary))
    assert "fig-profile-top-ops" not in figure_ids([load(plain)], None)
    runs = [load(plain), load(profiled)]
    assert "fig-profile-top-ops" in figure_ids(runs, None)
    from benchctl.report import profiles

    sec = profiles.section(runs)
    caption, headline = sec.tables[0]
    assert list(headline["range coverage"]) == [0.97] and list(headline["host syncs / step"]) == [1.0]
    ((_, fig),) = sec.figures
    assert list(fig.data[0].x) == [10.0, 30.0] and list(fig.data[0].y) == ["aten::index_select", "aten::mm"]


def test_ablations_are_runs_differing_only_in_engine_options(runs_dir, model):
    base = load(make_run(runs_dir, "base", model_dir=model, n=5, engine_args={"block_size": "16"}))
    slow = load(
        make_run(
            runs_dir,
            "slow",
            model_dir=model,
            n=5,
            decode_gap_s=0.1,
            engine_args={"block_size": "16", "sampler": "per_seq"},
        )
    )
    dropped = load(make_run(runs_dir, "dropped", model_dir=model, n=5, engine_args={}))
    other_workload = load(make_run(runs_dir, "other", model_dir=model, n=7, engine_args={"sampler": "per_seq"}))
    # a second repetition of the baseline, run after the others (sweeps go round-robin), a little slower
    base2 = load(make_run(runs_dir, "base2", model_dir=model, n=5, decode_gap_s=0.06, engine_args={"block_size": "16"}))
    [group] = ablation.find_ablations([base, slow, other_workload, dropped, base2])
    assert [d.run_id for d in group] == ["base", "slow", "dropped", "base2"]
    assert ablation.section([base, other_workload]) is None  # different workloads are not an ablation
    table = ablation.ablation_table(group).reset_index()
    assert list(table["change"]) == ["baseline", "sampler=per_seq", "block_size=default"]
    assert table["runs"].tolist() == [2, 1, 1]
    base_runs = [base.summary["output_tok_s"], base2.summary["output_tok_s"]]
    tok_s = [sum(base_runs) / 2, slow.summary["output_tok_s"], dropped.summary["output_tok_s"]]
    assert table["output tok/s"].tolist() == [round(v, 2) for v in tok_s]
    assert table["spread (%)"].tolist() == [round(100 * (max(base_runs) - min(base_runs)) / tok_s[0], 2), 0, 0]
    assert table["spread (%)"][0] > 0
    assert table["vs baseline (%)"].tolist() == [round(100 * (v / tok_s[0] - 1), 2) for v in tok_s]
    assert table["vs baseline (%)"][1] < 0  # twice the decode gap: slower than the baseline
    assert table["mean batch"].tolist() == [3.5, 3.5, 3.5]  # from run.json engine_stats
    fig = ablation.ablation_figure(group, 0)
    assert list(fig.data[0].x) == pytest.approx(tok_s, abs=0.01)
    assert fig.data[0].error_x.arrayminus[0] == pytest.approx(tok_s[0] - min(base_runs), abs=0.01)
    assert fig.data[0].error_x.array[0] == pytest.approx(max(base_runs) - tok_s[0], abs=0.01)
    assert fig.data[0].y[0] == "baseline (2 runs)"
    assert "fig-ablation-1" in figure_ids(group, None)


def test_conversation_section_shows_ttft_by_turn_and_the_cache(runs_dir, model):
    from benchctl.report import conversations

    plain = load(make_run(runs_dir, "plain", model_dir=model, n=6))
    assert conversations.section([plain]) is None  # single-turn runs: no section
    run_dir = make_run(runs_dir, "multi", model_dir=model, n=6)
    rows = read_records(run_dir / "requests.jsonl")
    for i, r in enumerate(rows):  # two conversations of three turns
        r.update(conversation_id=f"c{i // 3}", turn=i % 3, extra={"num_cached_tokens": 16 * (i % 3)})
    (run_dir / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = json.loads((run_dir / "run.json").read_text())
    run["serving_stats"] = {"prefix_cache": {"source": "vllm:prefix_cache_queries", "hit_rate": 0.25}}
    (run_dir / "run.json").write_text(json.dumps(run))
    multi = load(run_dir)
    sec = conversations.section([multi, plain])
    [(div_id, fig)] = sec.figures
    assert div_id == "conversations-ttft-by-turn" and list(fig.data[0].x) == [0, 1, 2]
    for turn, median in zip(fig.data[0].x, fig.data[0].y):
        ttfts = [request_latencies(r)["ttft_s"] * 1000 for r in rows if r["turn"] == turn]
        assert median == pytest.approx(float(np.median(ttfts)))
    [(_, table)] = sec.tables
    row = table.iloc[0]
    conv = summarize(rows)["conversations"]
    assert row["conversations"] == 2 and row["hit rate (server /metrics)"] == 0.25
    assert row["prompt tokens cached (engine)"] == pytest.approx(conv["cached_prompt_fraction"], abs=1e-3)
    assert row["TTFT later p50 (ms)"] == pytest.approx(conv["ttft_later_turns_s"]["median"] * 1000, abs=1e-3)
    assert sec.notes == ["1 run(s) are single-turn and not shown here."]
    assert "conversations-ttft-by-turn" in figure_ids([multi], None)


def test_a_report_of_many_runs_renders(runs_dir, model):
    # an 11-cell sweep failed here: plotly refuses stacked subplots spaced over 1 / (rows - 1)
    runs = [
        load(make_run(runs_dir, f"r{i:02d}", model_dir=model, n=3, engine_args={"block_size": str(i)}))
        for i in range(13)
    ]
    html = render_html(runs, None)
    assert all(f"r{i:02d}" in html for i in range(13))
    assert "Step time per step" in html and "Request timeline" in html
