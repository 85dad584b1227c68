"""The CPU C++ kernels of csrc/cpu/, built on first use with torch.utils.cpp_extension.load (g++, ninja) and cached.

`packed_linear` is the projection GEMM of every step (weights packed once in column panels, one stream each);
`block_packed_linear` is the same GEMM over a GGUF's Q4_1/Q8_0 blocks, expanded in the kernel to the float32 weights;
`paged_decode_attention` reads K and V in place through the block table (no gathered copy, no padding);
`rms_norm` and `silu_and_mul` are one pass each over the activations; `reshape_and_cache` copies each token's K/V
row straight from the qkv projection's output (no contiguous copy, no boolean mask); `rotary` applies RoPE to the
q and k heads of that output in place. Everything is checked against reference.py in tests/engine/test_kernels_cpu.py.

One source, three ISA paths (csrc/cpu/vec.h): "avx512", "avx2" (AVX2 + FMA + F16C) and "scalar" (the plain loops).
REFERENCE_ENGINE_CPU_ISA picks one (default "auto": the fastest this CPU runs); each is compiled for this CPU
(-march=native) narrowed to its path, in a build directory named after the path and a fingerprint of the CPU's flags
and the compiler flags, so no binary is handed to a machine or a path it was not built for. Importing compiles nothing.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
import threading
from types import ModuleType

import torch
from torch.autograd import _profiler_enabled
from torch.profiler import record_function

from . import launch

NAME = "cpu"
SOURCE = launch.CSRC_DIR / "cpu" / "cpu_ops.cpp"
ISA_ENV = "REFERENCE_ENGINE_CPU_ISA"
ISAS = ("avx512", "avx2", "scalar")  # fastest first
# -march=native narrowed to each path; the -m flags that add an ISA let a CPU without it still compile that path
# (compile_only). 512-bit vectors where used (GCC otherwise keeps to 256 bits on AVX-512 CPUs). -mno-avx leaves SSE:
# the scalar path's plain loops as the compiler vectorizes them, no intrinsics.
ISA_FLAGS = {
    "avx512": ("-march=native", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mprefer-vector-width=512"),
    "avx2": ("-march=native", "-mno-avx512f", "-mavx2", "-mfma", "-mf16c"),
    "scalar": ("-march=native", "-mno-avx"),
}
# /proc/cpuinfo flags a path's instructions need to run
ISA_CPU_FLAGS = {
    "avx512": ("avx512f", "avx512bw", "avx512dq", "avx512vl"),
    "avx2": ("avx2", "fma", "f16c"),
    "scalar": (),
}
# -fopenmp: at::parallel_for's threads and the simd loops. GCC contracts a*b + c into FMAs where the code allows it:
# the attention gains from it, and elementwise results may differ from torch's by an ulp.
CFLAGS = ("-O3", "-fopenmp")

_builds: dict[str, ModuleType] = {}  # by ISA path
_extension: ModuleType | None = None  # the build the kernels below run (the selected path's)
_build_error: str | None = None
_selected: str | None = None  # select(); None: REFERENCE_ENGINE_CPU_ISA decides
_lock = threading.Lock()


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return "".join(line for line in f if line.startswith(("flags", "model name")))
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    """This CPU's instruction-set flags as /proc/cpuinfo spells them (empty where there is no /proc/cpuinfo)."""
    line = next((ln for ln in _cpuinfo().splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def runnable_isas() -> list[str]:
    """The ISA paths this CPU can run, fastest first ("scalar" always)."""
    flags = cpu_flags()
    return [isa for isa in ISAS if set(ISA_CPU_FLAGS[isa]) <= flags]


def resolve_isa(requested: str | None = None) -> str:
    """The ISA path for `requested` (None: select()'s, else REFERENCE_ENGINE_CPU_ISA, else "auto"). ValueError in one
    line for a name that is no path, or a path this CPU cannot run: an explicit choice is never silently replaced."""
    explicit = requested or _selected
    requested = explicit or os.environ.get(ISA_ENV) or "auto"
    if requested == "auto":
        return runnable_isas()[0]
    what = f"ISA path {requested!r}" if explicit else f"{ISA_ENV}={requested!r}"  # where the bad name came from
    if requested not in ISAS:
        raise ValueError(f"{what}: choose one of auto, {', '.join(ISAS)}")
    missing = sorted(set(ISA_CPU_FLAGS[requested]) - cpu_flags())
    if missing:
        raise ValueError(f"{what}: this CPU lacks {', '.join(missing)} (it runs {', '.join(runnable_isas())})")
    return requested


def compile_flags(isa: str) -> list[str]:
    return [*CFLAGS, *ISA_FLAGS[isa]]


def cpu_fingerprint(isa: str) -> str:
    """A short hash of the CPU model, its instruction-set flags and the path's compiler flags (what the binary is)."""
    text = platform.machine() + _cpuinfo() + " ".join(compile_flags(isa))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def build_name(isa: str) -> str:
    return f"benchctl_cpu_ops_{isa}_{cpu_fingerprint(isa)}"


def unavailable_reason() -> str | None:
    """None when the extension can be built here (or already is), else why not, in one line."""
    if _build_error is not None:
        return _build_error
    if _extension is None and not _builds and shutil.which("c++") is None and shutil.which("g++") is None:
        return "CPU kernels are compiled on first use and need a C++ compiler (g++)"
    return None


def build(verbose: bool = False, isa: str | None = None) -> ModuleType:
    """Compile (or load from torch's extension cache, keyed on the source) and return the extension module of ISA
    path `isa` (None: the selected one, which the kernels below then run)."""
    global _extension, _build_error
    with _lock:
        path = resolve_isa(isa)
        if path not in _builds:
            from torch.utils.cpp_extension import load

            try:
                _builds[path] = load(
                    name=build_name(path),
                    sources=[str(SOURCE)],
                    extra_cflags=compile_flags(path),
                    extra_ldflags=["-fopenmp"],
                    verbose=verbose,
                )
            except Exception as exc:
                lines = str(exc).strip().splitlines() or [type(exc).__name__]
                _build_error = f"the CPU extension failed to build: {lines[-1]}"
                raise RuntimeError(_build_error) from exc
        if isa is None:
            _extension = _builds[path]
        return _builds[path]


def select(isa: str | None) -> None:
    """Run the kernels below on ISA path `isa` from now on (None: back to REFERENCE_ENGINE_CPU_ISA's choice)."""
    global _extension, _selected
    if isa is not None:
        resolve_isa(isa)
    with _lock:
        _selected, _extension = isa, None


def isa() -> str:
    """The ISA path the kernels below run (building them if need be), as the binary reports it."""
    return (_extension or build()).isa()


def built_isa() -> str | None:
    """The ISA path of the kernels this process built and ran, or None where it built none (no import, no build)."""
    return _extension.isa() if _extension is not None else None


def info() -> dict | None:
    """What an engine records about its CPU kernels: the ISA path they were built for, what was asked for (select()
    or REFERENCE_ENGINE_CPU_ISA; "auto" when nothing) and the paths this CPU runs. None where none were built."""
    if _extension is None:
        return None
    return {
        "isa": _extension.isa(),
        "requested": _selected or os.environ.get(ISA_ENV) or "auto",
        "runnable": runnable_isas(),
    }


def compile_only(isa: str) -> None:
    """Compile ISA path `isa` to an object file and discard it, loading nothing: for a path this CPU cannot run
    (its instructions would fault). RuntimeError with the compiler's last line when it does not compile."""
    from torch.utils.cpp_extension import include_paths

    includes = [f"-I{p}" for p in [*include_paths(), sysconfig.get_paths()["include"]]]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            os.environ.get("CXX", "c++"),
            "-std=c++20",
            "-fPIC",
            *compile_flags(isa),
            *includes,
            "-DTORCH_EXTENSION_NAME=cpu_ops_compile_check",
            "-DTORCH_API_INCLUDE_EXTENSION_H",
            "-c",
            str(SOURCE),
            "-o",
            os.path.join(tmp, "cpu_ops.o"),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [ln for ln in done.stderr.splitlines() if "error" in ln] or done.stderr.splitlines() or ["?"]
        raise RuntimeError(f"the {isa} path does not compile: {errors[0]}")


def _run(name: str, *args: object) -> object:
    """The extension's `name`(*args). Under a profiler it runs inside a `cpu_ops::<name>` range: these kernels are
    called outside torch's dispatcher, so without it the profile would not see the engine's own GEMMs and attention
    (benchctl's profile summary counts these ranges as operators)."""
    fn = getattr(_extension or build(), name)
    if _profiler_enabled():
        with record_function(f"cpu_ops::{name}"):
            return fn(*args)
    return fn(*args)


def paged_decode_attention(
    query: torch.Tensor,  # (S, H, D)
    k_cache: torch.Tensor,  # (N, B, Hkv, D), contiguous
    v_cache: torch.Tensor,  # (N, B, Hkv, D), contiguous
    block_tables: torch.Tensor,  # (S, M) int32, padded with -1 (never read past context_lens)
    context_lens: torch.Tensor,  # (S,) int32
    scale: float,
    **_: object,  # version / max_context_len of the GPU kernels: one version here
) -> torch.Tensor:  # (S, H, D) in query's dtype
    return _run("paged_attention", query, k_cache, v_cache, block_tables.contiguous(), context_lens, float(scale))


# The step's prefill tokens go through paged_decode_attention as well, each a query over its own context: at
# SmolLM2-135M's shapes it is 3-4x faster than SDPA's causal CPU kernel (docs/performance.md).
prefill_with_decode_kernel = True


def reshape_and_cache(
    key: torch.Tensor,  # (T, Hkv, D), each token's heads contiguous
    value: torch.Tensor,  # (T, Hkv, D)
    k_cache: torch.Tensor,  # (N, B, Hkv, D), contiguous, written in place
    v_cache: torch.Tensor,  # (N, B, Hkv, D), contiguous, written in place
    slot_mapping: torch.Tensor,  # (T,) int64, -1 = skip
) -> None:
    _run("reshape_and_cache", key, value, k_cache, v_cache, slot_mapping)


def rotary(qkv: torch.Tensor, cos_sin: torch.Tensor, num_heads: int) -> None:
    """RoPE in place on heads [0, num_heads) of qkv (T, heads, D) float32; cos_sin (T, 2, D) float32."""
    _run("rotary_embedding", qkv, cos_sin, int(num_heads))


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:  # x (..., 2*d) -> (..., d)
    if x.dtype != torch.float32:
        from .reference import silu_and_mul as torch_silu_and_mul

        return torch_silu_and_mul(x)
    return _run("silu_and_mul", x)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # (..., hidden), (hidden,)
    if x.dtype != torch.float32:
        from .reference import rms_norm as torch_rms_norm

        return torch_rms_norm(x, weight, eps)
    return _run("rms_norm", x, weight.float(), float(eps))


def argmax(logits: torch.Tensor) -> torch.Tensor:
    """(rows, vocab) -> (rows,) int64: the first index of each row's maximum, as torch.argmax(dim=-1)."""
    if logits.dtype != torch.float32 or logits.dim() != 2 or logits.shape[1] == 0:
        return logits.argmax(dim=-1)
    return _run("argmax_rows", logits)


PANEL = 32


def pack_panels(weight: torch.Tensor) -> torch.Tensor:
    """(N, K) -> (ceil(N/32), K, 32): column panels of 32 outputs, zero past N, 64-byte aligned."""
    n, k = weight.shape
    panels = -(-n // PANEL)
    padded = torch.nn.functional.pad(weight.float(), (0, 0, 0, panels * PANEL - n))
    out = torch.empty(panels * k * PANEL + 16, dtype=torch.float32)
    offset = (-out.data_ptr() // 4) % 16  # floats to the next 64-byte boundary
    packed = out[offset : offset + panels * k * PANEL].view(panels, k, PANEL)
    packed.copy_(padded.view(panels, PANEL, k).transpose(1, 2))
    return packed


def packed_linear(x: torch.Tensor, packed: torch.Tensor, n: int) -> torch.Tensor:
    """x @ weight.T for x (M, K) float32, the weight given as pack_panels(weight) and its row count n, any M
    (measured against torch and oneDNN: docs/performance.md). Every output is one k-ordered chain of multiply-adds,
    so a row's result does not depend on the other rows of the call."""
    return _run("packed_linear", x, packed, n)


# GGUF block formats block_packed_linear expands in its panels: name -> (format id, bytes of one GGUF block of 32).
BLOCK_FORMATS = {"Q4_1": (0, 20), "Q8_0": (1, 34)}


def pack_block_panels(blocks: torch.Tensor, fmt: str) -> torch.Tensor:
    """GGUF blocks (N, K/32 * block bytes) uint8, one weight row (output) per row as in the GGUF file -> the
    (ceil(N/32), K/32, record bytes) uint8 layout of block_packed_linear (csrc/cpu/cpu_ops.cpp), 64-byte aligned.
    Outputs past N are zero blocks (weights 0)."""
    _, block_bytes = BLOCK_FORMATS[fmt]
    n = blocks.shape[0]
    panels = -(-n // PANEL)
    b = torch.nn.functional.pad(blocks, (0, 0, 0, panels * PANEL - n)).view(panels, PANEL, -1, block_bytes)
    b = b.transpose(1, 2)  # (P, KB, 32 outputs, block bytes)
    scales = b[..., 0:2].reshape(*b.shape[:2], 64)  # float16 scales, output by output
    if fmt == "Q4_1":
        mins = b[..., 2:4].reshape(*b.shape[:2], 64)
        qs = b[..., 4:]  # (P, KB, 32 outputs, 16): byte i = element i (low nibble) | element i + 16 (high)
        q = torch.cat([qs & 15, qs >> 4], dim=-1).transpose(2, 3)  # (P, KB, 32 k, 32 outputs), values 0..15
        parts = [scales, mins, (q[..., :16] | (q[..., 16:] << 4)).reshape(*b.shape[:2], 512)]
    else:
        parts = [scales, b[..., 2:].transpose(2, 3).reshape(*b.shape[:2], 1024)]  # int8 q, k-major
    records = torch.cat(parts, dim=-1)
    out = torch.empty(records.numel() + 64, dtype=torch.uint8)
    offset = (-out.data_ptr()) % 64
    packed = out[offset : offset + records.numel()].view(records.shape)
    packed.copy_(records)
    return packed


def block_packed_linear(x: torch.Tensor, packed: torch.Tensor, n: int, fmt: str) -> torch.Tensor:
    """packed_linear for weights given as pack_block_panels(blocks, fmt): the same float32 result, bit for bit,
    as packed_linear on the GGUF's float32 dequantization of those blocks."""
    return _run("block_packed_linear", x, packed, n, BLOCK_FORMATS[fmt][0])


def expand_block_panels(packed: torch.Tensor, fmt: str) -> torch.Tensor:
    """The float32 panels (P, K, 32) block_packed_linear multiplies by; equal to pack_panels(w) when the blocks
    are w's."""
    return (_extension or build()).expand_block_panels(packed, BLOCK_FORMATS[fmt][0])


# Up to ~16 rows a projection is bound by reading its weights, and the blocks are a fifth of the bytes; past that
# the FMAs dominate and expanding the blocks is extra work. The crossover moves with the memory (12-20 rows on the
# CPUs measured, docs/performance.md); steps of 13-16 rows are a small share of a run, so one threshold serves all.
BLOCK_MAX_ROWS = 16

__all__ = [
    "BLOCK_FORMATS",
    "BLOCK_MAX_ROWS",
    "ISAS",
    "ISA_ENV",
    "argmax",
    "block_packed_linear",
    "build",
    "built_isa",
    "compile_only",
    "expand_block_panels",
    "info",
    "isa",
    "pack_block_panels",
    "pack_panels",
    "packed_linear",
    "paged_decode_attention",
    "reshape_and_cache",
    "resolve_isa",
    "rms_norm",
    "rotary",
    "runnable_isas",
    "select",
    "silu_and_mul",
]
