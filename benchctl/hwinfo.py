"""`benchctl hwinfo`: what this machine can do, measured with torch (in a child process), cached for reports.

Two ceilings a decode step can hit: memory bandwidth (every step reads all weights plus the KV cache)
and fp32 GEMM throughput (2 FLOPs per parameter per token). Both are measured here and cached in
`$BENCHCTL_CACHE_DIR/hwinfo.json`; the report reads the cache and never measures.

A shared or virtual machine's speed drifts (here: the same GEMM at 127 and 229 GFLOP/s on one day), so every
measurement is also appended to `hwinfo-history.jsonl`, and a run is set against a measurement on its CPU taken
near it in time (`measurement_for_run`): `benchctl hwinfo --refresh` just before and after a benchmark gives its
ceiling at the time it ran (the higher of the two: a ceiling is an upper bound).
"""

from __future__ import annotations

import json
import math
import struct
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from benchctl import store
from benchctl.envinfo import hardware, hardware_line, package_versions
from benchctl.metrics.ceiling import (
    best_measurement,
    ceiling_from,
    compute_ceiling_tok_s,  # noqa: F401 - its old home: the arithmetic lives in metrics
    gemm_rate,
    run_device,
)
from benchctl.models import cache_dir
from benchctl.worker.child import ChildFailed, run_child

HWINFO_VERSION = 1
DEFAULT_THREADS = 2
BANDWIDTH_BYTES = 256 * 2**20  # well past any last-level cache, small enough for a shared machine
GEMM_SIZE = 1536  # (n, n) @ (n, n): ~7 GFLOP per product
MEASURE_TIMEOUT_S = 300.0  # a few seconds normally; a measurement that hangs must not hold up a run


def cache_path() -> Path:
    return cache_dir() / "hwinfo.json"


class MeasureFailed(RuntimeError):
    """The measurement could not be taken (no torch in this interpreter, the child died): one line why."""


def measure(threads: int = DEFAULT_THREADS) -> dict[str, Any]:
    """Measure bandwidth and GEMM with torch in a child process (benchctl.worker.hwprobe): the harness never
    imports torch. The sizes are read here, at call time, and sent to the child."""
    result = {
        "hwinfo_version": HWINFO_VERSION,
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "threads": threads,
        "hardware": hardware(),
        "packages": package_versions(("torch",)),
    }
    try:
        probed = run_child(
            "benchctl.worker.hwprobe",
            {"threads": threads, "bandwidth_bytes": BANDWIDTH_BYTES, "gemm_size": GEMM_SIZE},
            timeout_s=MEASURE_TIMEOUT_S,
        )
    except ChildFailed as e:
        raise MeasureFailed(f"hwinfo: measuring failed: {e}") from None
    result.update(
        {
            key: probed[key]
            for key in (
                "read_bandwidth_gb_s",
                "copy_bandwidth_gb_s",
                "bandwidth_bytes",
                "gemm_fp32_flop_s",
                "gemm_size",
                "measure_s",
            )
        }
    )
    if probed.get("cuda"):  # HBM copy bandwidth and bf16 / fp16 matmul of the GPU (hwprobe.measure_cuda)
        result["cuda"] = probed["cuda"]
    return result


def load_cached(path: Path | None = None) -> dict[str, Any] | None:
    """The cached measurement, or None when there is none (or it is unreadable / from an older format)."""
    path = path or cache_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("hwinfo_version") == HWINFO_VERSION else None


def get(refresh: bool = False, threads: int = DEFAULT_THREADS) -> tuple[dict[str, Any], bool]:
    """(result, measured_now): the cache unless `refresh` or there is none; a new measurement is cached."""
    cached = None if refresh else load_cached()
    if cached is not None:
        return cached, False
    result = measure(threads)
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json_atomic(path, result)
    with open(history_path(), "a") as f:
        f.write(json.dumps(result) + "\n")
    return result, True


def history_path() -> Path:
    return cache_dir() / "hwinfo-history.jsonl"


