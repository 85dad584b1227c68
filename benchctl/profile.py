"""Profiles of a run: torch.profiler traces, Nsight Systems and Nsight Compute, and what they say about the engine.

`benchctl run --profile torch` wraps the worker's run in torch.profiler (inside the worker process, so
the harness never imports torch) and saves a Chrome trace in the run folder. `--profile nsys` re-launches
the worker under `nsys profile` with NVTX tracing and then reads `nsys stats` summaries; `--profile ncu` under
`ncu --csv` on the paged-attention kernel. All feed `profile_summary.json`: top operators, how much of the run the
engine's named ranges cover, the idle time between engine steps, each step's split into its ranges, a timeline of
ranges and operators, and (ncu) each kernel's achieved DRAM bandwidth.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import subprocess
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any

from benchctl.backend import BackendError
from benchctl.envinfo import cuda_present

PROFILE_MODES = ("none", "torch", "nsys", "ncu")
STEP_RANGE = "engine.step"  # the range the reference engine opens around each step
STEP_PARTS = ("engine.schedule", "engine.forward", "engine.sample", "engine.detokenize")  # its children
NVTX_ENV = "REFERENCE_ENGINE_NVTX"  # reference_engine.profiling's switch (the harness does not import the engine)
TIMELINE_MAX_EVENTS = 1500  # per lane: the longest events (a browser draws a few thousand bars at ease)
# Events that make the host wait for the device: scalar reads (.item()) and explicit synchronizations.
SYNC_EVENTS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
NSYS_REPORTS = ("nvtx_sum", "cuda_gpu_kern_sum", "osrt_sum", "nvtx_pushpop_trace", "cuda_gpu_trace")
NSYS_TRACES = ("nvtx_pushpop_trace", "cuda_gpu_trace")  # one row per range / kernel: views, not tables


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


def nsys_prefix(run_dir: Path) -> list[str]:
    """Command prefix that runs the worker under Nsight Systems with NVTX, CUDA and OS-runtime tracing."""
    return [
        "nsys",
        "profile",
        "--trace=nvtx,cuda,osrt",
        "--sample=none",
        "--force-overwrite=true",
        f"--output={run_dir / 'nsys'}",
    ]


def nsys_stats_command(report: Path, out_prefix: Path) -> list[str]:
    return [
        "nsys",
        "stats",
        "--force-export=true",
        "--format=csv",
        "--output",
        str(out_prefix),
        *(f"--report={r}" for r in NSYS_REPORTS),
        str(report),
    ]


def parse_nsys_csv(text: str) -> list[dict[str, Any]]:
    """Rows of one `nsys stats --format=csv` report, numbers converted (nsys prints a banner first)."""
    lines = text.splitlines()
    # the header is the first line naming the time column (summaries: Time (%), traces: Start (ns)); anything before
    # it is nsys's banner
    start = next((i for i, line in enumerate(lines) if line.lstrip('"').startswith(("Time", "Start"))), None)
    if start is None:
        raise ValueError("not an nsys stats CSV report (no 'Time' or 'Start' header)")
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
    """Run `nsys stats` on the run's report; keep the kernel and NVTX summaries (first 50 rows), the kernels as top
    operators, and from the range and kernel traces the same views as a torch trace's (trace_views)."""
    report = run_dir / "nsys.nsys-rep"
    if not report.is_file():
        return {"error": "nsys produced no report"}
    subprocess.run(nsys_stats_command(report, run_dir / "nsys"), check=True, capture_output=True, timeout=600)
    summary: dict[str, Any] = {}
    traces: dict[str, list[dict[str, Any]]] = {}
    for name in NSYS_REPORTS:
        found = sorted(run_dir.glob(f"nsys_{name}*.csv"))
        if found:
            rows = parse_nsys_csv(found[0].read_text())
            if name in NSYS_TRACES:
                traces[name] = rows
            else:
                summary[name] = rows[:50]
    kernels = summary.get("cuda_gpu_kern_sum") or []
    if kernels:
        summary["top_operators"] = [
            {
                "name": k["Name"],
                "self_ms": k["Total Time (ns)"] / 1e6,
                "calls": k["Instances"],
                "self_share": k["Time (%)"] / 100,
            }
            for k in kernels
        ]
    events = nsys_trace_events(traces.get("nvtx_pushpop_trace", []), traces.get("cuda_gpu_trace", []))
    if events:
        summary.update(trace_views(events))
    return summary


