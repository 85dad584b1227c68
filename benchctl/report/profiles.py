"""Profile section: what `--profile torch|nsys` found (profile_summary.json), when a run was profiled."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from benchctl.report.load import RunData, read_json
from benchctl.report.section import Section, run_color


def section(runs: list[RunData]) -> Section | None:
    profiled = [(i, d, read_json(d.path / "profile_summary.json")) for i, d in enumerate(runs)
                if (d.path / "profile_summary.json").is_file()]
    if not profiled:
        return None
    sec = Section("profile", "Profile", "From the run's trace (`benchctl run --profile torch|nsys`): where the "
                  "worker's time went, how much of it the engine's named ranges explain, and how often the host "
                  "waited for the device.")
    headline = []
    fig = go.Figure()
    for i, data, summary in profiled:
        summary = summary or {}
        headline.append({"run": data.label, "steps": summary.get("num_steps"),
                         "range coverage": summary.get("range_coverage"),
                         "idle between steps": summary.get("idle_between_steps_fraction"),
                         "host syncs / step": summary.get("host_syncs_per_step")})
        ops = summary.get("top_operators") or []
        if ops:
            top = ops[:15]
            fig.add_bar(name=data.label, y=[o["name"] for o in top][::-1], x=[o["self_ms"] for o in top][::-1],
                        orientation="h", marker_color=run_color(i))
            sec.tables.append((f"{data.label}: top operators by self time",
                               pd.DataFrame(top).rename(columns={"self_ms": "self ms", "self_share": "share"})))
        for name in ("nvtx_sum", "cuda_gpu_kern_sum"):
            if summary.get(name):
                sec.tables.append((f"{data.label}: nsys {name}", pd.DataFrame(summary[name]).head(20)))
    sec.tables.insert(0, ("profile headline", pd.DataFrame(headline)))
    if fig.data:
        fig.update_layout(title="Top operators by self time (ms)", barmode="group", height=520)
        sec.add_figure("fig-profile-top-ops", fig)
    return sec