def load_history() -> list[dict[str, Any]]:
    """Every measurement this machine made (unreadable lines and older formats skipped), plus the cached one."""
    found: dict[str, dict[str, Any]] = {}
    try:
        lines = history_path().read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("hwinfo_version") == HWINFO_VERSION and entry.get("measured_at"):
            found[entry["measured_at"]] = entry
    cached = load_cached()
    if cached is not None and cached.get("measured_at"):
        found.setdefault(cached["measured_at"], cached)
    return [found[k] for k in sorted(found)]


def _parse_time(text: str | None) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


NEAR_RUN_MIN = 5  # measurements this close to a run's start or end count as taken "at" the run


def _minutes_from(
    history: list[dict[str, Any]] | None, cpu: str | None, when: str | None, until: str | None
) -> list[tuple[dict[str, Any], float]]:
    """(measurement, minutes outside the span when..until: 0 inside it) for each measurement on `cpu`."""
    start = _parse_time(when)
    if start is None:
        return []
    end = _parse_time(until) or start
    found = []
    for entry in load_history() if history is None else history:
        stamp = _parse_time(entry.get("measured_at"))
        if stamp is not None and entry.get("hardware", {}).get("cpu") == cpu:
            found.append((entry, max((start - stamp).total_seconds(), (stamp - end).total_seconds(), 0.0) / 60))
    return found