def nsys_trace_events(ranges: list[dict[str, Any]], kernels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """nvtx_pushpop_trace and cuda_gpu_trace rows as trace events (µs, like torch's): ranges on their thread as
    user annotations (nsys names them `:name` in the default domain), kernels on one device lane."""
    events = [
        {
            "name": str(r["Name"]).lstrip(":"),
            "cat": "user_annotation",
            "ts": r["Start (ns)"] / 1e3,
            "dur": (r["End (ns)"] - r["Start (ns)"]) / 1e3,
            "tid": r.get("TID"),
        }
        for r in ranges
    ]
    events += [
        {
            "name": str(k["Name"]),
            "cat": "kernel",
            "ts": k["Start (ns)"] / 1e3,
            "dur": k["Duration (ns)"] / 1e3,
            "tid": "device",
        }
        for k in kernels
    ]
    return events


# --- Nsight Compute: a few kernels' hardware counters -----------------------------------------------------------

NCU_KERNEL_REGEX = "paged_attention"  # csrc/paged_attention.cu: the decode kernel, and v2's reduction
NCU_LAUNCH_SKIP = 50  # past the first steps' launches: caches warm, the allocator settled
NCU_LAUNCH_COUNT = 20  # ncu replays each profiled launch several times; 20 keep a run to seconds more
NCU_METRICS = (
    "gpu__time_duration.sum",
    "dram__bytes_read.sum",
    "dram__bytes_write.sum",
    "dram__bytes.sum.per_second",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed",
)
# ncu's SI prefixes (--print-units base asks for none; a CSV written without it still reads)
_UNIT_PREFIXES = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "n": 1e-9, "u": 1e-6, "m": 1e-3}
_BASE_UNITS = ("byte/second", "byte/s", "byte", "second", "cycle", "%")


def ncu_prefix(run_dir: Path, kernel_regex: str = NCU_KERNEL_REGEX) -> list[str]:
    """Command prefix that runs the worker under Nsight Compute: NCU_METRICS of NCU_LAUNCH_COUNT launches of the
    kernels matching kernel_regex, as CSV in run_dir/ncu.csv (--log-file keeps ncu's lines off the worker's pipe)."""
    return [
        "ncu",
        "--csv",
        "--print-units",
        "base",
        "--log-file",
        str(run_dir / "ncu.csv"),
        "--target-processes",
        "all",
        "--nvtx",
        "--kernel-name",
        f"regex:{kernel_regex}",
        "--launch-skip",
        str(NCU_LAUNCH_SKIP),
        "--launch-count",
        str(NCU_LAUNCH_COUNT),
        "--metrics",
        ",".join(NCU_METRICS),
    ]


def to_base_unit(value: float, unit: str) -> tuple[float, str]:
    """(value, unit) in ncu's base unit: 1.5 "Tbyte/second" -> (1.5e12, "byte/second"), 3 "usecond" -> 3e-6 s."""
    unit = unit.strip()
    for base in _BASE_UNITS:
        if unit == base:
            return value, base
        if unit.endswith(base) and unit[: -len(base)] in _UNIT_PREFIXES:
            return value * _UNIT_PREFIXES[unit[: -len(base)]], base
    return value, unit


