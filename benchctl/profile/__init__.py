"""Profiles of a run: torch.profiler traces, Nsight Systems and Nsight Compute, and what they say about the engine.

`benchctl run --profile torch` wraps the worker's run in torch.profiler (inside the worker process, so
the harness never imports torch) and saves a Chrome trace in the run folder. `--profile nsys` re-launches
the worker under `nsys profile` with NVTX tracing and then reads `nsys stats` summaries; `--profile ncu` under
`ncu --csv` on the paged-attention kernel. All feed `profile_summary.json`: top operators, how much of the run the
engine's named ranges cover, the idle time between engine steps, each step's split into its ranges, a timeline of
ranges and operators, and (ncu) each kernel's achieved DRAM bandwidth.
"""

from __future__ import annotations

import shutil
import subprocess  # noqa: F401 (tests patch benchctl.profile.subprocess)
from pathlib import Path
from typing import Any

from benchctl.backend import BackendError
from benchctl.envinfo import cuda_present
from benchctl.profile.nsight import (
    NCU_METRICS,
    NSYS_REPORTS,
    NSYS_TRACES,
    ncu_kernels,
    ncu_prefix,
    nsys_prefix,
    nsys_stats_command,
    nsys_trace_events,
    parse_ncu_csv,
    parse_nsys_csv,
    summarize_ncu,
    summarize_nsys,
    to_base_unit,
)
from benchctl.profile.traces import (
    STEP_PARTS,
    STEP_RANGE,
    is_operator,
    load_trace,
    summarize_torch_trace,
    trace_views,
)

PROFILE_MODES = ("none", "torch", "nsys", "ncu")
NVTX_ENV = "REFERENCE_ENGINE_NVTX"  # reference_engine.profiling's switch (the harness does not import the engine)


def check_profile(mode: str) -> None:
    if mode not in PROFILE_MODES:
        raise BackendError(f"--profile must be one of {', '.join(PROFILE_MODES)}, got {mode!r}")
    if mode in ("nsys", "ncu"):
        missing = [
            what
            for what, ok in ((f"{mode} on PATH", shutil.which(mode) is not None), ("an NVIDIA GPU", cuda_present()))
            if not ok
        ]
        tool = "Nsight Systems" if mode == "nsys" else "Nsight Compute"
        if missing:
            raise BackendError(
                f"--profile {mode} needs {' and '.join(missing)} ({tool} is not on PyPI; "
                f"it ships with the CUDA toolkit on GPU machines); use --profile torch here"
            )


def worker_prefix(mode: str, run_dir: Path) -> list[str] | None:
    """The command the worker runs under for a profile mode (None: the worker runs as it is). Under nsys and ncu the
    reference engine also emits NVTX ranges (nsys shows them, ncu can filter kernels by them)."""
    if mode not in ("nsys", "ncu"):
        return None
    return ["env", f"{NVTX_ENV}=1", *(nsys_prefix if mode == "nsys" else ncu_prefix)(run_dir)]


def summarize(mode: str, run_dir: Path, trace_name: str = "torch_trace.json") -> dict[str, Any]:
    """profile_summary.json's contents for a profiled run folder."""
    if mode == "torch":
        return summarize_torch_trace(run_dir / trace_name)
    return summarize_nsys(run_dir) if mode == "nsys" else summarize_ncu(run_dir)


__all__ = [
    "NCU_METRICS",
    "NSYS_REPORTS",
    "NSYS_TRACES",
    "NVTX_ENV",
    "PROFILE_MODES",
    "STEP_PARTS",
    "STEP_RANGE",
    "check_profile",
    "is_operator",
    "load_trace",
    "ncu_kernels",
    "ncu_prefix",
    "nsys_prefix",
    "nsys_stats_command",
    "nsys_trace_events",
    "parse_ncu_csv",
    "parse_nsys_csv",
    "summarize",
    "summarize_ncu",
    "summarize_nsys",
    "summarize_torch_trace",
    "to_base_unit",
    "trace_views",
    "worker_prefix",
]
