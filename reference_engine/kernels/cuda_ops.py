"""The CUDA C++ kernels of csrc/, built on first use with torch.utils.cpp_extension.load (ninja) and cached.

Only a CUDA build of torch with nvcc can build them; `reference_engine.kernels.load_ops("cuda")` checks that first
and raises a RuntimeError saying what is missing. Importing this module compiles nothing.
Shapes as in reference.py: S seqs, T tokens, H heads, Hkv KV heads, D head_dim, N blocks, B block size, M blocks
per sequence.
"""

from __future__ import annotations

import threading
from types import ModuleType

import torch

from . import launch

NAME = "cuda"
EXTENSION_NAME = "benchctl_reference_kernels"
CUDA_SOURCES = ("paged_attention.cu", "cache_kernels.cu", "fused_ops.cu")
BINDING_SOURCE = "torch_bindings.cpp"
NVCC_FLAGS = ("-O3", "--use_fast_math")  # torch adds its own -std (c++20 for torch 2.13)

_extension: ModuleType | None = None
_lock = threading.Lock()


def build(verbose: bool = False) -> ModuleType:
    """Compile (or load from torch's extension cache, keyed on the sources) and return the extension module."""
    global _extension
    with _lock:
        if _extension is None:
            from torch.utils.cpp_extension import load

            _extension = load(
                name=EXTENSION_NAME,
                sources=[str(launch.CSRC_DIR / name) for name in (*CUDA_SOURCES, BINDING_SOURCE)],
                extra_include_paths=[str(launch.CSRC_DIR)],
                extra_cflags=["-O3"],
                extra_cuda_cflags=list(NVCC_FLAGS),
                verbose=verbose,
            )
    return _extension


def reshape_and_cache(
    key: torch.Tensor,  # (T, Hkv, D)
    value: torch.Tensor,  # (T, Hkv, D)
    k_cache: torch.Tensor,  # (N, B, Hkv, D), contiguous, written in place
    v_cache: torch.Tensor,  # (N, B, Hkv, D), contiguous, written in place
    slot_mapping: torch.Tensor,  # (T,) int64, -1 = skip
) -> None:
    build().reshape_and_cache(key, value, k_cache, v_cache, slot_mapping)


def paged_decode_attention(
    query: torch.Tensor,  # (S, H, D)
    k_cache: torch.Tensor,  # (N, B, Hkv, D)
    v_cache: torch.Tensor,  # (N, B, Hkv, D)
    block_tables: torch.Tensor,  # (S, M) int32, padded with -1
    context_lens: torch.Tensor,  # (S,) int32
    scale: float,
    *,
    version: int | None = None,  # None = the heuristic of launch_config.h (launch.choose_version)
    max_context_len: int | None = None,  # upper bound of context_lens; None = M * B (no device sync)
) -> torch.Tensor:  # (S, H, D) in query's dtype
    launch.check_supported(query.shape[2], k_cache.shape[1])
    if max_context_len is None:
        max_context_len = block_tables.shape[1] * k_cache.shape[1]
    return build().paged_attention(
        query, k_cache, v_cache, block_tables, context_lens, float(scale), int(max_context_len), version or 0
    )


def paged_decode_attention_v1(query, k_cache, v_cache, block_tables, context_lens, scale, **kwargs) -> torch.Tensor:
    return paged_decode_attention(query, k_cache, v_cache, block_tables, context_lens, scale, version=1, **kwargs)


def paged_decode_attention_v2(query, k_cache, v_cache, block_tables, context_lens, scale, **kwargs) -> torch.Tensor:
    return paged_decode_attention(query, k_cache, v_cache, block_tables, context_lens, scale, version=2, **kwargs)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:  # x (..., 2*d) -> (..., d)
    return build().silu_and_mul(x)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # (..., hidden), (hidden,)
    return build().rms_norm(x, weight.to(x.dtype), float(eps))
