"""Ablations: runs of one backend on one workload that differ only in engine options, against the first of them.

The table the seeds made by hand ("attention fix +5%, sampler +23%, ... all stacked"): one row per run, the engine
options that differ from the baseline (the first run of the group, in the order given), output tokens/s and its
change, and where the time went (the engine's step-time breakdown from run.json `engine_stats`).
"""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go

from benchctl.metrics import flat_metrics
from benchctl.report.load import RunData
from benchctl.report.section import Section

STEP_PARTS = ("forward_s", "sample_s", "detokenize_s", "schedule_s")


def ablation_key(data: RunData) -> str:
    """Everything but the engine options: same key (and at least two option sets) = one ablation group."""
    cfg = data.run.get("config", {})
    key = {"backend": cfg.get("backend"), "model": (cfg.get("model") or {}).get("name"), "mode": cfg.get("mode"),
           "batch_size": cfg.get("batch_size"), "workload": cfg.get("workload_options"),
           "requests": data.run.get("workload", {}).get("num_requests")}
    return json.dumps(key, sort_keys=True, default=str)


def find_ablations(runs: list[RunData]) -> list[list[RunData]]:
    groups: dict[str, list[RunData]] = {}
    for data in runs:
        groups.setdefault(ablation_key(data), []).append(data)
    return [members for members in groups.values()
            if len({json.dumps(_args(d), sort_keys=True) for d in members}) >= 2]


def _args(data: RunData) -> dict[str, str]:
    return dict(data.run.get("config", {}).get("engine_args") or {})


def change_text(base: dict[str, str], args: dict[str, str]) -> str:
    """The options of `args` that differ from `base` (`key=value`, `key=default` when dropped)."""
    changed = [f"{k}={v}" for k, v in args.items() if base.get(k) != v]
    changed += [f"{k}=default" for k in base if k not in args]
    return ", ".join(changed) or "baseline"


def ablation_table(group: list[RunData]) -> pd.DataFrame:
    base_args = _args(group[0])
    base_tok_s = flat_metrics(group[0].summary).get("output_tok_s")
    rows = []
    for data in group:
        flat = flat_metrics(data.summary)
        tok_s = flat.get("output_tok_s")
        stats = data.run.get("engine_stats") or {}
        row = {"change": change_text(base_args, _args(data)), "run": data.run_id,
               "output tok/s": tok_s,
               "vs baseline (%)": 100.0 * (tok_s / base_tok_s - 1) if tok_s and base_tok_s else None,
               "TPOT p50 (ms)": flat.get("tpot_median_ms"), "mean batch": stats.get("mean_batch_size")}
        row.update({f"{part.removesuffix('_s')} (s)": stats.get(part) for part in STEP_PARTS})
        rows.append(row)
    return pd.DataFrame(rows).set_index(["change", "run"]).astype(float).round(2)


def ablation_figure(group: list[RunData], index: int) -> go.Figure:
    table = ablation_table(group).reset_index()
    labels = [f"{c} [{r[-6:]}]" for c, r in zip(table["change"], table["run"])]
    fig = go.Figure(go.Bar(x=table["output tok/s"], y=labels, orientation="h",
                           text=[f"{v:+.1f}%" if pd.notna(v) else "" for v in table["vs baseline (%)"]],
                           textposition="outside", marker_color="#636EFA"))
    cfg = group[0].run.get("config", {})
    fig.update_yaxes(automargin=True)
    fig.update_layout(height=120 + 40 * len(labels), yaxis=dict(autorange="reversed"),
                      xaxis_title="output tokens/s",
                      title=f"Ablation {index + 1}: {cfg.get('backend')} — change vs the first run")
    return fig


def section(runs: list[RunData]) -> Section | None:
    groups = find_ablations(runs)
    if not groups:
        return None
    sec = Section("ablation", "Ablations",
                  intro="Runs of one backend on the same workload that differ only in engine options. Each row "
                        "names what changed from the first run (the baseline); step times are the engine's own "
                        "breakdown (seconds summed over the run).")
    for i, group in enumerate(groups):
        sec.add_figure(f"fig-ablation-{i + 1}", ablation_figure(group, i))
        sec.tables.append((f"Ablation {i + 1}", ablation_table(group)))
    return sec
