"""Latency distributions: TTFT, TPOT, ITL, E2EL as CDFs and percentile tables (milliseconds)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchctl.metrics import LATENCY_METRICS, empirical_cdf, latency_values
from benchctl.report.load import RunData
from benchctl.report.section import Section, run_color

LABELS = {
    "ttft_s": "TTFT (time to first token)",
    "tpot_s": "TPOT (time per output token)",
    "itl_s": "ITL (inter-token latency, pooled)",
    "e2el_s": "E2EL (end-to-end latency)",
}
TABLE_STATS = ("count", "mean", "p50", "p90", "p95", "p99", "max")


def latency_values_s(data: RunData, metric: str) -> list[float]:
    """The values of one metric the summary's distribution is taken over (metrics.latency_values; ITL pooled)."""
    return latency_values(data.latencies, metric)


def cdf_points_ms(values_s: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values in ms, fraction of values <= each): metrics.empirical_cdf, in milliseconds."""
    x, y = empirical_cdf(values_s)
    return x * 1000.0, y


def cdf_figure(runs: list[RunData]) -> go.Figure:
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[LABELS[m] for m in LATENCY_METRICS],
        horizontal_spacing=0.08,
        vertical_spacing=0.2,
    )
    for i, data in enumerate(runs):
        for k, metric in enumerate(LATENCY_METRICS):
            x, y = cdf_points_ms(latency_values_s(data, metric))
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines",
                    line_shape="hv",
                    name=data.label,
                    legendgroup=data.label,
                    showlegend=k == 0,
                    line_color=run_color(i),
                    meta=metric,
                    hovertemplate="%{x:.1f} ms<br>%{y:.0%} of values ≤<extra>%{fullData.name}</extra>",
                ),
                row=k // 2 + 1,
                col=k % 2 + 1,
            )
    fig.update_xaxes(title_text="milliseconds", tickformat="~g")
    fig.update_yaxes(title_text="fraction ≤", range=[0, 1.02], tickformat=".0%")
    fig.update_layout(height=680, title="Latency CDFs", legend=dict(orientation="h", y=-0.12))
    return fig


def percentile_table(runs: list[RunData]) -> pd.DataFrame:
    """One row per (metric, run), from the summary benchctl.metrics.summarize produced; ms except count."""
    rows = []
    for metric in LATENCY_METRICS:
        for data in runs:
            stats = data.summary.get(metric) or {}
            row: dict[str, Any] = {"metric": metric.removesuffix("_s").upper(), "run": data.label}
            for key in TABLE_STATS:
                value = stats.get(key)
                row[key if key == "count" else f"{key} (ms)"] = (
                    value if key == "count" or value is None else round(value * 1000.0, 2)
                )
            rows.append(row)
    return pd.DataFrame(rows).set_index(["metric", "run"])


def section(runs: list[RunData]) -> Section:
    sec = Section(
        "latency",
        "Latency distributions",
        intro="TTFT and E2EL are measured from the request's submission to the engine; TPOT = "
        "(E2EL − TTFT) / (output tokens − 1) per request; ITL pools every gap between output "
        "chunks. Definitions: docs/metrics.md.",
    )
    if not any(d.latencies for d in runs):
        sec.notes.append("no completed requests: nothing to plot")
        return sec
    sec.add_figure("fig-latency-cdf", cdf_figure(runs))
    sec.tables.append(("Percentiles (milliseconds)", percentile_table(runs)))
    return sec
