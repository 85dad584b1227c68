"""Engine steps (steps.jsonl, run.json engine_stats): where a step's time goes, and the least time its work could
take on the machine (the roofline bound).

Imported on its own, not from benchctl.metrics, so that the CLI starts without pandas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# The parts an engine step's time is split into (steps.jsonl columns and engine_stats totals, seconds).
STEP_TIME_PARTS = ("schedule_s", "forward_s", "sample_s", "detokenize_s")
DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2}
DECODE_BINS = (0, 8, 16, 32, 64, 128, 256, np.inf)  # decode-only steps are grouped by batch size


def step_seconds(steps: pd.DataFrame) -> pd.Series:
    """Each step's time: the sum of the parts the engine reports, else the gap since the previous step ended."""
    parts = [p for p in STEP_TIME_PARTS if p in steps]
    return steps[parts].sum(axis=1) if parts else steps["t_s"].diff()


def step_times(steps: pd.DataFrame) -> pd.DataFrame:
    """Per step: the measured parts (s), and idle_s = the gap since the previous step ended.

    A step starts at t_s − (sum of its parts); parts the engine does not report count as 0, so their time
    shows up as idle. The first step has no previous step: its idle is 0. Negative gaps (timer overlap) → 0.
    """
    parts = steps.reindex(columns=list(STEP_TIME_PARTS)).astype(float).fillna(0.0)
    start = steps["t_s"].to_numpy(dtype=float) - parts.sum(axis=1).to_numpy()
    prev_end = np.concatenate([[start[0] if len(start) else 0.0], steps["t_s"].to_numpy(dtype=float)[:-1]])
    parts["idle_s"] = np.clip(start - prev_end, 0.0, None)
    parts.insert(0, "t_s", steps["t_s"].to_numpy(dtype=float))
    return parts


def breakdown_totals(steps: pd.DataFrame) -> dict[str, float]:
    """Seconds spent in each part (STEP_TIME_PARTS, then idle_s) over the run's steps."""
    times = step_times(steps)
    return {part: float(times[part].sum()) for part in (*STEP_TIME_PARTS, "idle_s")}


def shares(totals: dict[str, float]) -> dict[str, float]:
    """Each total as a fraction of their sum (0 when they sum to 0)."""
    whole = sum(totals.values())
    return {k: v / whole if whole else 0.0 for k, v in totals.items()}


def batch_size(steps: pd.DataFrame) -> pd.Series | None:
    """Sequences in each step's forward: prefill + decode sequences (or num_running when those are absent)."""
    if {"num_prefill_seqs", "num_decode_seqs"} <= set(steps):
        return steps["num_prefill_seqs"].fillna(0) + steps["num_decode_seqs"].fillna(0)
    return steps["num_running"] if "num_running" in steps else None


def _pct(steps: pd.DataFrame, num: str, den: str) -> pd.Series | None:
    if not {num, den} <= set(steps):
        return None
    return 100.0 * steps[num] / steps[den].replace(0, np.nan)


def kv_blocks_used_pct(steps: pd.DataFrame) -> pd.Series | None:
    """Per step: KV-cache blocks in use, % of all blocks (None when the engine reports neither count)."""
    return _pct(steps, "kv_blocks_used", "kv_blocks_total")


def kv_waste_pct(steps: pd.DataFrame) -> pd.Series | None:
    """Per step: % of the allocated KV slots that hold no token (a block's unfilled tail)."""
    filled = _pct(steps, "kv_slots_filled", "kv_slots_allocated")
    return None if filled is None else 100.0 - filled


def kv_bytes_per_token(config: dict[str, Any], dtype_bytes: int = 4) -> int:
    """K and V for one token across all layers: 2 × layers × kv_heads × head_dim × bytes per element."""
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads") or heads
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * dtype_bytes


def model_sizes(config: dict[str, Any], parameters: int, weight_bytes: int, dtype: str) -> dict[str, Any]:
    """What a step of this model reads and computes: weight bytes, parameters, the GEMM weights per token (all but
    the embedding table, a lookup, which a tied model reuses as its LM head), the LM head's, KV bytes per token."""
    lm_head = int(config.get("vocab_size") or 0) * int(config.get("hidden_size") or 0)
    per_token = parameters - lm_head * (1 if config.get("tie_word_embeddings") else 2)
    return {
        "weight_bytes": weight_bytes,
        "parameters": parameters,
        "gemm_parameters_per_token": per_token,
        "lm_head_parameters": lm_head,
        "kv_bytes_per_token": kv_bytes_per_token(config, DTYPE_BYTES.get(dtype, 4)),
        "dtype": dtype,
    }


