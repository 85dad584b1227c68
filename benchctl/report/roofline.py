"""Roofline efficiency of decode: bytes a decode step must read ÷ its time, against measured bandwidth.

A decode step reads every weight once plus the KV cache of every sequence in the batch:
    bytes = weight_bytes (safetensors sizes) + kv_slots_filled × kv_bytes_per_token
    kv_bytes_per_token = 2 (K and V) × layers × kv_heads × head_dim × bytes per element
The ceiling is `benchctl hwinfo`'s measured read bandwidth (cached; the report never measures). The arithmetic,
and the per-step roofline bound, are benchctl.metrics.steps'; this module reads the model's sizes and draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from benchctl import hwinfo
from benchctl.metrics.ceiling import ceiling_from, compute_ceiling_tok_s
from benchctl.metrics.steps import bound_summary, decode_bandwidth, decode_summary, model_sizes, step_bounds
from benchctl.report.load import RunData, read_json
from benchctl.report.section import Section, run_color

HWINFO_HINT = "run `benchctl hwinfo` on the machine that ran the benchmark to measure it"


def model_bytes(run: dict) -> tuple[dict[str, Any] | None, str | None]:
    """({weight_bytes, parameters, kv_bytes_per_token}, None) or (None, why not)."""
    hf_dir = ((run.get("config") or {}).get("model") or {}).get("hf_dir")
    if not hf_dir:
        return None, "run.json has no config.model.hf_dir"
    folder = Path(hf_dir)
    if not hwinfo.safetensors_files(folder):
        return None, f"no *.safetensors in {folder} (model folder moved or not on this machine)"
    config = read_json(folder / "config.json")
    if config is None:
        return None, f"no readable config.json in {folder}"
    dtype = str((run.get("engine") or {}).get("dtype") or config.get("dtype") or config.get("torch_dtype") or "float32")
    return model_sizes(config, hwinfo.parameter_count(folder), hwinfo.weight_bytes(folder), dtype), None


def achieved_bandwidth(data: RunData, sizes: dict[str, Any]) -> pd.DataFrame:
    """The run's decode steps with the bytes they read and the GB/s they achieved (metrics.steps.decode_bandwidth)."""
    return decode_bandwidth(data.steps, sizes)


