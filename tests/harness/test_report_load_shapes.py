"""Report sections of issue 26: load curves and stops (report/load_shapes.py), Pareto fronts and workload grids
(report/pareto.py). Every number drawn is checked against benchctl.metrics on the same records."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("plotly")

from report_fixtures import make_records, make_run  # noqa: E402

from benchctl.metrics import flat_metrics, pareto_front, per_user_tok_s, summarize, summarize_windows  # noqa: E402
from benchctl.report import load_shapes, pareto  # noqa: E402
from benchctl.report.load import load  # noqa: E402
from benchctl.report.render import figure_ids  # noqa: E402


def edit_run(run_dir, **changes) -> None:
    """Change run.json's config (workload_options merged) or other top-level keys."""
    run = json.loads((run_dir / "run.json").read_text())
    options = changes.pop("workload_options", None)
    if options:
        run["config"]["workload_options"].update(options)
    for key, value in changes.items():
        if key in ("backend",):
            run["config"][key] = value
        else:
            run[key] = value
    (run_dir / "run.json").write_text(json.dumps(run))


def test_a_concurrency_sweep_gives_one_pareto_curve_per_engine(tmp_path):
    runs = []
    for backend, gaps in (("reference", {1: 0.02, 2: 0.025, 3: 0.2, 4: 0.04}), ("vllm", {1: 0.015, 4: 0.03})):
        for c, gap in gaps.items():
            d = make_run(
                tmp_path, f"{backend}-{c}", backend=backend, n=8, steps=False, decode_gap_s=gap, max_concurrency=c
            )
            edit_run(d, workload_options={"max_concurrency": c})
            runs.append(load(d))
    groups = pareto.concurrency_groups(runs)
    assert len(groups) == 1 and sorted(groups[0]) == ["reference", "vllm"]
    fig = pareto.pareto_figure(groups[0], 0)
    fronts = {t.name: t for t in fig.data if t.name.endswith("(front)")}
    reference = [d for d in runs if d.run["config"]["backend"] == "reference"]
    points = [(flat_metrics(d.summary)["output_tok_s"], per_user_tok_s(d.summary)) for d in reference]
    expected = [points[i] for i in pareto_front(points)]
    front = fronts["reference (front)"]
    assert list(front.x) == pytest.approx([x for x, _ in expected]) and list(front.y) == pytest.approx(
        [y for _, y in expected]
    )
    assert len(expected) == 3 and len(points) == 4  # concurrency 3, slow for its users and in total, is beaten
    assert per_user_tok_s(reference[0].summary) == pytest.approx(1 / reference[0].summary["tpot_s"]["median"])
    assert pareto.section(runs) is not None and pareto.section(runs[:1]) is None


def test_a_workload_grid_is_drawn_as_a_heat_map_of_the_runs_metrics(tmp_path):
    runs = []
    for n_in in (128, 1024):
        for n_out in (64, 512):
            d = make_run(tmp_path, f"g-{n_in}-{n_out}", n=6, steps=False, decode_gap_s=0.01 * (1 + n_in / 1024))
            edit_run(d, workload_options={"random_input_len": n_in, "random_output_len": n_out})
            runs.append(load(d))
    grids = pareto.shape_grids(runs)
    assert [(x, y, len(m)) for x, y, m in grids] == [("random_input_len", "random_output_len", 4)]
    fig = pareto.heatmap_figure(*grids[0], 0)
    heat = fig.data[0]
    assert list(heat.x) == ["128", "1024"] and list(heat.y) == ["64", "512"]
    by_cell = {
        (
            d.run["config"]["workload_options"]["random_input_len"],
            d.run["config"]["workload_options"]["random_output_len"],
        ): flat_metrics(d.summary)["output_tok_s"]
        for d in runs
    }
    assert heat.z[1][0] == pytest.approx(by_cell[128, 512]) and heat.z[0][1] == pytest.approx(by_cell[1024, 64])


def staged_run(tmp_path, stopped: bool):
    records = make_records(12, rate=4.0)
    for r in records:
        r["extra"] = {"stage": 0 if r["arrival_s"] < 1.5 else 1}
    d = make_run(tmp_path, "staged", n=12, rate=4.0, steps=False)
    (d / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    schedule = {
        "kind": "stages (poisson)",
        "request_rate": None,
        "burstiness": 1.0,
        "max_concurrency": None,
        "stages": [
            {"stage": 0, "request_rate": 2.0, "start_s": 0.0, "end_s": 1.5, "requests": 6},
            {"stage": 1, "request_rate": 4.0, "start_s": 1.5, "end_s": 3.0, "requests": 6},
        ],
    }
    run = json.loads((d / "run.json").read_text())
    run["workload"]["schedule"] = schedule
    if stopped:
        run["serving_stats"] = {"saturation_stop": {"reason": "over-saturated", "t_s": 2.5, "detail": "x"}}
    (d / "run.json").write_text(json.dumps(run))
    return load(d)


def test_stages_are_a_load_curve_and_the_stop_is_marked(tmp_path):
    data = staged_run(tmp_path, stopped=True)
    table = load_shapes.stage_table(data)
    stages = summarize_windows(data.records, data.run["workload"]["schedule"])["stages"]
    assert table["offered (req/s)"].tolist() == [2.0, 4.0]
    assert table["achieved (req/s)"].tolist() == pytest.approx([round(s["request_throughput"], 3) for s in stages])
    backlog = load_shapes.backlog_figure(0, data)
    lines = [s for s in backlog.layout.shapes if s.type == "line"]
    assert [s.x0 for s in lines] == [0.0, 1.5, 2.5]  # the stages' starts, then the stop
    sec = load_shapes.section([data])
    assert any("stopped at 2.50 s (over-saturated)" in note for note in sec.notes)
    assert [div for div, _ in sec.figures] == ["fig-load-curve", "fig-backlog-1"]


def test_a_run_with_windows_shows_its_steady_state_beside_the_whole_run(tmp_path):
    records = make_records(10, rate=5.0)
    for i, r in enumerate(records):
        r["extra"] = {"phase": "warmup" if i < 2 else "cooldown" if i >= 8 else "steady"}
    d = make_run(tmp_path, "windowed", n=10, rate=5.0, steps=False)
    (d / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run = json.loads((d / "run.json").read_text())
    run["workload"]["schedule"]["windows"] = {"steady_start_s": 0.4, "steady_end_s": 1.6}
    (d / "run.json").write_text(json.dumps(run))
    data = load(d)
    table = load_shapes.steady_table([data])
    steady = summarize_windows(data.records, run["workload"]["schedule"])["steady_state"]
    assert table.loc["requests/s", f"{data.label} steady state"] == pytest.approx(
        round(steady["request_throughput"], 3)
    )
    assert table.loc["requests/s", f"{data.label} whole run"] == pytest.approx(
        round(summarize(data.records)["request_throughput"], 3)
    )


def test_the_report_holds_the_new_figures(tmp_path):
    data = staged_run(tmp_path, stopped=False)
    ids = figure_ids([data], None)
    assert "fig-load-curve" in ids and "fig-backlog-1" in ids
