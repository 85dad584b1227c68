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
