"""Attention and fused-op kernels of the reference engine, and the choice between them.

Four implementations of the same four ops (`reshape_and_cache`, `paged_decode_attention`, `silu_and_mul`,
`rms_norm`), all checked against the plain-torch definitions in `reference`:

- "cuda": CUDA C++ (csrc/), built with torch.utils.cpp_extension on first use; needs CUDA torch and nvcc.
- "cpu": C++ for CPU tensors (csrc/cpu/), built the same way with g++; paged attention read in place.
- "triton": Triton kernels; need an active Triton driver (a GPU), or TRITON_INTERPRET=1 on CPU (verification only).
- "torch": the engine's own torch path (`load_ops("torch")` returns the reference definitions).

Importing this package imports neither triton nor builds any extension.
"""

from __future__ import annotations

import importlib
import shutil
from types import ModuleType

from . import launch, reference

BACKENDS = ("torch", "cpu", "triton", "cuda")
_REQUESTS = ("auto", *BACKENDS)
_cuda_build_error: str | None = None  # the first build failure, remembered so auto does not rebuild every time


def _triton_reason(device_type: str) -> str | None:
    """None when Triton can run kernels on tensors of device_type, else why not (one line)."""
    try:
        import triton
    except ImportError:
        return "the triton package is not installed (pip install triton numpy)"
    if device_type == "cpu":
        from triton import knobs

        if knobs.runtime.interpret:
            return None
        return "Triton has no CPU driver; TRITON_INTERPRET=1 (set before importing triton) runs it interpreted"
    try:
        backend = triton.runtime.driver.active.get_current_target().backend
    except Exception as exc:  # "0 active drivers" and friends
        return f"Triton has no active driver: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if device_type == "cuda" and backend in ("cuda", "hip"):
        return None
    return f"Triton's active driver is {backend!r}, not one for {device_type!r} tensors"


def _cuda_reason(device_type: str) -> str | None:
    """None when the CUDA extension can be built (prerequisites only: nothing is compiled here), else why not."""
    import torch

    if torch.version.cuda is None:
        return "CUDA kernels need a CUDA build of torch and nvcc; this torch is CPU-only"
    if device_type != "cuda":
        return f"CUDA kernels run on cuda tensors, not {device_type!r}"
    if not torch.cuda.is_available():
        return "torch was built with CUDA but no CUDA device is visible"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None and shutil.which("nvcc") is None:
        return "CUDA kernels are compiled on first use and need nvcc (set CUDA_HOME or put nvcc on PATH)"
    if _cuda_build_error is not None:
        return _cuda_build_error
    return None


def _cpu_reason(device_type: str) -> str | None:
    if device_type != "cpu":
        return f"CPU kernels run on cpu tensors, not {device_type!r}"
    from . import cpu_ops

    return cpu_ops.unavailable_reason()


def available_backends(device_type: str) -> dict[str, str | None]:
    """Each backend name -> None if usable on device_type, else the reason it is not (for `benchctl backends`)."""
    return {
        "torch": None,
        "cpu": _cpu_reason(device_type),
        "triton": _triton_reason(device_type),
        "cuda": _cuda_reason(device_type),
    }


def load_ops(name: str) -> ModuleType:
    """The module holding `name`'s four ops; RuntimeError saying why when it cannot run anywhere here."""
    if name == "torch":
        return reference
    if name == "triton":
        reason = _triton_reason("cuda" if _has_cuda_device() else "cpu")
        if reason is not None:
            raise RuntimeError(f"Triton kernels are unavailable: {reason}")
        return importlib.import_module(".triton_ops", __name__)
    if name == "cpu":
        reason = _cpu_reason("cpu")
        if reason is not None:
            raise RuntimeError(reason)
        cpu_ops = importlib.import_module(".cpu_ops", __name__)
        cpu_ops.build()  # raises RuntimeError with the compiler's last line, remembered for next time
        return cpu_ops
    if name == "cuda":
        global _cuda_build_error
        reason = _cuda_reason("cuda")
        if reason is not None:
            raise RuntimeError(reason)
        cuda_ops = importlib.import_module(".cuda_ops", __name__)
        try:
            cuda_ops.build()
        except Exception as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            _cuda_build_error = f"the CUDA extension failed to build: {lines[-1]}"
            raise RuntimeError(_cuda_build_error) from exc
        return cuda_ops
    raise ValueError(f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)}")


def resolve_backend(requested: str, device_type: str) -> str:
    """The backend to use: "auto" prefers cuda (if it builds), then triton (with a real driver), then torch.

    On CPU "auto" is "cpu" when the C++ extension builds, else "torch" (the Triton interpreter is for verification
    only). An explicit choice that cannot run raises ValueError with a one-line reason.
    """
    if requested not in _REQUESTS:
        raise ValueError(f"unknown attention backend {requested!r}; choose one of {', '.join(_REQUESTS)}")
    if requested == "torch":
        return "torch"
    if requested == "auto":
        if device_type == "cpu":
            try:
                load_ops("cpu")
                return "cpu"
            except RuntimeError:
                return "torch"
        if _cuda_reason(device_type) is None:
            try:
                load_ops("cuda")
                return "cuda"
            except RuntimeError:
                pass
        return "triton" if _triton_reason(device_type) is None else "torch"
    reason = available_backends(device_type)[requested]
    if reason is None and requested in ("cuda", "cpu"):
        try:
            load_ops(requested)
        except RuntimeError as exc:
            reason = str(exc)
    if reason is not None:
        raise ValueError(f"attention backend {requested!r} is unavailable on {device_type}: {reason}")
    return requested


def _has_cuda_device() -> bool:
    import torch

    return torch.cuda.is_available()


__all__ = ["BACKENDS", "available_backends", "launch", "load_ops", "reference", "resolve_backend"]