def bound_table(bounds: pd.DataFrame) -> pd.DataFrame:
    """Steps grouped by kind, then the whole run: time, bound, efficiency (bound ÷ time), ms per token
    (metrics.steps.bound_summary, to 3 significant digits)."""
    rows = {
        kind: {
            "steps": found["steps"],
            "tokens": found["tokens"],
            "time (s)": _sig(found["time_s"]),
            "share of step time": _sig(found["share_of_step_time"]),
            "bound (s)": _sig(found["bound_s"]),
            "efficiency (bound ÷ time)": _sig(found["efficiency"]),
            "ms per token": _sig(found["ms_per_token"]),
        }
        for kind, found in bound_summary(bounds).items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def _sig(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def _opt(fmt, value: float | None) -> float | None:
    return None if value is None else fmt(value)


def _same_cpu(run: dict, hw: dict | None) -> bool:
    if hw is None:
        return True
    return run.get("environment", {}).get("hardware", {}).get("cpu") == hw.get("hardware", {}).get("cpu")


def section(runs: list[RunData], hw: dict | None) -> Section:
    sec = Section(
        "roofline",
        "Roofline efficiency",
        intro="Achieved memory bandwidth of pure-decode steps: (weight bytes + KV bytes of the tokens "
        "in the cache) ÷ step time, as a fraction of the machine's measured read bandwidth. Then, "
        "per run, where the step time goes against the roofline bound of each step's work (its "
        "GEMM FLOPs at the measured GEMM rate or its bytes at the measured bandwidth, whichever "
        "is slower): prefill steps and decode steps by batch size, their efficiency (bound ÷ time), "
        "and the whole run's.",
    )
    ceiling = hw.get("read_bandwidth_gb_s") if hw else None
    if ceiling is None:
        sec.notes.append(f"measured memory bandwidth missing: {HWINFO_HINT}; achieved GB/s is shown without a ceiling")
    fig, rows = go.Figure(), []
    # per run, read once: model sizes (safetensors headers, config.json) and the hwinfo measurement near the run
    inputs = [(data, *model_bytes(data.run), hwinfo.measurement_for_run(data.run)) for data in runs]
    for i, (data, sizes, why, found) in enumerate(inputs):
        if data.steps is None:
            sec.notes.append(f"{data.label}: no steps.jsonl, so no per-step time to divide by")
            continue
        if sizes is None:
            sec.notes.append(f"{data.label}: {why}")
            continue
        if "kv_slots_filled" not in data.steps:
            sec.notes.append(f"{data.label}: steps carry no kv_slots_filled: KV bytes counted as 0")
        dec = achieved_bandwidth(data, sizes)
        if dec.empty:
            sec.notes.append(f"{data.label}: no pure-decode steps")
            continue
        if hw is not None and not _same_cpu(data.run, hw):
            sec.notes.append(
                f"{data.label}: ran on {data.run['environment']['hardware'].get('cpu')}, but the cached "
                f"bandwidth was measured on {hw['hardware'].get('cpu')}"
            )
        scale = ceiling if ceiling else 1.0
        for col, dash, what in (("step_gb_s", None, "whole step"), ("forward_gb_s", "dot", "forward only")):
            if dec[col].notna().any():
                fig.add_trace(
                    go.Scatter(
                        x=dec["t_s"],
                        y=dec[col] / scale,
                        mode="lines+markers",
                        marker_size=4,
                        line=dict(color=run_color(i), dash=dash),
                        name=f"{data.label}: {what}",
                        customdata=dec[col],
                        hovertemplate="t=%{x:.3f} s<br>%{customdata:.2f} GB/s<extra>%{fullData.name}</extra>",
                    )
                )
        bandwidth = found[0].get("read_bandwidth_gb_s") if found else ceiling  # measured near the run, else cached
        medians = decode_summary(dec, bandwidth)
        row = {
            "run": data.label,
            "dtype": sizes["dtype"],
            "weights (MB)": _sig(sizes["weight_bytes"] / 1e6),
            "parameters (M)": _sig(sizes["parameters"] / 1e6),
            "KV bytes/token": sizes["kv_bytes_per_token"],
            "decode steps": medians["decode_steps"],
            "median step (ms)": round(medians["median_step_s"] * 1000, 2),
            "median achieved (GB/s)": _sig(medians["median_gb_s"]),
            "median forward-only (GB/s)": _opt(_sig, medians["median_forward_gb_s"]),
            "median decode tok/s": _opt(lambda v: round(v, 2), medians["median_decode_tok_s"]),
        }
        if bandwidth:
            row["measured read (GB/s)"] = round(bandwidth, 2)
            row["fraction of measured"] = _sig(medians["fraction_of_measured"])
        near = ceiling_from(found, sizes["parameters"], data.summary.get("total_tok_s"))
        if near is not None:
            row["compute ceiling (tok/s)"] = round(near["ceiling_tok_s"], 1)
            row["run's total tok/s ÷ ceiling"] = _sig(near["share"]) if near["share"] else None
            row["ceiling measured"] = f"{near['measured_at']} ({near['minutes_away']:.0f} min from the run)"
        elif hw and hw.get("gemm_fp32_flop_s"):
            ceiling_tok_s = compute_ceiling_tok_s(hw["gemm_fp32_flop_s"], sizes["parameters"])
            row["compute ceiling (tok/s)"] = round(ceiling_tok_s, 1)
        rows.append(row)
    if not rows:
        return _with_bound_tables(sec, inputs, hw)
    if hw is not None and ceiling:
        fig.add_hline(
            y=1.0,
            line_dash="dash",
            line_color="black",
            annotation_text=f"measured read bandwidth {ceiling:.1f} GB/s ({hw.get('measured_at')})",
        )
        title, y_title = "Decode: achieved bandwidth ÷ measured bandwidth", "fraction of measured bandwidth"
    else:
        title, y_title = "Decode: achieved bandwidth (measured bandwidth missing: run `benchctl hwinfo`)", "GB/s"
    fig.update_layout(
        title=title,
        yaxis_title=y_title,
        xaxis_title="seconds since run start",
        height=420,
        legend=dict(orientation="h", y=-0.25),
    )
    sec.add_figure("fig-roofline", fig)
    sec.tables.append(("Decode roofline per run (medians over pure-decode steps)", pd.DataFrame(rows).set_index("run")))
    return _with_bound_tables(sec, inputs, hw)


def _with_bound_tables(sec: Section, inputs: list[tuple], hw: dict | None) -> Section:
    for data, sizes, _, found in inputs:
        _add_bound_table(sec, data, sizes, found, hw)
    return sec


def _add_bound_table(
    sec: Section,
    data: RunData,
    sizes: dict[str, Any] | None,
    found: tuple[dict[str, Any], float] | None,
    hw: dict | None,
) -> None:
    """The run's steps against the roofline bound, with the hwinfo measurement for the run (else the cached)."""
    if data.steps is None or sizes is None or "num_batched_tokens" not in data.steps:
        return
    measured, when = (
        (found[0], f"{found[0]['measured_at']}, {found[1]:.0f} min from the run")
        if found
        else (hw, f"{hw.get('measured_at')}, the cached measurement" if hw else None)
    )
    if not measured or not measured.get("gemm_fp32_flop_s") or not measured.get("read_bandwidth_gb_s"):
        return
    bounds = step_bounds(data.steps, sizes, measured["gemm_fp32_flop_s"], measured["read_bandwidth_gb_s"] * 1e9)
    if bounds.empty:
        return
    sec.tables.append(
        (
            f"{data.label}: step time against the roofline bound — each step's GEMM FLOPs at "
            f"{measured['gemm_fp32_flop_s'] / 1e9:.1f} GFLOP/s or its weight + KV bytes at "
            f"{measured['read_bandwidth_gb_s']:.1f} GB/s, whichever is slower (benchctl hwinfo {when})",
            bound_table(bounds),
        )
    )
