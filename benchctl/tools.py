"""Managed environments for other benchmark tools (guidellm, aiperf), one pinned virtualenv each.

`benchctl tools install guidellm aiperf` creates `<tools dir>/guidellm-0.8.1-any-py311/` and
`<tools dir>/aiperf-0.13.0-any-py311/` with benchctl.engines' installer (same manifest, lock and reuse rules).
vLLM's `bench serve` is not here: it comes with the vllm engine environment (`benchctl engines install vllm`).

Stdlib only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchctl import engines

TOOLS_DIR_ENV = "BENCHCTL_TOOLS_DIR"
TOOLS = ("guidellm", "aiperf")
# Pins from issue 23: the versions whose result formats benchctl.importers reads.
_PINS = {"guidellm": "0.8.1", "aiperf": "0.13.0"}


def plan(tool: str) -> engines.EnginePlan:
    """The pinned install of `tool`; EngineError (exit 2) for an unknown name."""
    if tool not in _PINS:
        raise engines.EngineError(
            f"unknown tool {tool!r}; known: {', '.join(TOOLS)} "
            "(vLLM's bench comes with `benchctl engines install vllm`)"
        )
    version = _PINS[tool]
    requirements: tuple[str, ...] = (f"{tool}=={version}",)
    if tool == "guidellm":
        # guidellm requires torch (unpinned), which resolves to the CUDA wheel and its nvidia-* libraries: a 6.0 GB
        # venv. Pinned like scripts/test's torch, it takes the local CPU build where one is offered (~1.5 GB).
        requirements += ("torch==2.13.0",)
    # variant "any": both are clients (guidellm uses torch only to load datasets), the same on CPU and GPU hosts
    return engines.EnginePlan(tool, version, "any", tool, requirements)


def tools_dir() -> Path:
    root = os.environ.get(TOOLS_DIR_ENV)
    if root:
        return Path(root).expanduser()
    from benchctl.models import cache_dir

    return cache_dir() / "tools"


def installed(tool: str) -> engines.Installed | None:
    """The completed environment of `tool` (manifest written, interpreter present), if any."""
    path = tools_dir() / plan(tool).key
    try:
        manifest = json.loads((path / engines.MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    env = engines.Installed(path, manifest)
    return env if env.python.exists() else None


def install(
    tool: str, progress: engines.InstallProgress | None = None, force: bool = False
) -> tuple[engines.Installed, bool]:
    """Create (or reuse) the tool's environment. Returns it and whether it was reused."""
    return engines.install_plan(plan(tool), tools_dir(), progress, force=force)


def version(env: engines.Installed) -> str:
    return env.manifest.get("packages", {}).get(env.engine, "?")


def script(env: engines.Installed, name: str) -> Path:
    """A console script of the environment (`guidellm`, `aiperf`)."""
    return env.path / "bin" / name


def list_tools() -> list[dict]:
    """One row per known tool: name, pinned version, installed path (None when absent), install seconds."""
    rows = []
    for tool in TOOLS:
        env = installed(tool)
        rows.append(
            {
                "tool": tool,
                "version": _PINS[tool],
                "path": str(env.path) if env else None,
                "install_s": env.manifest.get("install_s") if env else None,
            }
        )
    return rows
