"""Energy section: run.json's `energy` (benchctl.telemetry, metrics.energy) and the telemetry.jsonl series over the
run: power, and on a GPU its clocks, memory used and utilisation."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchctl.records import read_records
from benchctl.report.load import RunData
from benchctl.report.section import Section, run_color

# (column, panel title) of telemetry.jsonl; a panel no run has is left out
PANELS = (
    ("power_w", "power (W)"),
    ("sm_clock_mhz", "SM clock (MHz)"),
    ("memory_used_bytes", "memory used (GiB)"),
    ("gpu_util_pct", "GPU utilisation (%)"),
)


def series(data: RunData) -> pd.DataFrame | None:
    path = data.path / "telemetry.jsonl"
    if not path.is_file():
        return None
    frame = pd.DataFrame(read_records(path))
    return frame if not frame.empty and "t_s" in frame else None


def energy_table(runs: list[RunData]) -> pd.DataFrame:
    rows = []
    for data in runs:
        e = data.run.get("energy") or {}
        rows.append(
            {
                "run": data.label,
                "source": e.get("source") or "unavailable",
                "energy (J)": e.get("energy_j"),
                "window (s)": e.get("window_s"),
                "mean power (W)": e.get("mean_power_w"),
                "J / output token": e.get("j_per_output_token"),
                "J / token (input + output)": e.get("j_per_total_token"),
                "why not measured": e.get("unavailable"),
            }
        )
    return pd.DataFrame(rows)


def series_figure(measured: list[tuple[int, RunData, pd.DataFrame]]) -> go.Figure:
    panels = [(col, title) for col, title in PANELS if any(col in f and f[col].notna().any() for _, _, f in measured)]
    fig = make_subplots(
        rows=len(panels), cols=1, shared_xaxes=True, subplot_titles=[t for _, t in panels], vertical_spacing=0.08
    )
    for row, (col, _) in enumerate(panels, start=1):
        for i, data, frame in measured:
            if col not in frame:
                continue
            y = frame[col] / 2**30 if col == "memory_used_bytes" else frame[col]
            fig.add_trace(
                go.Scatter(
                    x=frame["t_s"],
                    y=y,
                    mode="lines",
                    line_color=run_color(i),
                    name=data.label,
                    legendgroup=data.label,
                    showlegend=row == 1,
                ),
                row=row,
                col=1,
            )
    fig.update_xaxes(title_text="seconds since the requests started", row=len(panels), col=1)
    fig.update_layout(
        title="Telemetry while the requests ran", height=160 + 220 * len(panels), legend=dict(orientation="h", y=-0.12)
    )
    return fig


def section(runs: list[RunData]) -> Section | None:
    if not any(d.run.get("energy") for d in runs):
        return None
    sec = Section(
        "energy",
        "Energy",
        "benchctl samples the device while the requests run (NVML on a GPU, RAPL on a "
        "CPU): energy per run, joules per output token and per input + output token of the completed "
        "requests (benchctl.metrics.energy).",
    )
    sec.tables.append(("energy per run", energy_table(runs)))
    measured = [(i, d, f) for i, d in enumerate(runs) if (f := series(d)) is not None]
    if measured:
        sec.add_figure("fig-energy-series", series_figure(measured))
    else:
        sec.notes.append("no run has a telemetry.jsonl series (energy was unavailable: see the table)")
    return sec
