"""Profile section: what `--profile torch|nsys|ncu` found (profile_summary.json), when a run was profiled.

Figures: top operators by self time, each step split into the engine's ranges, a timeline of the trace per run (the
first MAX_TIMELINES runs), and ncu's achieved DRAM bandwidth per kernel. A summary written before the views existed
gets them from the run's torch trace, when it is still there.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from benchctl import profile
from benchctl.report import profile_figures
from benchctl.report.load import RunData, read_json
from benchctl.report.section import Section, run_color

MAX_TIMELINES = 3  # one figure each: a timeline holds thousands of bars


def _summary(data: RunData) -> dict:
    summary = read_json(data.path / "profile_summary.json") or {}
    trace = data.path / "torch_trace.json"
    if "timeline" not in summary and "ncu_kernels" not in summary and trace.is_file():
        try:
            summary.update(
                profile.trace_views([e for e in profile.load_trace(trace) if e.get("ph") == "X" and "dur" in e])
            )
        except (OSError, ValueError, KeyError) as e:  # a damaged trace: the tables still show
            data.notes.append(f"{trace.name} could not be read for the profile's figures: {e}")
    return summary


def section(runs: list[RunData]) -> Section | None:
    profiled = [(i, d, _summary(d)) for i, d in enumerate(runs) if (d.path / "profile_summary.json").is_file()]
    if not profiled:
        return None
    sec = Section(
        "profile",
        "Profile",
        "From the run's profile (`benchctl run --profile torch|nsys|ncu`): where the "
        "worker's time went, how much of it the engine's named ranges explain, how often the host "
        "waited for the device, and (ncu) how close the attention kernel came to the memory's peak.",
    )
    headline = []
    fig = go.Figure()
    for i, data, summary in profiled:
        headline.append(
            {
                "run": data.label,
                "mode": (data.run.get("profile") or {}).get("mode"),
                "steps": summary.get("num_steps"),
                "range coverage": summary.get("range_coverage"),
                "idle between steps": summary.get("idle_between_steps_fraction"),
                "host syncs / step": summary.get("host_syncs_per_step"),
            }
        )
        if summary.get("error"):
            sec.notes.append(f"{data.label}: {summary['error']}")
        ops = summary.get("top_operators") or []
        if ops:
            top = ops[:15]
            fig.add_bar(
                name=data.label,
                y=[profile_figures.short_kernel(o["name"]) for o in top][::-1],
                x=[o["self_ms"] for o in top][::-1],
                orientation="h",
                marker_color=run_color(i),
            )
            sec.tables.append(
                (
                    f"{data.label}: top operators by self time",
                    pd.DataFrame(top).rename(columns={"self_ms": "self ms", "self_share": "share"}),
                )
            )
        for name in ("nvtx_sum", "cuda_gpu_kern_sum"):
            if summary.get(name):
                sec.tables.append((f"{data.label}: nsys {name}", pd.DataFrame(summary[name]).head(20)))
        if summary.get("ncu_kernels"):
            sec.tables.append(
                (
                    f"{data.label}: ncu, {summary.get('ncu_launches')} kernel launches profiled",
                    profile_figures.ncu_table(summary["ncu_kernels"]),
                )
            )
    sec.tables.insert(0, ("profile headline", pd.DataFrame(headline)))
    if fig.data:
        fig.update_layout(title="Top operators by self time (ms)", barmode="group", height=520)
        sec.add_figure("fig-profile-top-ops", fig)
    split = [p for p in profiled if p[2].get("step_split")]
    if split:
        sec.add_figure("fig-profile-step-split", profile_figures.step_split_figure(split))
    timelines = [(i, d, s["timeline"]) for i, d, s in profiled if s.get("timeline")]
    for i, data, timeline in timelines[:MAX_TIMELINES]:
        sec.add_figure(f"fig-profile-timeline-{i}", profile_figures.timeline_figure(data, timeline))
    if len(timelines) > MAX_TIMELINES:
        sec.notes.append(f"timelines of the first {MAX_TIMELINES} profiled runs shown, of {len(timelines)}")
    ncu = [(i, d, s["ncu_kernels"]) for i, d, s in profiled if s.get("ncu_kernels")]
    if ncu:
        sec.add_figure("fig-profile-ncu-bandwidth", profile_figures.ncu_figure(ncu))
    return sec
