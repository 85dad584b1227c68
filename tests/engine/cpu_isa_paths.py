"""The CPU kernels' ISA paths this machine runs, as a fixture: every kernel test runs once per path (each path its
own build), so the AVX2 and scalar paths are tested on an AVX-512 machine too. Paths the CPU cannot run are only
compiled (test_kernels_cpu.py)."""

from __future__ import annotations

import pytest

from reference_engine.kernels import cpu_ops as _cpu_ops

RUNNABLE = _cpu_ops.runnable_isas()
NOT_RUNNABLE = [isa for isa in _cpu_ops.ISAS if isa not in RUNNABLE]


@pytest.fixture(scope="module", params=RUNNABLE)
def isa_path(request):
    """The ISA path the module's kernel calls run (cpu_ops.select), built; the environment's choice again after."""
    _cpu_ops.select(request.param)
    try:
        _cpu_ops.build()  # about a minute per path the first time, then cached
        yield request.param
    finally:
        _cpu_ops.select(None)
