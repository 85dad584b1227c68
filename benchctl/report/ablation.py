"""Ablations: runs of one backend on one workload that differ only in engine options, against the first of them.

The table the seeds made by hand ("attention fix +5%, sampler +23%, ... all stacked"): one row per option set, the
engine options that differ from the baseline (the first run's, in the order given), output tokens/s (the mean of the
set's repetitions, and their spread) and its change, and where the time went (the engine's step-time breakdown from
run.json `engine_stats`).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from benchctl.metrics import flat_metrics, mean_present, ratios_to_first, spread_fraction
from benchctl.metrics.steps import STEP_TIME_PARTS
from benchctl.report.load import RunData
from benchctl.report.section import Section


def ablation_key(data: RunData) -> str:
    """Everything but the engine options: same key (and at least two option sets) = one ablation group."""
    cfg = data.run.get("config", {})
    key = {
        "backend": cfg.get("backend"),
        "model": (cfg.get("model") or {}).get("name"),
        "mode": cfg.get("mode"),
        "batch_size": cfg.get("batch_size"),
        "workload": cfg.get("workload_options"),
        "requests": data.run.get("workload", {}).get("num_requests"),
    }
    return json.dumps(key, sort_keys=True, default=str)


def find_ablations(runs: list[RunData]) -> list[list[RunData]]:
    groups: dict[str, list[RunData]] = {}
    for data in runs:
        groups.setdefault(ablation_key(data), []).append(data)
    return [members for members in groups.values() if len({json.dumps(_args(d), sort_keys=True) for d in members}) >= 2]


def _args(data: RunData) -> dict[str, str]:
    return dict(data.run.get("config", {}).get("engine_args") or {})


def change_text(base: dict[str, str], args: dict[str, str]) -> str:
    """The options of `args` that differ from `base` (`key=value`, `key=default` when dropped)."""
    changed = [f"{k}={v}" for k, v in args.items() if base.get(k) != v]
    changed += [f"{k}=default" for k in base if k not in args]
    return ", ".join(changed) or "baseline"


def ablation_table(group: list[RunData]) -> pd.DataFrame:
    """One row per option set, in the order the sets first ran: repetitions of a set are averaged (throughput, TPOT,
    batch, step times), with their spread ((max - min) / mean), and each set is compared with the first set's mean."""
    base_args = _args(group[0])
    rows: list[dict[str, Any]] = []
    base_tok_s: float | None = None
    for members in option_sets(group):
        tok = _output_tok_s(members)
        mean_tok_s = mean_present(tok)
        base_tok_s = mean_tok_s if not rows else base_tok_s
        spread, [_, ratio] = spread_fraction(tok), ratios_to_first([base_tok_s, mean_tok_s])
        stats = [d.run.get("engine_stats") or {} for d in members]
        row = {
            "change": change_text(base_args, _args(members[0])),
            "runs": len(members),
            "output tok/s": mean_tok_s,
            "spread (%)": None if spread is None else 100.0 * spread,
            "vs baseline (%)": None if ratio is None else 100.0 * (ratio - 1),
            "TPOT p50 (ms)": mean_present([flat_metrics(d.summary).get("tpot_median_ms") for d in members]),
            "mean batch": mean_present([st.get("mean_batch_size") for st in stats]),
        }
        row.update(
            {f"{part.removesuffix('_s')} (s)": mean_present([st.get(part) for st in stats]) for part in STEP_TIME_PARTS}
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("change").astype(float).round(2)


def option_sets(group: list[RunData]) -> list[list[RunData]]:
    """The group's runs by engine options, in the order each option set first ran."""
    sets: dict[str, list[RunData]] = {}
    for data in group:
        sets.setdefault(json.dumps(_args(data), sort_keys=True), []).append(data)
    return list(sets.values())


def _output_tok_s(members: list[RunData]) -> list[float]:
    return [v for v in (flat_metrics(d.summary).get("output_tok_s") for d in members) if v is not None]


def ablation_figure(group: list[RunData], index: int) -> go.Figure:
    table = ablation_table(group).reset_index()
    tok_s = [_output_tok_s(members) for members in option_sets(group)]
    low = [m - min(tok) if tok else 0.0 for m, tok in zip(table["output tok/s"], tok_s)]
    high = [max(tok) - m if tok else 0.0 for m, tok in zip(table["output tok/s"], tok_s)]
    labels = [f"{c} ({int(n)} run{'s' if n > 1 else ''})" for c, n in zip(table["change"], table["runs"])]
    fig = go.Figure(
        go.Bar(
            x=table["output tok/s"],
            y=labels,
            orientation="h",
            error_x=dict(type="data", symmetric=False, array=high, arrayminus=low),
            text=[f"{v:+.1f}%" if pd.notna(v) else "" for v in table["vs baseline (%)"]],
            textposition="outside",
            marker_color="#636EFA",
        )
    )
    cfg = group[0].run.get("config", {})
    fig.update_yaxes(automargin=True)
    fig.update_layout(
        height=120 + 40 * len(labels),
        yaxis=dict(autorange="reversed"),
        xaxis_title="output tokens/s (mean; bars span the runs)",
        title=f"Ablation {index + 1}: {cfg.get('backend')} — change vs the first option set",
    )
    return fig


def section(runs: list[RunData]) -> Section | None:
    groups = find_ablations(runs)
    if not groups:
        return None
    sec = Section(
        "ablation",
        "Ablations",
        intro="Runs of one backend on the same workload that differ only in engine options. Each row "
        "names what changed from the first run's options (the baseline); repeated runs of one option "
        "set are averaged, and their spread ((max − min) ÷ mean) says how far one run can be trusted "
        "on this machine. Step times are the engine's own breakdown (seconds summed over a run).",
    )
    for i, group in enumerate(groups):
        sec.add_figure(f"fig-ablation-{i + 1}", ablation_figure(group, i))
        sec.tables.append((f"Ablation {i + 1}", ablation_table(group)))
    return sec
