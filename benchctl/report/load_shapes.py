"""Load shapes in the report: each stage's numbers against its offered rate (the load curve), the whole run beside
its steady state, and the backlog over time with the moment a run was stopped for over-saturation."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchctl.metrics import flat_metrics, in_flight, summarize_windows
from benchctl.report.load import RunData
from benchctl.report.section import Section, run_color

STEADY_ROWS = (
    ("request_throughput", "requests/s"),
    ("output_tok_s", "output tokens/s"),
    ("ttft_median_ms", "TTFT p50 (ms)"),
    ("ttft_p99_ms", "TTFT p99 (ms)"),
    ("tpot_median_ms", "TPOT p50 (ms)"),
    ("e2el_p99_ms", "E2EL p99 (ms)"),
)


def schedule_of(data: RunData) -> dict:
    return (data.run.get("workload") or {}).get("schedule") or {}


def stop_of(data: RunData) -> dict | None:
    return (data.run.get("serving_stats") or {}).get("saturation_stop")


def windows_of(data: RunData) -> dict:
    """benchctl.metrics.summarize_windows of the run's records, with the SLOs the report uses."""
    return summarize_windows(data.records, schedule_of(data), data.summary.get("slos_ms"))


def stage_table(data: RunData) -> pd.DataFrame:
    rows = []
    for stage in windows_of(data).get("stages") or []:
        flat = flat_metrics(stage)
        rows.append(
            {
                "stage": stage["stage"],
                "offered (req/s)": stage["offered_request_rate"],
                "achieved (req/s)": flat.get("request_throughput"),
                "output tok/s": flat.get("output_tok_s"),
                "TTFT p50 (ms)": flat.get("ttft_median_ms"),
                "TTFT p99 (ms)": flat.get("ttft_p99_ms"),
                "TPOT p50 (ms)": flat.get("tpot_median_ms"),
                "failed": stage.get("failed"),
            }
        )
    return pd.DataFrame(rows).set_index("stage").astype(float).round(3)


def load_curve_figure(staged: list[tuple[int, RunData]]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("achieved vs offered (req/s)", "TTFT per stage (ms)"))
    for i, data in staged:
        table = stage_table(data)
        x = table["offered (req/s)"].tolist()
        fig.add_trace(
            go.Scatter(
                x=x,
                y=table["achieved (req/s)"],
                mode="lines+markers",
                name=data.label,
                legendgroup=data.label,
                line_color=run_color(i),
            ),
            row=1,
            col=1,
        )
        for column, dash in (("TTFT p50 (ms)", "solid"), ("TTFT p99 (ms)", "dash")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=table[column],
                    mode="lines+markers",
                    name=f"{column[:8]} {data.label}",
                    legendgroup=data.label,
                    line=dict(color=run_color(i), dash=dash),
                ),
                row=1,
                col=2,
            )
    top = max((max(stage_table(d)["offered (req/s)"]) for _, d in staged), default=1.0)
    fig.add_trace(
        go.Scatter(
            x=[0, top], y=[0, top], mode="lines", name="achieved = offered", line=dict(color="#bbbbbb", dash="dot")
        ),
        row=1,
        col=1,
    )
    fig.update_xaxes(title_text="offered request rate of the stage (req/s)")
    fig.update_layout(height=440, legend=dict(orientation="h", y=-0.25), title="Load curve: one point per stage")
    return fig


def backlog_figure(i: int, data: RunData) -> go.Figure:
    """Requests arrived on the schedule and not yet finished (metrics.in_flight from arrival to finish), the stages'
    boundaries, and the stop."""
    times, counts = in_flight(data.records, "arrival_s", "finish_s")
    fig = go.Figure(
        go.Scatter(
            x=times, y=counts, mode="lines", line_shape="hv", name="arrived, not finished", line_color=run_color(i)
        )
    )
    for stage in schedule_of(data).get("stages") or []:
        fig.add_vline(
            x=stage["start_s"],
            line=dict(color="#cccccc", dash="dot"),
            annotation_text=f"{stage['request_rate']:g} req/s",
            annotation_position="top left",
        )
    windows = schedule_of(data).get("windows")
    if windows:
        fig.add_vrect(
            x0=windows["steady_start_s"],
            x1=windows["steady_end_s"],
            fillcolor="#00CC96",
            opacity=0.08,
            line_width=0,
            annotation_text="steady state",
            annotation_position="top right",
        )
    stop = stop_of(data)
    if stop:
        fig.add_vline(
            x=stop["t_s"],
            line=dict(color="#EF553B", width=2),
            annotation_text=f"stopped: {stop['reason']}",
            annotation_position="top right",
        )
    fig.update_layout(
        height=320, title=f"Backlog over time: {data.label}", xaxis_title="run time (s)", yaxis_title="requests"
    )
    return fig


def steady_table(windowed: list[RunData]) -> pd.DataFrame:
    columns = {}
    for data in windowed:
        steady = flat_metrics(windows_of(data).get("steady_state"))
        whole = flat_metrics(data.summary)
        columns[f"{data.label} whole run"] = {label: whole.get(key) for key, label in STEADY_ROWS}
        columns[f"{data.label} steady state"] = {label: steady.get(key) for key, label in STEADY_ROWS}
    return pd.DataFrame(columns).astype(float).round(3)


def section(runs: list[RunData]) -> Section | None:
    staged = [(i, d) for i, d in enumerate(runs) if schedule_of(d).get("stages")]
    windowed = [d for d in runs if schedule_of(d).get("windows")]
    timed = [
        (i, d)
        for i, d in enumerate(runs)
        if stop_of(d) or schedule_of(d).get("stages") or schedule_of(d).get("windows")
    ]
    if not timed:
        return None
    sec = Section(
        "load-shapes",
        "Load shapes, windows and stops",
        intro="Stages are measured over their own time span: rates count what the server finished in "
        "it, latencies the requests that arrived in it (benchctl.metrics.windows). The steady "
        "state leaves out the warm-up and cool-down windows.",
    )
    if staged:
        sec.add_figure("fig-load-curve", load_curve_figure(staged))
        for _, data in staged:
            sec.tables.append((f"Stages of {data.label}", stage_table(data)))
    if windowed:
        sec.tables.append(("Whole run and steady state", steady_table(windowed)))
    for i, data in timed:
        sec.add_figure(f"fig-backlog-{i + 1}", backlog_figure(i, data))
        stop = stop_of(data)
        if stop:
            sec.notes.append(f"{data.label} was stopped at {stop['t_s']:.2f} s ({stop['reason']}): {stop['detail']}")
    return sec
