"""The profile section's figures: each step's split into the engine's ranges, a timeline of ranges and operators (from
a torch trace or nsys's traces, as benchctl.profile.trace_views made them), and ncu's kernel bandwidth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchctl.report.internals import MAX_STEP_BARS
from benchctl.report.load import RunData
from benchctl.report.section import row_spacing, run_color

# profile.STEP_PARTS without their `engine.` prefix, then the rest of the step
SPLIT_COLORS = {
    "schedule": "#FFA15A",
    "forward": "#636EFA",
    "sample": "#00CC96",
    "detokenize": "#AB63FA",
    "other": "#B0B0B0",
}
LANE_COLORS = {
    "engine steps": "#2A3F5F",
    "engine phases": "#636EFA",
    "worker": "#FFA15A",
    "host ops (outermost)": "#00CC96",
    "device kernels": "#EF553B",
}
PHASE_COLORS = {f"engine.{part}": color for part, color in SPLIT_COLORS.items()}
# operators and kernels: the lane's NAMED_COLORS first names by total time get a colour each, the rest grey
NAMED_COLORS = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880")


def step_split_figure(profiled: list[tuple[int, RunData, dict[str, Any]]]) -> go.Figure:
    """One stacked bar per engine step (ms in each range), a row per run; groups of steps are averaged past
    MAX_STEP_BARS."""
    fig = make_subplots(
        rows=len(profiled),
        cols=1,
        subplot_titles=[d.label for _, d, _ in profiled],
        vertical_spacing=row_spacing(len(profiled), 0.12),
    )
    for row, (_, _, summary) in enumerate(profiled, start=1):
        split = summary["step_split"]
        frame = pd.DataFrame(
            {"step": range(len(split["start_ms"])), "start_s": np.array(split["start_ms"]) / 1e3, **split["parts"]}
        )
        group = max(1, -(-len(frame) // MAX_STEP_BARS))
        if group > 1:
            frame = frame.groupby(np.arange(len(frame)) // group).mean()
        for part, color in SPLIT_COLORS.items():
            if part in frame:
                fig.add_trace(
                    go.Bar(
                        x=frame["step"],
                        y=frame[part],
                        name=part,
                        marker_color=color,
                        legendgroup=part,
                        showlegend=row == 1,
                        customdata=frame["start_s"],
                        hovertemplate="step %{x:.0f} at %{customdata:.3f} s<br>" + part + " %{y:.3f} ms<extra></extra>",
                    ),
                    row=row,
                    col=1,
                )
        fig.update_yaxes(title_text="ms per step" + (f" (mean of {group})" if group > 1 else ""), row=row, col=1)
    fig.update_xaxes(title_text="engine step (in the order they ran)", row=len(profiled), col=1)
    fig.update_layout(
        barmode="stack",
        bargap=0,
        height=150 + 260 * len(profiled),
        title="Each engine step in its ranges (from the profile; other = the step outside them)",
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
    )
    return fig


def timeline_figure(data: RunData, timeline: list[dict[str, Any]]) -> go.Figure:
    """Lanes of the profile's events as horizontal bars (engine steps, their phases, worker ranges, outermost host
    operators, device kernels); a lane holding more than the trace kept says how many it shows."""
    fig = go.Figure()
    labels = []
    for lane in timeline:
        kept = len(lane["name"])
        label = lane["lane"] if kept == lane["of"] else f"{lane['lane']} ({kept} longest of {lane['of']})"
        labels.append(label)
        colors: str | list[str] = LANE_COLORS.get(lane["lane"], "#636EFA")
        if lane["lane"] == "engine phases":  # each phase in its step-split colour
            colors = [PHASE_COLORS.get(n, "#636EFA") for n in lane["name"]]
        elif lane["lane"] in ("host ops (outermost)", "device kernels"):
            colors = [_by_time(lane).get(n, "#C8C8C8") for n in lane["name"]]
        fig.add_trace(
            go.Bar(
                y=[label] * len(lane["name"]),
                x=lane["dur_ms"],
                base=lane["start_ms"],
                orientation="h",
                name=lane["lane"],
                marker_color=colors,
                marker_line_width=0,
                customdata=lane["name"],
                hovertemplate="%{customdata}<br>%{base:.3f} ms → +%{x:.3f} ms<extra></extra>",
            )
        )
    fig.update_yaxes(categoryorder="array", categoryarray=labels[::-1])
    fig.update_layout(
        barmode="overlay",
        bargap=0.25,
        height=160 + 70 * len(labels),
        showlegend=False,
        title=f"Profile timeline: {data.label}",
        xaxis_title="ms since the first engine step",
    )
    return fig


def _by_time(lane: dict[str, Any]) -> dict[str, str]:
    """A colour for each of the lane's NAMED_COLORS longest-running names (summed over its events)."""
    totals: dict[str, float] = {}
    for name, dur in zip(lane["name"], lane["dur_ms"]):
        totals[name] = totals.get(name, 0.0) + dur
    return dict(zip(sorted(totals, key=lambda n: -totals[n]), NAMED_COLORS))


def ncu_table(kernels: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "kernel": k["kernel"],
                "launches": k["launches"],
                "mean duration (µs)": k["mean_duration_us"],
                "DRAM MB / launch": None if k["mean_dram_bytes"] is None else k["mean_dram_bytes"] / 1e6,
                "DRAM GB/s": k["dram_bandwidth_gb_s"],
                "of DRAM peak (ncu)": k["dram_peak_share"],
                "of SM peak (ncu)": k["sm_peak_share"],
            }
            for k in kernels
        ]
    )


def short_kernel(name: str) -> str:
    """`void paged_attention_kernel<bf16, 128, ...>(args)` -> `paged_attention_kernel<bf16, 128, ...>`."""
    name = name.removeprefix("void ")
    return name.split("(")[0] if "(" in name else name


def ncu_figure(profiled: list[tuple[int, RunData, list[dict[str, Any]]]]) -> go.Figure:
    """Achieved DRAM bandwidth per kernel (GB/s), labelled with ncu's share of the device's peak."""
    fig = go.Figure()
    for i, data, kernels in profiled:
        shown = [k for k in kernels if k["dram_bandwidth_gb_s"] is not None]
        fig.add_bar(
            name=data.label,
            x=[k["dram_bandwidth_gb_s"] for k in shown][::-1],
            y=[short_kernel(k["kernel"]) for k in shown][::-1],
            orientation="h",
            marker_color=run_color(i),
            text=[f"{k['dram_peak_share']:.0%} of peak" if k["dram_peak_share"] is not None else "" for k in shown][
                ::-1
            ],
            textposition="auto",
        )
    fig.update_layout(
        title="Achieved DRAM bandwidth per kernel (ncu)",
        xaxis_title="GB/s",
        barmode="group",
        height=220 + 60 * sum(len(k) for _, _, k in profiled),
    )
    return fig