def decode_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """Steps that only decode (no prefill in the batch), with their step time and forward time (s)."""
    mask = pd.Series(True, index=steps.index)
    if "num_prefill_seqs" in steps:
        mask &= steps["num_prefill_seqs"].fillna(0) == 0
    if "num_decode_seqs" in steps:
        mask &= steps["num_decode_seqs"].fillna(0) > 0
    out = pd.DataFrame({"t_s": steps["t_s"]})
    out["step_s"] = step_seconds(steps)
    out["forward_s"] = steps["forward_s"] if "forward_s" in steps else np.nan
    out["kv_slots_filled"] = steps["kv_slots_filled"] if "kv_slots_filled" in steps else np.nan
    size = batch_size(steps)
    out["batch_size"] = size if size is not None else np.nan
    return out[mask & (out["step_s"] > 0)].reset_index(drop=True)


def decode_bandwidth(steps: pd.DataFrame, sizes: dict[str, Any]) -> pd.DataFrame:
    """Per decode step: bytes read (weights + KV of the cached tokens) and achieved GB/s over the whole step and
    over its forward alone."""
    dec = decode_steps(steps)
    dec["bytes_read"] = sizes["weight_bytes"] + dec["kv_slots_filled"].fillna(0) * sizes["kv_bytes_per_token"]
    dec["step_gb_s"] = dec["bytes_read"] / dec["step_s"] / 1e9
    dec["forward_gb_s"] = dec["bytes_read"] / dec["forward_s"].where(dec["forward_s"] > 0) / 1e9
    return dec


def decode_summary(dec: pd.DataFrame, read_gb_s: float | None = None) -> dict[str, Any]:
    """Medians over decode_bandwidth's steps (None where the steps lack the column); with the measured read
    bandwidth, the median achieved GB/s as a fraction of it."""

    def median(values: pd.Series) -> float | None:
        return float(values.median()) if values.notna().any() else None

    found = {
        "decode_steps": len(dec),
        "median_step_s": median(dec["step_s"]),
        "median_gb_s": median(dec["step_gb_s"]),
        "median_forward_gb_s": median(dec["forward_gb_s"]),
        "median_decode_tok_s": median(dec["batch_size"] / dec["step_s"]),
    }
    if read_gb_s and found["median_gb_s"] is not None:
        found["fraction_of_measured"] = found["median_gb_s"] / read_gb_s
    return found


def step_bounds(steps: pd.DataFrame, sizes: dict[str, Any], gemm_flop_s: float, read_bytes_s: float) -> pd.DataFrame:
    """Per step: its time, and the least time its work could take on this machine (the roofline bound).

    flops = 2 × (GEMM weights per token × batched tokens + LM-head weights × rows that need logits)
    bytes = weight bytes + KV bytes of the tokens in the cache (every step reads all weights and, at most, all KV)
    bound = max(flops ÷ measured GEMM FLOP/s, bytes ÷ measured read bandwidth); efficiency = bound ÷ step time
    Rows that need logits are counted as every scheduled sequence plus its draft tokens (an upper bound: a prefill
    chunk that does not end its prompt needs none). Steps with prefill tokens are one kind; decode-only steps are
    binned by batch size (DECODE_BINS).
    """
    out = pd.DataFrame({"step_s": step_seconds(steps)})
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
    out["kind"] = [
        "with prefill tokens" if o < 0 else f"decode only, {DECODE_BINS[int(o)] + 1}-{DECODE_BINS[int(o) + 1]:g} seqs"
        for o in out["order"]
    ]
    return out[out["step_s"] > 0].reset_index(drop=True)


def bound_summary(bounds: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """step_bounds grouped by kind (prefill first, then decode by batch size), then "all steps": steps, tokens,
    time (s), share of the run's step time, bound (s), efficiency (Σ bound ÷ Σ time), ms per token."""
    total_s = float(bounds["step_s"].sum())

    def summarize(group: pd.DataFrame) -> dict[str, Any]:
        time_s, bound_s = float(group["step_s"].sum()), float(group["bound_s"].sum())
        return {
            "steps": len(group),
            "tokens": int(group["tokens"].sum()),
            "time_s": time_s,
            "share_of_step_time": time_s / total_s,
            "bound_s": bound_s,
            "efficiency": bound_s / time_s,
            "ms_per_token": 1000 * time_s / max(float(group["tokens"].sum()), 1),
        }

    found = {kind: summarize(group) for (_, kind), group in bounds.groupby(["order", "kind"], sort=True)}
    found["all steps"] = summarize(bounds)
    return found
