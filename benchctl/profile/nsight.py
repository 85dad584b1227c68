"""Nsight Systems and Nsight Compute: the commands a profiled worker runs under, and their CSV reports read back."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path
from typing import Any

from benchctl.profile.traces import trace_views

NSYS_REPORTS = ("nvtx_sum", "cuda_gpu_kern_sum", "osrt_sum", "nvtx_pushpop_trace", "cuda_gpu_trace")
NSYS_TRACES = ("nvtx_pushpop_trace", "cuda_gpu_trace")  # one row per range / kernel: views, not tables


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
