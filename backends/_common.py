"""Helpers shared by backend workers (run inside the worker process; stdlib only at import)."""

from __future__ import annotations

import os
import time

from benchctl.versions import versions  # noqa: F401  (re-exported for the backends)


def torch_threads() -> int:
    """Threads for torch: the cores this process may use (one engine per process owns the machine)."""
    return int(os.environ.get("BENCHCTL_THREADS") or len(os.sched_getaffinity(0)))


def wait_until(ctx, t_s: float) -> None:
    """Sleep until run time t_s (seconds since the run start) without drifting."""
    delay = t_s - ctx.now()
    if delay > 0:
        time.sleep(delay)


def record(request: dict, **fields) -> dict:
    """A record dict in benchctl.records.RequestRecord's layout (kept stdlib-only for the worker)."""
    return {
        "request_id": request["request_id"],
        "prompt_tokens": len(request["prompt_token_ids"]),
        "expected_output_tokens": request["output_len"],
        "arrival_s": request["arrival_s"],
        "conversation_id": request.get("conversation_id"),
        "turn": request.get("turn"),
        **fields,
    }


def convert(value: str):
    """--engine-arg values arrive as text: bool, int, float, else the string."""
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def managed_env() -> dict | None:
    """The benchctl-managed engine environment this worker runs in (None: benchctl's own interpreter)."""
    import json
    import sys
    from pathlib import Path

    from benchctl.engines import MANIFEST

    try:
        manifest = json.loads((Path(sys.prefix) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return {"key": manifest.get("key"), "path": manifest.get("path"), "installed_at": manifest.get("installed_at")}
