"""The machine's compute ceiling for a model, and a run's share of it (measurements from `benchctl hwinfo`).

Which measurement belongs to a run (its CPU, near its time) is chosen in benchctl.hwinfo; the arithmetic is here.
"""

from __future__ import annotations

from typing import Any

BELOW_BEST = 0.9  # a measurement near a run below this share of the CPU's best is flagged (its host was busy)


def compute_ceiling_tok_s(gemm_flop_s: float, num_parameters: int) -> float:
    """Tokens/s if every token cost 2 FLOPs per parameter at the measured fp32 GEMM rate."""
    return gemm_flop_s / (2 * num_parameters)


def best_measurement(cpu: str | None, history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest GEMM measurement on `cpu`: what the machine can do when nothing else on its host competes. A
    measurement taken while the host was busy can be far below it, and a share against that one flatters the run."""
    found = [e for e in history if e.get("gemm_fp32_flop_s") and (e.get("hardware") or {}).get("cpu") == cpu]
    return max(found, key=lambda e: e["gemm_fp32_flop_s"]) if found else None


def run_device(run: dict[str, Any]) -> tuple[str, str]:
    """("cuda" or "cpu", the compute dtype) the run's engine reported: what its ceiling is measured on."""
    engine = run.get("engine") or {}
    device = str(engine.get("device") or "cpu")
    on_gpu = device.startswith("cuda") or "nvidia" in device.lower() or device.lower().startswith("gpu")
    return ("cuda" if on_gpu else "cpu"), str(engine.get("dtype") or ("bfloat16" if on_gpu else "float32"))


def gemm_rate(entry: dict[str, Any], device: str = "cpu", dtype: str = "float32") -> tuple[float | None, str]:
    """(FLOP/s, what it is) of a measurement for a run on `device` in `dtype`: the GPU's bf16 or fp16 matmul
    (hwinfo's `cuda` section) for a CUDA run, the CPU's fp32 GEMM otherwise. None when not measured there."""
    if device == "cuda":
        cuda = entry.get("cuda") or {}
        half = "fp16" if dtype in ("float16", "fp16") else "bf16"
        rate = cuda.get(f"matmul_{half}_flop_s")
        return rate, f"{cuda.get('device', 'GPU')} {half} matmul"
    return entry.get("gemm_fp32_flop_s"), "fp32 GEMM"


def ceiling_from(
    found: tuple[dict[str, Any], float] | None,
    parameters: int | None,
    total_tok_s: float | None,
    best: dict[str, Any] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict[str, Any] | None:
    """{ceiling_tok_s, share, measured_at, minutes_away, gemm_flop_s, gemm} from a (measurement, minutes away) pair,
    at the rate of the device the run used (gemm_rate); share = total tok/s ÷ ceiling (None without a total). With
    `best` (a measurement), also best_gemm_flop_s, best_measured_at and share_of_best = total tok/s ÷ the ceiling at
    the best measurement's rate. None when the measurement has no rate for that device."""
    if found is None or not parameters:
        return None
    entry, minutes = found
    rate, what = gemm_rate(entry, device, dtype)
    if not rate:
        return None
    ceiling = compute_ceiling_tok_s(rate, parameters)
    result = {
        "ceiling_tok_s": ceiling,
        "share": total_tok_s / ceiling if total_tok_s else None,
        "gemm_flop_s": rate,
        "gemm": what,
        "measured_at": entry["measured_at"],
        "minutes_away": minutes,
    }
    if best is not None:
        best = max(best, entry, key=lambda e: gemm_rate(e, device, dtype)[0] or 0.0)
        best_rate = gemm_rate(best, device, dtype)[0] or rate
        best_ceiling = compute_ceiling_tok_s(best_rate, parameters)
        result.update(
            best_gemm_flop_s=best_rate,
            best_measured_at=best["measured_at"],
            share_of_best=total_tok_s / best_ceiling if total_tok_s else None,
        )
    return result


def below_best(ceiling: dict[str, Any]) -> bool:
    """True when the measurement a ceiling was taken from is below BELOW_BEST of the CPU's best (ceiling_from)."""
    return (
        ceiling.get("share_of_best") is not None and ceiling["gemm_flop_s"] < BELOW_BEST * ceiling["best_gemm_flop_s"]
    )
