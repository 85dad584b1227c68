"""Profiles of a run: torch.profiler traces and Nsight Systems, and what they say about the engine.

`benchctl run --profile torch` wraps the worker's run in torch.profiler (inside the worker process, so
the harness never imports torch) and saves a Chrome trace in the run folder. `--profile nsys` re-launches
the worker under `nsys profile` with NVTX tracing and then reads `nsys stats` summaries. Both feed
`profile_summary.json`: top operators, how much of the run the engine's named ranges cover, and the idle
time between engine steps.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchctl.backend import BackendError
from benchctl.envinfo import cuda_present

PROFILE_MODES = ("none", "torch", "nsys")
STEP_RANGE = "engine.step"  # the range the reference engine opens around each step
# Events that make the host wait for the device: scalar reads (.item()) and explicit synchronizations.
SYNC_EVENTS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
NSYS_REPORTS = ("nvtx_sum", "cuda_gpu_kern_sum", "osrt_sum")


def check_profile(mode: str) -> None:
    if mode not in PROFILE_MODES:
        raise BackendError(f"--profile must be one of {', '.join(PROFILE_MODES)}, got {mode!r}")
    if mode == "nsys":
        missing = [what for what, ok in (("nsys on PATH", shutil.which("nsys") is not None),
                                         ("an NVIDIA GPU", cuda_present())) if not ok]
        if missing:
            raise BackendError(f"--profile nsys needs {' and '.join(missing)} (Nsight Systems is not on PyPI; "
                               f"it ships with the CUDA toolkit on GPU machines); use --profile torch here")


def nsys_prefix(run_dir: Path) -> list[str]:
    """Command prefix that runs the worker under Nsight Systems with NVTX, CUDA and OS-runtime tracing."""
    return ["nsys", "profile", "--trace=nvtx,cuda,osrt", "--sample=none", "--force-overwrite=true",
            f"--output={run_dir / 'nsys'}"]


def nsys_stats_command(report: Path, out_prefix: Path) -> list[str]:
    return ["nsys", "stats", "--force-export=true", "--format=csv", "--output", str(out_prefix),
            *(f"--report={r}" for r in NSYS_REPORTS), str(report)]


def parse_nsys_csv(text: str) -> list[dict[str, Any]]:
    """Rows of one `nsys stats --format=csv` report, numbers converted (nsys prints a banner first)."""
    lines = text.splitlines()
    # the header is the first line naming the time column; anything before it is nsys's banner
    start = next((i for i, line in enumerate(lines) if line.lstrip('"').startswith("Time")), None)
    if start is None:
        raise ValueError("not an nsys stats CSV report (no 'Time' header)")
    rows = []
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        rows.append({k.strip(): _number(v) for k, v in row.items() if k is not None})
    return rows


def _number(value: str | None) -> Any:
    if value is None:
        return None
    text = value.strip().replace(",", "")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return value.strip()


def summarize_nsys(run_dir: Path) -> dict[str, Any]:
    """Run `nsys stats` on the run's report and keep the kernel and NVTX summaries."""
    report = run_dir / "nsys.nsys-rep"
    if not report.is_file():
        return {"error": "nsys produced no report"}
    subprocess.run(nsys_stats_command(report, run_dir / "nsys"), check=True, capture_output=True, timeout=600)
    summary: dict[str, Any] = {}
    for name in NSYS_REPORTS:
        found = sorted(run_dir.glob(f"nsys_{name}*.csv"))
        if found:
            summary[name] = parse_nsys_csv(found[0].read_text())[:50]
    return summary


def load_trace(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def _union_us(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def summarize_torch_trace(path: Path, top: int = 25) -> dict[str, Any]:
    """Top operators by self time, named-range coverage and idle time between engine steps."""
    events = [e for e in load_trace(path) if e.get("ph") == "X" and "dur" in e]
    annotations = [e for e in events if e.get("cat") == "user_annotation"]
    steps = sorted((e["ts"], e["ts"] + e["dur"]) for e in annotations if e.get("name") == STEP_RANGE)
    result: dict[str, Any] = {"trace": path.name, "num_events": len(events), "num_steps": len(steps)}
    if steps:
        window = (steps[0][0], steps[-1][1])
        span = window[1] - window[0]
        named = [(max(e["ts"], window[0]), min(e["ts"] + e["dur"], window[1])) for e in annotations
                 if e["ts"] < window[1] and e["ts"] + e["dur"] > window[0]]
        step_time = _union_us(steps)
        result.update({
            "window_s": span / 1e6,
            "range_coverage": _union_us(named) / span if span > 0 else 1.0,
            "idle_between_steps_fraction": 1 - step_time / span if span > 0 else 0.0,
            "ranges": _range_totals([e for e in annotations if e.get("name", "").startswith("engine.")]),
            # .item()-style reads and device synchronizations per step (on CPU they cost little, on a GPU
            # each one stalls the stream; a count that grows with the batch means per-sequence reads)
            "host_syncs_per_step": sum(1 for e in events if e.get("name") in SYNC_EVENTS) / len(steps),
        })
    ops: dict[str, list[float]] = {}
    for e, self_us in _self_times([e for e in events if is_operator(e)]):
        ops.setdefault(e["name"], []).append(self_us)
    table = sorted(((name, sum(d), len(d)) for name, d in ops.items()), key=lambda t: -t[1])
    total = sum(t[1] for t in table) or 1.0
    result["top_operators"] = [{"name": n, "self_ms": t / 1e3, "calls": c, "self_share": t / total}
                               for n, t, c in table[:top]]
    return result


def is_operator(event: dict) -> bool:
    """torch's own ops and device kernels, and the ranges (user annotations) named `<library>::<kernel>` that an
    engine opens around kernels it calls outside torch's dispatcher (the reference engine's `cpu_ops::packed_linear`,
    `cpu_ops::paged_attention`, ...): without them a profile would not show what such an engine spends its time on."""
    cat = event.get("cat")
    return cat in ("cpu_op", "kernel", "gpu_op") or (cat == "user_annotation" and "::" in event.get("name", ""))


def _self_times(ops: list[dict]) -> list[tuple[dict, float]]:
    """Each op's duration minus its direct children's on the same thread (nested ops are not double counted)."""
    out: list[tuple[dict, float]] = []
    by_thread: dict[tuple, list[dict]] = {}
    for e in ops:
        by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    for events in by_thread.values():
        events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[list] = []  # [event, end_us, children_us]
        for e in events:
            while stack and e["ts"] >= stack[-1][1]:
                done = stack.pop()
                out.append((done[0], done[0]["dur"] - done[2]))
            if stack:
                stack[-1][2] += e["dur"]
            stack.append([e, e["ts"] + e["dur"], 0.0])
        out.extend((d[0], d[0]["dur"] - d[2]) for d in stack)
    return out


def _range_totals(events: list[dict]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = {}
    for e in events:
        t = totals.setdefault(e["name"], {"total_ms": 0.0, "count": 0})
        t["total_ms"] += e["dur"] / 1e3
        t["count"] += 1
    return totals
