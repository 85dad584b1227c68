"""Concurrency sweeps as Pareto fronts (tokens/s per user against total output tokens/s, one curve per engine),
and workload-shape sweeps as heat maps (two workload options on the axes, a metric in the cells)."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchctl.metrics import flat_metrics, mean_present, pareto_front, per_user_tok_s
from benchctl.report.load import RunData
from benchctl.report.section import Section, run_color

# Workload options a shape sweep varies (input length x output length x history depth, as the grid)
GRID_OPTIONS = ("random_input_len", "random_output_len", "random_prefix_len", "sharegpt_output_len", "max_turns")
HEAT_METRICS = (("output_tok_s", "output tokens/s"), ("ttft_p99_ms", "TTFT p99 (ms)"))


def _config(data: RunData) -> dict:
    return data.run.get("config") or {}


def _options(data: RunData) -> dict:
    return _config(data).get("workload_options") or {}


def engine_of(data: RunData) -> str:
    cfg = _config(data)
    args = ",".join(f"{k}={v}" for k, v in sorted((cfg.get("engine_args") or {}).items()))
    return f"{cfg.get('backend')} {args}".strip()


def concurrency_groups(runs: list[RunData]) -> list[dict[str, list[RunData]]]:
    """Runs alike but for their engine and max concurrency, in groups with >= 2 concurrencies: {engine: runs}. The
    request count may differ (a capacity search sends more requests at a higher concurrency)."""
    groups: dict[str, dict[str, list[RunData]]] = {}
    for data in runs:
        cfg = _config(data)
        options = {k: v for k, v in _options(data).items() if k not in ("max_concurrency", "num_prompts")}
        key = json.dumps(
            {"model": (cfg.get("model") or {}).get("name"), "mode": cfg.get("mode"), "workload": options},
            sort_keys=True,
            default=str,
        )
        groups.setdefault(key, {}).setdefault(engine_of(data), []).append(data)
    return [
        g
        for g in groups.values()
        if len({_options(d).get("max_concurrency") for runs_ in g.values() for d in runs_}) >= 2
    ]


def pareto_figure(group: dict[str, list[RunData]], index: int) -> go.Figure:
    fig = go.Figure()
    for k, (engine, members) in enumerate(sorted(group.items())):
        points, labels = [], []
        for data in members:
            total, user = flat_metrics(data.summary).get("output_tok_s"), per_user_tok_s(data.summary)
            if total is not None and user is not None:
                points.append((total, user))
                labels.append(f"conc {_options(data).get('max_concurrency')}")
        if not points:
            continue
        front = pareto_front(points)
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                mode="markers+text",
                text=labels,
                textposition="top center",
                name=f"{engine} (runs)",
                legendgroup=engine,
                marker=dict(color=run_color(k), opacity=0.5),
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[points[i][0] for i in front],
                y=[points[i][1] for i in front],
                mode="lines+markers",
                name=f"{engine} (front)",
                legendgroup=engine,
                line=dict(color=run_color(k)),
            )
        )
    fig.update_layout(
        height=460,
        title=f"Pareto front {index + 1}: per-user speed against total throughput",
        xaxis_title="total output tokens/s (all users)",
        yaxis_title="tokens/s per user (1 / TPOT p50)",
    )
    return fig


def shape_grids(runs: list[RunData]) -> list[tuple[str, str, list[RunData]]]:
    """(x option, y option, runs): runs alike but for two GRID_OPTIONS, each taking >= 2 values."""
    grids = []
    for x_opt, y_opt in combinations(GRID_OPTIONS, 2):
        groups: dict[str, list[RunData]] = {}
        for data in runs:
            cfg = _config(data)
            rest = {k: v for k, v in _options(data).items() if k not in (x_opt, y_opt)}
            key = json.dumps(
                {
                    "backend": cfg.get("backend"),
                    "engine_args": cfg.get("engine_args"),
                    "model": (cfg.get("model") or {}).get("name"),
                    "workload": rest,
                },
                sort_keys=True,
                default=str,
            )
            groups.setdefault(key, []).append(data)
        for members in groups.values():
            xs = {_options(d).get(x_opt) for d in members}
            ys = {_options(d).get(y_opt) for d in members}
            if len(xs) >= 2 and len(ys) >= 2:
                grids.append((x_opt, y_opt, members))
    return grids


def heatmap_figure(x_opt: str, y_opt: str, members: list[RunData], index: int) -> go.Figure:
    xs = sorted({_options(d).get(x_opt) for d in members}, key=_order)
    ys = sorted({_options(d).get(y_opt) for d in members}, key=_order)
    fig = make_subplots(rows=1, cols=len(HEAT_METRICS), subplot_titles=[label for _, label in HEAT_METRICS])
    for col, (key, label) in enumerate(HEAT_METRICS, 1):
        z = np.full((len(ys), len(xs)), np.nan)
        for yi, y in enumerate(ys):
            for xi, x in enumerate(xs):
                cell = [
                    flat_metrics(d.summary).get(key)
                    for d in members
                    if _options(d).get(x_opt) == x and _options(d).get(y_opt) == y
                ]
                value = mean_present(cell)  # repetitions of one cell: their mean
                z[yi, xi] = np.nan if value is None else value
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[str(x) for x in xs],
                y=[str(y) for y in ys],
                texttemplate="%{z:.3g}",
                colorscale="Viridis",
                showscale=False,
                name=label,
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text=x_opt)
    fig.update_yaxes(title_text=y_opt)
    first = _config(members[0])
    fig.update_layout(height=420, title=f"Workload grid {index + 1}: {first.get('backend')} (mean of repetitions)")
    return fig


def _order(value: object) -> tuple[bool, float, str]:
    """Numbers in numeric order, then anything else (null) by its text."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return (not number, float(value) if number else 0.0, str(value))  # type: ignore[arg-type]


def section(runs: list[RunData]) -> Section | None:
    groups, grids = concurrency_groups(runs), shape_grids(runs)
    if not groups and not grids:
        return None
    sec = Section(
        "pareto",
        "Concurrency fronts and workload grids",
        intro="Pareto front: each run's total output tokens/s against the decode speed one user sees "
        "(1 / median TPOT); the line joins the runs no other run of that engine beats on both. "
        "Workload grid: runs that differ only in two workload options, one cell per pair.",
    )
    for i, group in enumerate(groups):
        sec.add_figure(f"fig-pareto-{i + 1}", pareto_figure(group, i))
    for i, (x_opt, y_opt, members) in enumerate(grids):
        sec.add_figure(f"fig-grid-{i + 1}", heatmap_figure(x_opt, y_opt, members, i))
    return sec
