"""Request timeline (queue / prefill / decode spans per request) and requests in flight over time."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchctl.metrics import in_flight as metrics_in_flight
from benchctl.report.load import RunData
from benchctl.report.section import Section, row_spacing, run_color

# span name -> colour; prefill = submission to first token (TTFT), decode = first token to finish.
SPANS = {"queue": "#B0B0B0", "prefill": "#EF553B", "decode": "#636EFA"}


def request_spans(data: RunData) -> dict[str, dict[str, list]]:
    """Per completed request (ordered by arrival): where each span starts and how long it lasts (s).

    Durations are benchctl.metrics.request_latencies' queue_s, ttft_s and e2el_s − ttft_s.
    """
    order = sorted(
        range(len(data.done)), key=lambda i: (data.done[i].get("arrival_s", 0.0), str(data.done[i].get("request_id")))
    )
    spans: dict[str, dict[str, list]] = {name: {"ids": [], "base": [], "width": []} for name in SPANS}
    for i in order:
        rec, lat = data.done[i], data.latencies[i]
        arrival = rec.get("arrival_s", 0.0)
        start = arrival + lat["queue_s"]
        ttft = lat["ttft_s"] if lat["ttft_s"] is not None else lat["e2el_s"]
        parts = {
            "queue": (arrival, lat["queue_s"]),
            "prefill": (start, ttft),
            "decode": (start + ttft, lat["e2el_s"] - ttft),
        }
        for name, (base, width) in parts.items():
            spans[name]["ids"].append(rec["request_id"])
            spans[name]["base"].append(base)
            spans[name]["width"].append(width)
    return spans


def in_flight(data: RunData, begin_key: str, end_key: str) -> tuple[list[float], list[int]]:
    """How many of the run's completed requests are between two of their timestamps (metrics.in_flight)."""
    return metrics_in_flight(data.done, begin_key, end_key)


def timeline_figure(runs: list[RunData]) -> go.Figure:
    heights = [max(len(d.done), 1) for d in runs]
    fig = make_subplots(
        rows=len(runs),
        cols=1,
        shared_xaxes=True,
        row_heights=heights,
        subplot_titles=[d.label for d in runs],
        vertical_spacing=row_spacing(len(runs), 0.08),
    )
    for row, data in enumerate(runs, start=1):
        for name, span in request_spans(data).items():
            fig.add_trace(
                go.Bar(
                    y=span["ids"],
                    x=span["width"],
                    base=span["base"],
                    orientation="h",
                    name=name,
                    marker_color=SPANS[name],
                    legendgroup=name,
                    showlegend=row == 1,
                    hovertemplate="%{y}<br>" + name + " %{base:.3f} s → +%{x:.3f} s<extra></extra>",
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(autorange="reversed", showticklabels=len(data.done) <= 40, row=row, col=1)
    fig.update_xaxes(title_text="seconds since run start", row=len(runs), col=1)
    fig.update_layout(
        barmode="overlay",
        bargap=0.15,
        title="Request timeline: queue / prefill / decode",
        height=min(250 + sum(min(h, 60) * 14 for h in heights), 2400),
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
    )
    return fig


def concurrency_figure(runs: list[RunData]) -> go.Figure:
    fig = go.Figure()
    for i, data in enumerate(runs):
        t, n = in_flight(data, "start_s", "finish_s")
        fig.add_trace(
            go.Scatter(
                x=t, y=n, mode="lines", line_shape="hv", line_color=run_color(i), name=f"{data.label}: in the engine"
            )
        )
        t, n = in_flight(data, "arrival_s", "start_s")
        if any(n):
            fig.add_trace(
                go.Scatter(
                    x=t,
                    y=n,
                    mode="lines",
                    line_shape="hv",
                    line_color=run_color(i),
                    line_dash="dot",
                    name=f"{data.label}: arrived, not yet handed to the engine",
                )
            )
    fig.update_layout(
        title="Requests in flight over time (submitted, not finished)",
        height=380,
        xaxis_title="seconds since run start",
        yaxis_title="requests",
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def section(runs: list[RunData]) -> Section:
    sec = Section(
        "timeline",
        "Request timeline and concurrency",
        intro="Queue: scheduled arrival → handed to the engine (waiting for a concurrency slot, or for "
        "the worker to hand it over between engine steps). "
        "Prefill: submission → first token (TTFT; includes waiting inside the engine). "
        "Decode: first token → last token.",
    )
    shown = [d for d in runs if d.done]
    if not shown:
        sec.notes.append("no completed requests: no timeline")
        return sec
    sec.add_figure("fig-timeline", timeline_figure(shown))
    sec.add_figure("fig-concurrency", concurrency_figure(shown))
    return sec
