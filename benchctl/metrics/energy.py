"""Energy of a run (benchctl.telemetry measures it): joules per output token and per total token.

Denominators: the output tokens, and the input + output tokens, of the run's completed requests (the tokens the
throughput metrics count). The energy is the device's (GPU through NVML) or the CPU packages' (RAPL) over the run's
measured phase, idle moments included: what serving these requests cost that device, not the whole machine.
"""

from __future__ import annotations

from typing import Any

from benchctl.metrics.latency import completed

DENOMINATORS = {
    "j_per_output_token": "output tokens of the completed requests",
    "j_per_total_token": "input + output tokens of the completed requests",
}


def energy_metrics(energy_j: float, records: list[dict[str, Any]]) -> dict[str, Any]:
    """{energy_j, j_per_output_token, j_per_total_token, output_tokens, total_tokens, denominators}; a ratio is None
    when its denominator is 0."""
    done = completed(records)
    output = sum(r.get("output_tokens", 0) for r in done)
    total = output + sum(r.get("prompt_tokens", 0) for r in done)
    return {
        "energy_j": energy_j,
        "j_per_output_token": energy_j / output if output else None,
        "j_per_total_token": energy_j / total if total else None,
        "output_tokens": output,
        "total_tokens": total,
        "denominators": dict(DENOMINATORS),
    }


def integrate_power_j(t_s: list[float], power_w: list[float | None]) -> float:
    """Energy from power readings (trapezoids; a missing reading skips its intervals): for GPUs without NVML's energy
    counter."""
    energy = 0.0
    for (t0, p0), (t1, p1) in zip(zip(t_s, power_w), zip(t_s[1:], power_w[1:])):
        if p0 is not None and p1 is not None:
            energy += (p0 + p1) / 2 * (t1 - t0)
    return energy
