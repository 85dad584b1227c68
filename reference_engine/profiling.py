"""Named ranges for profilers: NVTX (when the `nvtx` package is installed) and torch.profiler.

Both cost about a microsecond when no profiler is listening, so the engine keeps them on. Range names are
`engine.step`, `engine.schedule`, `engine.forward`, `engine.sample`, `engine.detokenize`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch.profiler import record_function

try:
    import nvtx as _nvtx
except ImportError:  # the PyPI `nvtx` package is optional
    _nvtx = None


@contextmanager
def annotate(name: str) -> Iterator[None]:
    if _nvtx is not None:
        _nvtx.push_range(name)
    try:
        with record_function(name):
            yield
    finally:
        if _nvtx is not None:
            _nvtx.pop_range()
