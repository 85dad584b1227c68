"""Sweep curves: latency percentiles and goodput versus request rate, for runs that differ only in rate."""

from __future__ import annotations

import json
import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchctl.metrics import flat_metrics
from benchctl.report.load import RunData, rate_of
from benchctl.report.section import Section, run_color

CURVES = (
    ("ttft_p50_ms", "TTFT p50", "solid"),
    ("ttft_p99_ms", "TTFT p99", "dash"),
    ("tpot_p50_ms", "TPOT p50", "solid"),
    ("tpot_p99_ms", "TPOT p99", "dash"),
    ("e2el_p99_ms", "E2EL p99", "dot"),
)


def sweep_key(data: RunData) -> str:
    """Everything that defines a run except its request rate (and arrival shape): same key = one sweep."""
    cfg = data.run.get("config", {})
    options = {
        k: v
        for k, v in (cfg.get("workload_options") or {}).items()
        if k not in ("request_rate", "arrival", "burstiness")
    }
    key = {
        "backend": cfg.get("backend"),
        "model": (cfg.get("model") or {}).get("name"),
        "mode": cfg.get("mode"),
        "batch_size": cfg.get("batch_size"),
        "engine_args": cfg.get("engine_args"),
        "workload": options,
    }
    return json.dumps(key, sort_keys=True, default=str)


def find_sweeps(runs: list[RunData]) -> list[list[RunData]]:
    """Groups of runs with the same key and at least two different request rates, each ordered by rate."""
    groups: dict[str, list[RunData]] = {}
    for data in runs:
        groups.setdefault(sweep_key(data), []).append(data)
    sweeps = []
    for members in groups.values():
        if len({_offered(d) for d in members}) >= 2:
            sweeps.append(sorted(members, key=_offered))
    return sweeps


def _offered(data: RunData) -> float:
    """The offered rate, infinity for all-at-once arrivals (which sort last)."""
    rate = rate_of(data)
    return math.inf if rate is None else rate


def sweep_table(sweep: list[RunData]) -> pd.DataFrame:
    """One row per run: offered rate, achieved rate, goodput and latency percentiles (benchctl.metrics)."""
    rows = []
    for data in sweep:
        flat = flat_metrics(data.summary)
        rate = rate_of(data)
        row = {
            "run": data.label,
            "offered (req/s)": math.inf if rate is None else rate,
            "achieved (req/s)": flat.get("request_throughput"),
            "goodput (req/s)": flat.get("goodput_req_s"),
            "output tok/s": flat.get("output_tok_s"),
        }
        row.update({label + " (ms)": flat.get(key) for key, label, _ in CURVES})
        rows.append(row)
    return pd.DataFrame(rows).set_index("run").astype(float).round(3)  # None -> NaN, shown as —


def sweep_figure(sweep: list[RunData], index: int) -> go.Figure:
    table = sweep_table(sweep)
    finite = all(rate_of(d) is not None for d in sweep)
    # An all-at-t=0 run has no rate: with one in the sweep, rates become ordered categories ending in "inf".
    x = table["offered (req/s)"].tolist() if finite else [f"{v:g}" for v in table["offered (req/s)"]]
    has_goodput = table["goodput (req/s)"].notna().any()
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "latency percentiles (ms)",
            "goodput and achieved throughput (req/s)"
            if has_goodput
            else "achieved throughput (req/s) — no SLOs: pass --goodput for goodput",
        ),
    )
    for _, label, dash in CURVES:
        fig.add_trace(
            go.Scatter(x=x, y=table[label + " (ms)"], mode="lines+markers", name=label, line=dict(dash=dash)),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=x, y=table["achieved (req/s)"], mode="lines+markers", name="achieved req/s", line_color=run_color(index)
        ),
        row=1,
        col=2,
    )
    if has_goodput:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=table["goodput (req/s)"],
                mode="lines+markers",
                name="goodput req/s",
                line=dict(color="black", dash="dash"),
            ),
            row=1,
            col=2,
        )
    if finite:
        fig.add_trace(
            go.Scatter(x=x, y=x, mode="lines", name="offered = achieved", line=dict(color="#bbbbbb", dash="dot")),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="offered request rate (req/s)")
    first = sweep[0].run.get("config", {})
    fig.update_layout(
        height=440,
        legend=dict(orientation="h", y=-0.25),
        title=f"Sweep {index + 1}: {first.get('backend')} {first.get('engine_args') or ''}",
    )
    return fig


def section(runs: list[RunData]) -> Section | None:
    sweeps = find_sweeps(runs)
    if not sweeps:
        return None
    sec = Section(
        "sweep",
        "Sweep curves",
        intro="Runs with the same engine, model and workload that differ only in request rate. "
        "Goodput counts requests meeting every SLO per second of run duration.",
    )
    for i, sweep in enumerate(sweeps):
        if len({json.dumps(d.summary.get("slos_ms"), sort_keys=True) for d in sweep}) > 1:
            sec.notes.append(
                f"sweep {i + 1}: the runs were made with different SLOs, so goodput is not comparable "
                "across rates; pass --goodput to apply one set to every run"
            )
        sec.add_figure(f"fig-sweep-{i + 1}", sweep_figure(sweep, i))
        sec.tables.append((f"Sweep {i + 1}", sweep_table(sweep)))
    return sec