def nearest_measurement(
    when: str | None,
    cpu: str | None,
    history: list[dict[str, Any]] | None = None,
    until: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> tuple[dict[str, Any], float] | None:
    """(measurement, minutes away) on `cpu` for the time `when` (or the span when..until), or None.

    Among the measurements within NEAR_RUN_MIN minutes of the span, the fastest (a ceiling is an upper bound: a
    benchmark bracketed by two measurements is set against the higher); with none that close, the nearest.
    Minutes away are counted from the span (0 inside it). Only measurements with a rate for `device` count
    (metrics.ceiling.gemm_rate: a CUDA run needs the GPU's matmul).
    """

    def rate(f: tuple[dict[str, Any], float]) -> float:
        return gemm_rate(f[0], device, dtype)[0] or 0.0

    found = [f for f in _minutes_from(history, cpu, when, until) if rate(f)]
    if not found:
        return None
    near = [f for f in found if f[1] <= NEAR_RUN_MIN]
    if near:
        return max(near, key=rate)
    return min(found, key=lambda f: f[1])


def run_parameters(run: dict[str, Any]) -> int | None:
    """The run's model size in parameters (safetensors headers of config.model.hf_dir), None if not on disk."""
    model = (run.get("config") or {}).get("model") or {}
    if model.get("num_parameters"):  # a dummy model: counted from its config, no weights on disk
        return int(model["num_parameters"])
    hf_dir = model.get("hf_dir")
    return (parameter_count(Path(hf_dir)) or None) if hf_dir else None


RUN_KEYS = (
    "hwinfo_version",
    "measured_at",
    "threads",
    "read_bandwidth_gb_s",
    "copy_bandwidth_gb_s",
    "gemm_fp32_flop_s",
    "gemm_size",
)


def near_run(run: dict[str, Any], history: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The measurements on the run's CPU within NEAR_RUN_MIN of its span, compact, for run.json's environment:
    the run carries its own ceilings wherever its folder goes."""
    cpu = ((run.get("environment") or {}).get("hardware") or {}).get("cpu")
    return [
        {**{k: entry[k] for k in RUN_KEYS if k in entry}, "hardware": {"cpu": cpu}}
        for entry, minutes in _minutes_from(history, cpu, run.get("created_at"), run.get("finished_at"))
        if minutes <= NEAR_RUN_MIN
    ]


def measure_in_subprocess() -> tuple[dict[str, Any] | None, str | None]:
    """A fresh measurement (taken in a child process, as every one is), cached and added to the history:
    (result, None), or (None, why) when it cannot be taken. Never raises: a run goes on without it."""
    try:
        return get(refresh=True)[0], None
    except (MeasureFailed, OSError) as e:  # OSError: the cache could not be written
        return None, str(e)


def _with_runs_own(run: dict[str, Any], history: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The measurements a run carries (environment.hwinfo) plus this machine's history, once each."""
    found = {e.get("measured_at"): e for e in ((run.get("environment") or {}).get("hwinfo") or [])}
    for entry in load_history() if history is None else history:
        found.setdefault(entry.get("measured_at"), entry)
    return list(found.values())


def measurement_for_run(
    run: dict[str, Any], history: list[dict[str, Any]] | None = None
) -> tuple[dict[str, Any], float] | None:
    """(measurement, minutes away) for the run's CPU and span (created_at..finished_at), from the measurements the
    run carries and this machine's history: see nearest_measurement."""
    cpu = ((run.get("environment") or {}).get("hardware") or {}).get("cpu")
    device, dtype = run_device(run)
    return nearest_measurement(
        run.get("created_at"),
        cpu,
        _with_runs_own(run, history),
        until=run.get("finished_at"),
        device=device,
        dtype=dtype,
    )


def ceiling_for_run(run: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The compute ceiling when the run ran (measurement_for_run): see ceiling_from, with the CPU's best measurement
    (best_measurement) next to it. None when the model is not on disk or this CPU has no measurement."""
    params = run_parameters(run)
    if not params:
        return None
    measurements = _with_runs_own(run, history)
    device, dtype = run_device(run)  # a CUDA run is set against the GPU's matmul rate, not the CPU's
    return ceiling_from(
        measurement_for_run(run, measurements),
        params,
        (run.get("summary") or {}).get("total_tok_s"),
        best=best_measurement(((run.get("environment") or {}).get("hardware") or {}).get("cpu"), measurements),
        device=device,
        dtype=dtype,
    )


# --- model size: parameters and weight bytes from the safetensors files -----------------------------


def safetensors_files(hf_dir: Path) -> list[Path]:
    return sorted(Path(hf_dir).glob("*.safetensors"))


def weight_bytes(hf_dir: Path) -> int:
    """Bytes of the model's weights: the safetensors files' sizes (headers are a few KB)."""
    return sum(p.stat().st_size for p in safetensors_files(hf_dir))


def parameter_count(hf_dir: Path) -> int:
    """Number of parameters, from the tensor shapes in each safetensors header (no tensor is loaded)."""
    total = 0
    for path in safetensors_files(hf_dir):
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
        for name, info in header.items():
            if name != "__metadata__":
                total += math.prod(info["shape"])
    return total


# --- the command --------------------------------------------------------------------------------------


def table(result: dict[str, Any], measured_now: bool) -> Table:
    hw = result.get("hardware", {})
    when = "measured now" if measured_now else f"cached from {result.get('measured_at')} (--refresh re-measures)"
    t = Table(title="benchctl hwinfo", caption=f"{hardware_line(hw)}\n{when} · {cache_path()}", caption_justify="left")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    gpus = ", ".join(f"{g.get('name')} ({g.get('memory')})" for g in hw.get("gpus", [])) or "none"
    rows = [
        ("CPU", str(hw.get("cpu"))),
        (
            "cores (usable / logical / physical)",
            f"{hw.get('usable_cores')} / {hw.get('logical_cores')} / {hw.get('physical_cores')}",
        ),
        ("memory", f"{hw.get('memory_bytes', 0) / 2**30:.1f} GiB"),
        (
            "vector extensions",
            " ".join(f for f in hw.get("cpu_flags", []) if f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "fma"))
            or "—",
        ),
        ("GPUs", gpus),
        ("torch", result.get("packages", {}).get("torch", "?")),
        ("threads used", str(result.get("threads"))),
        ("memory read bandwidth (sum)", f"{result['read_bandwidth_gb_s']:.1f} GB/s"),
        ("memory copy bandwidth (read + write)", f"{result['copy_bandwidth_gb_s']:.1f} GB/s"),
        (f"fp32 GEMM {result['gemm_size']}x{result['gemm_size']}", f"{result['gemm_fp32_flop_s'] / 1e9:.1f} GFLOP/s"),
    ]
    for label, value in rows:
        t.add_row(label, value)
    return t


def hwinfo_command(
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    refresh: Annotated[bool, typer.Option(help="Measure again instead of showing the cached result.")] = False,
) -> None:
    """Measure memory bandwidth and fp32 GEMM FLOP/s with torch (a few seconds; cached for reports)."""
    try:
        result, measured_now = get(refresh=refresh)
    except MeasureFailed as e:
        typer.echo(f"benchctl: error: {e}", err=True)
        raise typer.Exit(1) from None
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        Console().print(table(result, measured_now))