def parse_ncu_csv(text: str) -> list[dict[str, Any]]:
    """One row per profiled launch of `ncu --csv` (the details page, one line per metric): {id, kernel, grid, block,
    device, metrics: {name: value in its base unit}, units: {name: base unit}}. Lines before the header are ncu's
    own (==PROF== ...)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        raise ValueError('not an ncu --csv report (no "ID" header)')
    launches: dict[Any, dict[str, Any]] = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        if not row.get("Metric Name"):
            continue
        launch = launches.setdefault(
            row["ID"],
            {
                "id": _number(row["ID"]),
                "kernel": row["Kernel Name"],
                "grid": row.get("Grid Size"),
                "block": row.get("Block Size"),
                "device": _number(row.get("Device")),
                "metrics": {},
                "units": {},
            },
        )
        value = _number(row.get("Metric Value"))
        if isinstance(value, (int, float)):
            value, unit = to_base_unit(float(value), row.get("Metric Unit") or "")
            launch["metrics"][row["Metric Name"]], launch["units"][row["Metric Name"]] = value, unit
    return list(launches.values())


def ncu_kernels(launches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kernel name (slowest total first): launches, mean duration (µs), mean DRAM bytes per launch, achieved DRAM
    bandwidth (GB/s: ncu's dram__bytes.sum.per_second, else bytes / duration) and ncu's share of the DRAM peak."""
    by_kernel: dict[str, list[dict[str, float]]] = {}
    for launch in launches:
        by_kernel.setdefault(launch["kernel"], []).append(launch["metrics"])

    def mean(rows: list[dict[str, float]], key: str) -> float | None:
        found = [r[key] for r in rows if r.get(key) is not None]
        return sum(found) / len(found) if found else None

    table = []
    for kernel, rows in by_kernel.items():
        duration_s = mean(rows, "gpu__time_duration.sum")
        moved = [
            r["dram__bytes_read.sum"] + r.get("dram__bytes_write.sum", 0.0) for r in rows if "dram__bytes_read.sum" in r
        ]
        dram_bytes = sum(moved) / len(moved) if moved else None
        bandwidth = mean(rows, "dram__bytes.sum.per_second")
        if bandwidth is None and dram_bytes is not None and duration_s:
            bandwidth = dram_bytes / duration_s
        pct = mean(rows, "dram__throughput.avg.pct_of_peak_sustained_elapsed")
        sm_pct = mean(rows, "sm__throughput.avg.pct_of_peak_sustained_elapsed")
        table.append(
            {
                "kernel": kernel,
                "launches": len(rows),
                "mean_duration_us": duration_s * 1e6 if duration_s is not None else None,
                "mean_dram_bytes": dram_bytes,
                "dram_bandwidth_gb_s": bandwidth / 1e9 if bandwidth is not None else None,
                "dram_peak_share": pct / 100 if pct is not None else None,
                "sm_peak_share": sm_pct / 100 if sm_pct is not None else None,
            }
        )
    return sorted(table, key=lambda k: -(k["mean_duration_us"] or 0.0) * k["launches"])


def summarize_ncu(run_dir: Path) -> dict[str, Any]:
    """The kernel table of the run's ncu.csv (ncu_kernels), and how many launches it holds."""
    path = run_dir / "ncu.csv"
    if not path.is_file():
        return {"error": "ncu wrote no ncu.csv (no kernel matched, or ncu failed: see worker.log)"}
    launches = parse_ncu_csv(path.read_text())
    return {"ncu_launches": len(launches), "ncu_kernels": ncu_kernels(launches)}


# --- torch.profiler traces ------------------------------------------------------------------------------------


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
        named = [
            (max(e["ts"], window[0]), min(e["ts"] + e["dur"], window[1]))
            for e in annotations
            if e["ts"] < window[1] and e["ts"] + e["dur"] > window[0]
        ]
        step_time = _union_us(steps)
        result.update(
            {
                "window_s": span / 1e6,
                "range_coverage": _union_us(named) / span if span > 0 else 1.0,
                "idle_between_steps_fraction": 1 - step_time / span if span > 0 else 0.0,
                "ranges": _range_totals([e for e in annotations if e.get("name", "").startswith("engine.")]),
                # .item()-style reads and device synchronizations per step (on CPU they cost little, on a GPU
                # each one stalls the stream; a count that grows with the batch means per-sequence reads)
                "host_syncs_per_step": sum(1 for e in events if e.get("name") in SYNC_EVENTS) / len(steps),
            }
        )
    ops: dict[str, list[float]] = {}
    for e, self_us in _self_times([e for e in events if is_operator(e)]):
        ops.setdefault(e["name"], []).append(self_us)
    table = sorted(((name, sum(d), len(d)) for name, d in ops.items()), key=lambda t: -t[1])
    total = sum(t[1] for t in table) or 1.0
    result["top_operators"] = [
        {"name": n, "self_ms": t / 1e3, "calls": c, "self_share": t / total} for n, t, c in table[:top]
    ]
    if events:
        result.update(trace_views(events))
    return result


DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


def trace_views(events: list[dict]) -> dict[str, Any]:
    """What the report draws of a trace (torch's, or nsys's as nsys_trace_events): `step_split`, each engine step's
    milliseconds in its child ranges (STEP_PARTS; other = the rest of the step), and `timeline`, lanes of events
    (start and duration in ms from the first step's start, the longest TIMELINE_MAX_EVENTS of each lane)."""
    annotations = [e for e in events if e.get("cat") == "user_annotation"]
    steps = sorted((e for e in annotations if e.get("name") == STEP_RANGE), key=lambda e: e["ts"])
    origin = steps[0]["ts"] if steps else min(e["ts"] for e in events)
    host_ops = _outermost([e for e in events if is_operator(e) and e.get("cat") not in DEVICE_CATS])
    lanes = {
        "engine steps": steps,
        "engine phases": [e for e in annotations if e.get("name") in STEP_PARTS],
        # worker.run spans the whole run: its admit / emit ranges are what the lane shows
        "worker": [
            e for e in annotations if str(e.get("name", "")).startswith("worker.") and e.get("name") != "worker.run"
        ],
        "host ops (outermost)": host_ops,
        "device kernels": [e for e in events if e.get("cat") in DEVICE_CATS],
    }
    timeline = []
    for lane, found in lanes.items():
        shown = sorted(sorted(found, key=lambda e: -e["dur"])[:TIMELINE_MAX_EVENTS], key=lambda e: e["ts"])
        if shown:
            timeline.append(
                {
                    "lane": lane,
                    "of": len(found),
                    "name": [str(e["name"]) for e in shown],
                    "start_ms": [round((e["ts"] - origin) / 1e3, 4) for e in shown],
                    "dur_ms": [round(e["dur"] / 1e3, 4) for e in shown],
                }
            )
    views: dict[str, Any] = {"timeline": timeline}
    if steps:
        views["step_split"] = _step_split(steps, [e for e in annotations if e.get("name") in STEP_PARTS], origin)
    return views


def _outermost(ops: list[dict]) -> list[dict]:
    """The operators not nested in another one on the same thread (what the host was doing, once)."""
    out: list[dict] = []
    end_of: dict[object, float] = {}  # thread -> end of its current outermost operator
    for e in sorted(ops, key=lambda e: (str(e.get("tid")), e["ts"], -e["dur"])):
        if e["ts"] >= end_of.get(e.get("tid"), float("-inf")):
            out.append(e)
            end_of[e.get("tid")] = e["ts"] + e["dur"]
    return out


def _step_split(steps: list[dict], children: list[dict], origin: float) -> dict[str, Any]:
    children = sorted(children, key=lambda e: e["ts"])
    starts = [c["ts"] for c in children]
    parts: dict[str, list[float]] = {name.removeprefix("engine."): [] for name in STEP_PARTS}
    parts["other"] = []
    for step in steps:
        end = step["ts"] + step["dur"]
        inside = dict.fromkeys(STEP_PARTS, 0.0)
        for c in children[bisect_left(starts, step["ts"]) : bisect_right(starts, end)]:
            if c.get("tid") == step.get("tid") and c["ts"] + c["dur"] <= end + 1e-3:
                inside[c["name"]] += c["dur"]
        for name, us in inside.items():
            parts[name.removeprefix("engine.")].append(round(us / 1e3, 4))
        parts["other"].append(round(max(step["dur"] - sum(inside.values()), 0.0) / 1e3, 4))
    return {"start_ms": [round((s["ts"] - origin) / 1e3, 4) for s in steps], "parts": parts}


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
