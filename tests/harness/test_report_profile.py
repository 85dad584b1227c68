"""The report's profile figures: the step split, the timeline and ncu's bandwidth bars carry the summary's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("plotly")

from report_fixtures import make_model, make_run  # noqa: E402

from benchctl import profile  # noqa: E402
from benchctl.report import profiles  # noqa: E402
from benchctl.report.load import load  # noqa: E402
from benchctl.report.render import figure_ids, render_html  # noqa: E402

NCU_CSV = Path(__file__).parent / "data" / "ncu" / "ncu.csv"
ANN = "user_annotation"
EVENTS = [
    {"ph": "X", "cat": ANN, "name": "engine.step", "ts": 0, "dur": 40, "pid": 1, "tid": 1},
    {"ph": "X", "cat": ANN, "name": "engine.forward", "ts": 5, "dur": 30, "pid": 1, "tid": 1},
    {"ph": "X", "cat": ANN, "name": "engine.step", "ts": 50, "dur": 20, "pid": 1, "tid": 1},
    {"ph": "X", "cat": ANN, "name": "engine.sample", "ts": 52, "dur": 10, "pid": 1, "tid": 1},
    {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 6, "dur": 20, "pid": 1, "tid": 1},
]


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path / "model")


def _profiled(root: Path, name: str, model: Path, summary: dict) -> Path:
    run_dir = make_run(root, name, model_dir=model)
    (run_dir / "profile_summary.json").write_text(json.dumps(summary))
    return run_dir


def test_step_split_and_timeline_figures_carry_the_trace(tmp_path, model):
    summary = {
        "num_steps": 2,
        "top_operators": [{"name": "aten::mm", "self_ms": 0.02, "calls": 1, "self_share": 1}],
        **profile.trace_views(EVENTS),
    }
    run = load(_profiled(tmp_path / "runs", "torch", model, summary))
    assert figure_ids([run], None)[-3:] == ["fig-profile-top-ops", "fig-profile-step-split", "fig-profile-timeline-0"]
    sec = profiles.section([run])
    figures = dict(sec.figures)
    split = {t.name: t for t in figures["fig-profile-step-split"].data}
    assert list(split["forward"].y) == [0.03, 0.0] and list(split["sample"].y) == [0.0, 0.01]
    assert list(split["other"].y) == [0.01, 0.01] and list(split["forward"].x) == [0, 1]
    lanes = {t.name: t for t in figures["fig-profile-timeline-0"].data}
    assert list(lanes["engine steps"].base) == [0.0, 0.05] and list(lanes["engine steps"].x) == [0.04, 0.02]
    assert list(lanes["engine phases"].customdata) == ["engine.forward", "engine.sample"]
    assert list(lanes["host ops (outermost)"].customdata) == ["aten::mm"]


def test_views_from_the_trace_when_the_summary_predates_them(tmp_path, model):
    run_dir = _profiled(tmp_path / "runs", "old", model, {"num_steps": 2})
    (run_dir / "torch_trace.json").write_text(json.dumps({"traceEvents": EVENTS}))
    ids = figure_ids([load(run_dir)], None)
    assert "fig-profile-step-split" in ids and "fig-profile-timeline-0" in ids
    (run_dir / "torch_trace.json").write_text("{not json")
    run = load(run_dir)
    assert "fig-profile-step-split" not in figure_ids([run], None)
    assert any("could not be read" in note for note in run.notes)


def test_ncu_kernel_table_and_bandwidth_bars(tmp_path, model):
    (tmp_path / "ncu.csv").write_text(NCU_CSV.read_text())
    run = load(_profiled(tmp_path / "runs", "ncu", model, profile.summarize_ncu(tmp_path)))
    sec = profiles.section([run])
    figures = dict(sec.figures)
    (bars,) = figures["fig-profile-ncu-bandwidth"].data
    # slowest kernel at the top: plotly draws the last y first
    assert list(bars.y) == [
        "paged_attention_reduce_kernel<__nv_bfloat16, 128, 512>",
        "paged_attention_kernel<__nv_bfloat16, 128, 16, 512>",
    ]
    assert list(bars.x) == [pytest.approx(1430.0), pytest.approx(3615.0)]
    assert list(bars.text) == ["30% of peak", "75% of peak"]
    ((caption, table),) = [(c, t) for c, t in sec.tables if c.startswith(run.label + ": ncu")]
    assert "3 kernel launches" in caption and list(table["launches"]) == [2, 1]
    html = render_html([run], None)
    assert "fig-profile-ncu-bandwidth" in html and "DRAM GB/s" in html
