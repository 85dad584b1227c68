"""Engine internals from steps.jsonl and run.json `engine_stats`: batch size, KV cache, preemptions, step time.

steps.jsonl holds one object per engine step: t_s (end of the step, seconds since run start), num_running,
num_waiting, num_batched_tokens, num_prefill_seqs, num_decode_seqs, kv_blocks_used, kv_blocks_total,
kv_slots_filled, kv_slots_allocated, preemptions (cumulative), schedule_s, forward_s, sample_s, detokenize_s.
Every column is optional; what is absent is said, not guessed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchctl.metrics.steps import (
    STEP_TIME_PARTS,
    batch_size,
    breakdown_totals,
    kv_blocks_used_pct,
    kv_waste_pct,
    shares,
    step_times,
)
from benchctl.report.load import RunData
from benchctl.report.section import Section, row_spacing, run_color

PART_COLORS = {
    "schedule_s": "#FFA15A",
    "forward_s": "#636EFA",
    "sample_s": "#00CC96",
    "detokenize_s": "#AB63FA",
    "idle_s": "#D0D0D0",
}  # metrics.steps.breakdown_totals' parts
MAX_STEP_BARS = 3000  # per-step bars beyond this are averaged in groups (the browser stays responsive)


def _steps(data: RunData) -> pd.DataFrame:
    """The run's steps; the figures below are only drawn for runs that have them."""
    if data.steps is None:
        raise ValueError(f"{data.label}: no steps.jsonl")
    return data.steps


def timeseries_figure(runs: list[RunData]) -> tuple[go.Figure, list[str]]:
    """Batch size, KV-cache use, KV waste and preemptions over time; also the series no run reported."""
    panels = (
        "sequences in the batch (line) / waiting (dots)",
        "KV blocks used (% of total)",
        "KV waste (% of allocated slots holding no token)",
        "preemptions (cumulative)",
    )
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, subplot_titles=panels, vertical_spacing=0.07)
    present = [False] * 4
    for i, data in enumerate(runs):
        steps = _steps(data)
        series = [batch_size(steps), kv_blocks_used_pct(steps), kv_waste_pct(steps), steps.get("preemptions")]
        for row, y in enumerate(series, start=1):
            if y is None:
                continue
            present[row - 1] = True
            fig.add_trace(
                go.Scatter(
                    x=steps["t_s"],
                    y=y,
                    mode="lines",
                    line_shape="hv",
                    name=data.label,
                    legendgroup=data.label,
                    showlegend=row == 1 or not present[0],
                    line_color=run_color(i),
                ),
                row=row,
                col=1,
            )
        if "num_waiting" in steps:
            fig.add_trace(
                go.Scatter(
                    x=steps["t_s"],
                    y=steps["num_waiting"],
                    mode="lines",
                    line_shape="hv",
                    line_dash="dot",
                    line_color=run_color(i),
                    name=f"{data.label}: waiting",
                    legendgroup=data.label,
                    showlegend=False,
                ),
                row=1,
                col=1,
            )
    fig.update_xaxes(title_text="seconds since run start", row=4, col=1)
    fig.update_layout(
        height=900, title="Engine state over time (one point per engine step)", legend=dict(orientation="h", y=-0.08)
    )
    return fig, [panels[k] for k in range(4) if not present[k]]


def breakdown_figure(runs: list[RunData]) -> go.Figure:
    """Total seconds per part, one stacked bar per run: where the time between steps goes."""
    totals = [breakdown_totals(_steps(d)) for d in runs]
    fractions = [shares(t) for t in totals]
    fig = go.Figure()
    for part, color in PART_COLORS.items():
        fig.add_trace(
            go.Bar(
                y=[d.label for d in runs],
                x=[t[part] for t in totals],
                orientation="h",
                name=part.removesuffix("_s"),
                marker_color=color,
                customdata=[f[part] for f in fractions],
                hovertemplate="%{y}<br>" + part.removesuffix("_s") + " %{x:.3f} s (%{customdata:.1%})<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="stack",
        title="Step-time breakdown (total over all steps; idle = gaps between steps)",
        xaxis_title="seconds",
        height=200 + 60 * len(runs),
        legend=dict(orientation="h", y=-0.3),
    )
    return fig


def per_step_figure(runs: list[RunData]) -> go.Figure:
    fig = make_subplots(
        rows=len(runs), cols=1, subplot_titles=[d.label for d in runs], vertical_spacing=row_spacing(len(runs), 0.12)
    )
    for row, data in enumerate(runs, start=1):
        times = step_times(_steps(data))
        group = max(1, -(-len(times) // MAX_STEP_BARS))
        if group > 1:  # mean per group of `group` steps
            times = times.groupby(np.arange(len(times)) // group).mean()
        for part, color in PART_COLORS.items():
            fig.add_trace(
                go.Bar(
                    x=times["t_s"],
                    y=times[part] * 1000.0,
                    name=part.removesuffix("_s"),
                    marker_color=color,
                    legendgroup=part,
                    showlegend=row == 1,
                    hovertemplate="t=%{x:.3f} s<br>" + part.removesuffix("_s") + " %{y:.2f} ms<extra></extra>",
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(title_text="ms per step" + (f" (mean of {group})" if group > 1 else ""), row=row, col=1)
    fig.update_xaxes(title_text="step end (seconds since run start)", row=len(runs), col=1)
    fig.update_layout(
        barmode="stack",
        bargap=0,
        title="Step time per step",
        height=150 + 260 * len(runs),
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
    )
    return fig


def engine_stats_table(runs: list[RunData]) -> pd.DataFrame:
    columns = {}
    for data in runs:
        stats = data.run.get("engine_stats") or {}
        columns[data.label] = {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in stats.items()
            if isinstance(v, int | float | str | bool)
        }
    return pd.DataFrame(columns).astype(object).fillna("—")


def section(runs: list[RunData]) -> Section:
    sec = Section(
        "internals",
        "Engine internals",
        intro="From the engine's own per-step statistics (steps.jsonl) and run.json engine_stats.",
    )
    if any(d.run.get("engine_stats") for d in runs):
        sec.tables.append(("engine_stats reported by each engine (run.json)", engine_stats_table(runs)))
    else:
        sec.notes.append("no run has engine_stats in run.json")
    with_steps = [d for d in runs if d.steps is not None]
    for data in runs:
        if data.steps is None:
            sec.notes.append(
                f"{data.label}: no steps.jsonl — this engine reports no per-step statistics, so "
                "batch size, KV use and step time over time are not shown for it"
            )
    if not with_steps:
        return sec
    fig, absent = timeseries_figure(with_steps)
    sec.add_figure("fig-engine-timeseries", fig)
    sec.notes += [f"no run's steps carry the data for “{panel}”" for panel in absent]
    missing_parts = [p for p in STEP_TIME_PARTS if not any(p in _steps(d) for d in with_steps)]
    if missing_parts:
        sec.notes.append(f"steps carry no {', '.join(missing_parts)}: that time is counted as idle")
    sec.add_figure("fig-step-breakdown", breakdown_figure(with_steps))
    sec.add_figure("fig-step-times", per_step_figure(with_steps))
    return sec
