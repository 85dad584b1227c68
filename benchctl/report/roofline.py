"""Roofline efficiency of decode: bytes a decode step must read ÷ its time, against measured bandwidth.

A decode step reads every weight once plus the KV cache of every sequence in the batch:
    bytes = weight_bytes (safetensors sizes) + kv_slots_filled × kv_bytes_per_token
    kv_bytes_per_token = 2 (K and V) × layers × kv_heads × head_dim × bytes per element
The ceiling is `benchctl hwinfo`'s measured read bandwidth (cached; the report never measures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from benchctl import hwinfo
from benchctl.metrics.steps import STEP_TIME_PARTS
from benchctl.report.internals import batch_size
from benchctl.report.load import RunData, read_json
from benchctl.report.section import Section, run_color

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2}
HWINFO_HINT = "run `benchctl hwinfo` on the machine that ran the benchmark to measure it"


def kv_bytes_per_token(config: dict[str, Any], dtype_bytes: int = 4) -> int:
    """K and V for one token across all layers: 2 × layers × kv_heads × head_dim × bytes per element."""
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads") or heads
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * dtype_bytes


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
    parameters = hwinfo.parameter_count(folder)
    lm_head = int(config.get("vocab_size") or 0) * int(config.get("hidden_size") or 0)
    # GEMM weights per token: all but the embedding table (a lookup), which a tied model reuses as its LM head
    per_token = parameters - lm_head * (1 if config.get("tie_word_embeddings") else 2)
    return {"weight_bytes": hwinfo.weight_bytes(folder), "parameters": parameters,
            "gemm_parameters_per_token": per_token, "lm_head_parameters": lm_head,
            "kv_bytes_per_token": kv_bytes_per_token(config, DTYPE_BYTES.get(dtype, 4)), "dtype": dtype}, None


def decode_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """Steps that only decode (no prefill in the batch), with their step time and forward time (s)."""
    mask = pd.Series(True, index=steps.index)
    if "num_prefill_seqs" in steps:
        mask &= steps["num_prefill_seqs"].fillna(0) == 0
    if "num_decode_seqs" in steps:
        mask &= steps["num_decode_seqs"].fillna(0) > 0
    parts = [p for p in STEP_TIME_PARTS if p in steps]
    out = pd.DataFrame({"t_s": steps["t_s"]})
    out["step_s"] = steps[parts].sum(axis=1) if parts else steps["t_s"].diff()
    out["forward_s"] = steps["forward_s"] if "forward_s" in steps else np.nan
    out["kv_slots_filled"] = steps["kv_slots_filled"] if "kv_slots_filled" in steps else np.nan
    size = batch_size(steps)
    out["batch_size"] = size if size is not None else np.nan
    return out[mask & (out["step_s"] > 0)].reset_index(drop=True)


def achieved_bandwidth(data: RunData, sizes: dict[str, Any]) -> pd.DataFrame:
    """Per decode step: bytes read and achieved GB/s over the whole step and over its forward alone."""
    dec = decode_steps(data.steps)
    kv = dec["kv_slots_filled"].fillna(0) * sizes["kv_bytes_per_token"]
    dec["bytes_read"] = sizes["weight_bytes"] + kv
    dec["step_gb_s"] = dec["bytes_read"] / dec["step_s"] / 1e9
    dec["forward_gb_s"] = dec["bytes_read"] / dec["forward_s"].where(dec["forward_s"] > 0) / 1e9
    return dec


DECODE_BINS = (0, 8, 16, 32, 64, 128, 256, np.inf)


def step_bounds(steps: pd.DataFrame, sizes: dict[str, Any], gemm_flop_s: float, read_bytes_s: float) -> pd.DataFrame:
    """Per step: its time, and the least time its work could take on this machine (the roofline bound).

    flops = 2 × (GEMM weights per token × batched tokens + LM-head weights × rows that need logits)
    bytes = weight bytes + KV bytes of the tokens in the cache (every step reads all weights and, at most, all KV)
    bound = max(flops ÷ measured GEMM FLOP/s, bytes ÷ measured read bandwidth); efficiency = bound ÷ step time
    Rows that need logits are counted as every scheduled sequence plus its draft tokens (an upper bound: a prefill
    chunk that does not end its prompt needs none). Steps with prefill tokens are one kind; decode-only steps are
    binned by batch size.
    """
    parts = [p for p in STEP_TIME_PARTS if p in steps]
    out = pd.DataFrame({"step_s": steps[parts].sum(axis=1) if parts else steps["t_s"].diff()})
    tokens = steps["num_batched_tokens"].fillna(0)
    rows = batch_size(steps)
    rows = rows.fillna(0) if rows is not None else tokens
    kv = steps["kv_slots_filled"].fillna(0) if "kv_slots_filled" in steps else 0
    out["tokens"] = tokens
    # a speculative draft's tokens each need logits too
    logit_rows = rows + (steps["num_draft_tokens"].fillna(0) if "num_draft_tokens" in steps else 0)
    out["flops"] = 2 * (sizes["gemm_parameters_per_token"] * tokens + sizes["lm_head_parameters"] * logit_rows)
    out["bytes"] = sizes["weight_bytes"] + kv * sizes["kv_bytes_per_token"]
    out["bound_s"] = np.maximum(out["flops"] / gemm_flop_s, out["bytes"] / read_bytes_s)
    prefill = steps["num_prefill_tokens"].fillna(0) > 0 if "num_prefill_tokens" in steps else tokens > rows
    bins = pd.cut(rows, DECODE_BINS, right=True, labels=False)
    out["order"] = np.where(prefill, -1, bins.fillna(-1))
    out["kind"] = ["with prefill tokens" if o < 0 else
                   f"decode only, {DECODE_BINS[int(o)] + 1}-{DECODE_BINS[int(o) + 1]:g} seqs" for o in out["order"]]
    return out[out["step_s"] > 0].reset_index(drop=True)


def bound_table(bounds: pd.DataFrame) -> pd.DataFrame:
    """Steps grouped by kind, then the whole run: time, bound, efficiency (bound ÷ time), ms per token."""
    def summarize(group: pd.DataFrame) -> dict[str, Any]:
        return {"steps": len(group), "tokens": int(group["tokens"].sum()),
                "time (s)": _sig(float(group["step_s"].sum())),
                "share of step time": _sig(float(group["step_s"].sum() / bounds["step_s"].sum())),
                "bound (s)": _sig(float(group["bound_s"].sum())),
                "efficiency (bound ÷ time)": _sig(float(group["bound_s"].sum() / group["step_s"].sum())),
                "ms per token": _sig(float(1000 * group["step_s"].sum() / max(group["tokens"].sum(), 1)))}
    rows = {kind: summarize(group) for (_, kind), group in bounds.groupby(["order", "kind"], sort=True)}
    rows["all steps"] = summarize(bounds)
    return pd.DataFrame.from_dict(rows, orient="index")


def _sig(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def _same_cpu(run: dict, hw: dict | None) -> bool:
    if hw is None:
        return True
    return run.get("environment", {}).get("hardware", {}).get("cpu") == hw.get("hardware", {}).get("cpu")


def section(runs: list[RunData], hw: dict | None) -> Section:
    sec = Section("roofline", "Roofline efficiency",
                  intro="Achieved memory bandwidth of pure-decode steps: (weight bytes + KV bytes of the tokens "
                        "in the cache) ÷ step time, as a fraction of the machine's measured read bandwidth. Then, "
                        "per run, where the step time goes against the roofline bound of each step's work (its "
                        "GEMM FLOPs at the measured GEMM rate or its bytes at the measured bandwidth, whichever "
                        "is slower): prefill steps and decode steps by batch size, their efficiency (bound ÷ time), "
                        "and the whole run's.")
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
        if not _same_cpu(data.run, hw):
            sec.notes.append(f"{data.label}: ran on {data.run['environment']['hardware'].get('cpu')}, but the cached "
                             f"bandwidth was measured on {hw['hardware'].get('cpu')}")
        scale = ceiling if ceiling else 1.0
        for col, dash, what in (("step_gb_s", None, "whole step"), ("forward_gb_s", "dot", "forward only")):
            if dec[col].notna().any():
                fig.add_trace(go.Scatter(x=dec["t_s"], y=dec[col] / scale, mode="lines+markers", marker_size=4,
                                         line=dict(color=run_color(i), dash=dash), name=f"{data.label}: {what}",
                                         customdata=dec[col],
                                         hovertemplate="t=%{x:.3f} s<br>%{customdata:.2f} GB/s"
                                                       "<extra>%{fullData.name}</extra>"))
        step_s = float(dec["step_s"].median())
        row = {"run": data.label, "dtype": sizes["dtype"],
               "weights (MB)": _sig(sizes["weight_bytes"] / 1e6),
               "parameters (M)": _sig(sizes["parameters"] / 1e6), "KV bytes/token": sizes["kv_bytes_per_token"],
               "decode steps": len(dec), "median step (ms)": round(step_s * 1000, 2),
               "median achieved (GB/s)": _sig(float(dec["step_gb_s"].median())),
               "median forward-only (GB/s)": _sig(float(dec["forward_gb_s"].median()))
               if dec["forward_gb_s"].notna().any() else None,
               "median decode tok/s": round(float((dec["batch_size"] / dec["step_s"]).median()), 2)
               if dec["batch_size"].notna().any() else None}
        bandwidth = found[0].get("read_bandwidth_gb_s") if found else ceiling  # measured near the run, else cached
        if bandwidth:
            row["measured read (GB/s)"] = round(bandwidth, 2)
            row["fraction of measured"] = _sig(float(dec["step_gb_s"].median()) / bandwidth)
        near = hwinfo.ceiling_from(found, sizes["parameters"], data.summary.get("total_tok_s"))
        if near is not None:
            row["compute ceiling (tok/s)"] = round(near["ceiling_tok_s"], 1)
            row["run's total tok/s ÷ ceiling"] = _sig(near["share"]) if near["share"] else None
            row["ceiling measured"] = f"{near['measured_at']} ({near['minutes_away']:.0f} min from the run)"
        elif hw and hw.get("gemm_fp32_flop_s"):
            row["compute ceiling (tok/s)"] = round(hwinfo.compute_ceiling_tok_s(hw["gemm_fp32_flop_s"],
                                                                                sizes["parameters"]), 1)
        rows.append(row)
    if not rows:
        return _with_bound_tables(sec, inputs, hw)
    if ceiling:
        fig.add_hline(y=1.0, line_dash="dash", line_color="black",
                      annotation_text=f"measured read bandwidth {ceiling:.1f} GB/s ({hw.get('measured_at')})")
        title, y_title = "Decode: achieved bandwidth ÷ measured bandwidth", "fraction of measured bandwidth"
    else:
        title, y_title = "Decode: achieved bandwidth (measured bandwidth missing: run `benchctl hwinfo`)", "GB/s"
    fig.update_layout(title=title, yaxis_title=y_title, xaxis_title="seconds since run start", height=420,
                      legend=dict(orientation="h", y=-0.25))
    sec.add_figure("fig-roofline", fig)
    sec.tables.append(("Decode roofline per run (medians over pure-decode steps)", pd.DataFrame(rows).set_index("run")))
    return _with_bound_tables(sec, inputs, hw)


def _with_bound_tables(sec: Section, inputs: list[tuple], hw: dict | None) -> Section:
    for data, sizes, _, found in inputs:
        _add_bound_table(sec, data, sizes, found, hw)
    return sec


def _add_bound_table(sec: Section, data: RunData, sizes: dict[str, Any] | None,
                     found: tuple[dict[str, Any], float] | None, hw: dict | None) -> None:
    """The run's steps against the roofline bound, with the hwinfo measurement for the run (else the cached)."""
    if data.steps is None or sizes is None or "num_batched_tokens" not in data.steps:
        return
    measured, when = (found[0], f"{found[0]['measured_at']}, {found[1]:.0f} min from the run") if found else (
        hw, f"{hw.get('measured_at')}, the cached measurement" if hw else None)
    if not measured or not measured.get("gemm_fp32_flop_s") or not measured.get("read_bandwidth_gb_s"):
        return
    bounds = step_bounds(data.steps, sizes, measured["gemm_fp32_flop_s"], measured["read_bandwidth_gb_s"] * 1e9)
    if bounds.empty:
        return
    sec.tables.append((f"{data.label}: step time against the roofline bound — each step's GEMM FLOPs at "
                       f"{measured['gemm_fp32_flop_s'] / 1e9:.1f} GFLOP/s or its weight + KV bytes at "
                       f"{measured['read_bandwidth_gb_s']:.1f} GB/s, whichever is slower (benchctl hwinfo {when})",
                       bound_table(bounds)))
