"""Multi-turn runs: TTFT by turn (later turns carry the history a prefix cache can reuse) and the cache's hit rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from benchctl.report.load import RunData
from benchctl.report.section import Section, run_color


def ttft_by_turn(data: RunData) -> dict[int, dict]:
    """Turn index -> the summary's TTFT distribution of that turn (benchctl.metrics.ttft_by_turn), in turn order."""
    stored = (data.summary.get("conversations") or {}).get("ttft_by_turn_s") or {}
    return {int(turn): stats for turn, stats in sorted(stored.items(), key=lambda item: int(item[0]))}


def turn_figure(runs: list[RunData]) -> go.Figure:
    fig = go.Figure()
    for i, data in enumerate(runs):
        by_turn = ttft_by_turn(data)
        turns = list(by_turn)
        p50 = [stats["median"] * 1000.0 for stats in by_turn.values()]
        p90 = [stats["p90"] * 1000.0 for stats in by_turn.values()]
        counts = [stats["count"] for stats in by_turn.values()]
        fig.add_trace(
            go.Scatter(
                x=turns,
                y=p50,
                mode="lines+markers",
                name=data.label,
                line_color=run_color(i),
                error_y=dict(type="data", symmetric=False, array=[b - a for a, b in zip(p50, p90)], thickness=1),
                customdata=np.column_stack([p90, counts]) if turns else None,
                hovertemplate="turn %{x}: median %{y:.0f} ms, p90 %{customdata[0]:.0f} ms "
                "(%{customdata[1]} requests)<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_xaxes(title_text="turn (0 = the conversation's first user message)", dtick=1)
    fig.update_yaxes(title_text="TTFT, median (bar to p90), ms", rangemode="tozero")
    fig.update_layout(height=420, title="Time to first token by turn", legend=dict(orientation="h", y=-0.25))
    return fig


def summary_table(runs: list[RunData]) -> pd.DataFrame:
    rows = []
    for data in runs:
        conv = data.summary.get("conversations") or {}
        first, later = conv.get("ttft_first_turn_s") or {}, conv.get("ttft_later_turns_s") or {}
        cache = (data.run.get("serving_stats") or {}).get("prefix_cache") or {}
        duration = conv.get("conversation_duration_s") or {}
        rows.append(
            {
                "run": data.label,
                "conversations": conv.get("num_conversations"),
                "TTFT turn 0 p50 (ms)": _ms(first.get("median")),
                "TTFT later p50 (ms)": _ms(later.get("median")),
                "TTFT later p99 (ms)": _ms(later.get("p99")),
                "later / first": conv.get("ttft_later_vs_first_median"),
                "prompt tokens cached (engine)": conv.get("cached_prompt_fraction"),
                "hit rate (server /metrics)": cache.get("hit_rate"),
                "conversation p50 (s)": duration.get("median"),
            }
        )
    return pd.DataFrame(rows).round(3)


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000.0


def section(runs: list[RunData]) -> Section | None:
    multi = [d for d in runs if d.summary.get("conversations")]
    if not multi:
        return None
    sec = Section(
        "conversations",
        "Conversations",
        intro="Runs of --workload conversations: each turn is sent with the conversation so far once the "
        "previous answer arrived, so later turns have long prompts that begin with the previous "
        "turn's. A prefix cache serves that beginning; the TTFT of later turns shows how much it "
        "saves. Cached shares are prompt tokens served from the cache / prompt tokens (vLLM's hit "
        "rate), per request from the engine and over the run from the server's own counters.",
    )
    sec.add_figure("conversations-ttft-by-turn", turn_figure(multi))
    sec.tables.append(("TTFT of first vs later turns, and the prefix cache", summary_table(multi)))
    if len(multi) < len(runs):
        sec.notes.append(f"{len(runs) - len(multi)} run(s) are single-turn and not shown here.")
    return sec
