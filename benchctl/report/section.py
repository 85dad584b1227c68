"""What each report section hands the template: figures, tables (HTML from pandas) and notes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

# One colour per run, stable across every figure (plotly's default qualitative palette).
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52")


def run_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def row_spacing(rows: int, wanted: float) -> float:
    """Vertical spacing for `rows` stacked subplots: `wanted`, shrunk so that many runs still fit (plotly refuses a
    spacing over 1 / (rows - 1): an 11-cell sweep's report failed on it)."""
    return wanted if rows <= 1 else min(wanted, 0.5 / (rows - 1))


@dataclass(slots=True)
class Section:
    id: str
    title: str
    intro: str = ""
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)  # (div id, figure)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table)
    notes: list[str] = field(default_factory=list)  # what is missing, and how to get it

    def add_figure(self, div_id: str, fig: go.Figure) -> None:
        fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=60, b=50))
        self.figures.append((div_id, fig))
