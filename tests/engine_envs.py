"""The interpreter of a backend that runs in its own managed environment, for end-to-end engine tests."""

from __future__ import annotations

import os

import pytest

from benchctl.backend import get_backend


def engine_python(name: str) -> str:
    """The interpreter the backend's worker runs under; skip when the engine is absent — except under CI,
    where scripts/test installs it before pytest and its absence is a failure."""
    backend = get_backend(name)
    reason = backend.unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{name} unavailable under CI: {reason} (scripts/test installs it before pytest)")
        pytest.skip(f"{name} unavailable: {reason}")
    return backend.python()


def require_cpu_kernels() -> None:
    """Skip the calling test module where the reference engine's CPU kernels cannot be built (no C++ compiler:
    kernels.cpu_ops.unavailable_reason) — except under CI, where a compiler is part of the machine and its absence
    is a failure."""
    from reference_engine.kernels import cpu_ops

    reason = cpu_ops.unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CPU kernels unavailable under CI: {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
