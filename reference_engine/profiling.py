"""Named ranges for profilers: torch.profiler always, NVTX (Nsight Systems / Compute) when enabled.

Range names are `engine.step`, `engine.schedule`, `engine.forward`, `engine.sample`, `engine.detokenize` (and the
benchctl worker's `worker.*`). torch's record_function costs about a microsecond when no profiler listens, so it
stays on. NVTX is off unless asked for (`LLMEngine(..., nvtx=True)` or REFERENCE_ENGINE_NVTX=1): off, the `nvtx`
package (PyPI, in the `profiling` extra; ~1 µs per range, works without a GPU) is not even imported.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch.profiler import record_function

NVTX_ENV = "REFERENCE_ENGINE_NVTX"  # "1": every engine in the process emits NVTX ranges
_nvtx: Any = None  # the nvtx module (push_range / pop_range) while enabled


def nvtx_requested(option: bool = False) -> bool:
    """The engine option, or the environment variable (what benchctl's nsys and ncu modes set for the worker)."""
    return option or os.environ.get(NVTX_ENV, "") == "1"


def enable_nvtx(enabled: bool = True) -> None:
    """Start (or stop) emitting NVTX ranges. Without the `nvtx` package: ImportError saying how to get it."""
    global _nvtx
    if not enabled:
        _nvtx = None
        return
    if _nvtx is None:
        try:
            _nvtx = importlib.import_module("nvtx")
        except ImportError:
            raise ImportError(
                "NVTX ranges need the `nvtx` package: pip install nvtx (or benchctl's `profiling` extra)"
            ) from None


def nvtx_enabled() -> bool:
    return _nvtx is not None


@contextmanager
def annotate(name: str) -> Iterator[None]:
    nvtx = _nvtx
    if nvtx is not None:
        nvtx.push_range(name)
    try:
        with record_function(name):
            yield
    finally:
        if nvtx is not None:
            nvtx.pop_range()
