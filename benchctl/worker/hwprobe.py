"""Child program: the torch measurements of `benchctl hwinfo` (benchctl.hwinfo launches it and adds the rest).

python -P -m benchctl.worker.hwprobe '{"threads": 2, "bandwidth_bytes": 268435456, "gemm_size": 1536}'
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from benchctl.worker.child import child_main


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: page faults, thread pool start
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_bandwidth(num_bytes: int, repeats: int = 5) -> dict[str, float]:
    """Read bandwidth (sum over a large fp32 tensor) and copy bandwidth (read + write), GB/s = 1e9 B/s."""
    import torch

    src = torch.ones(num_bytes // 4, dtype=torch.float32)  # (n,)
    dst = torch.empty_like(src)  # (n,)
    read_s = _best_seconds(lambda: src.sum(), repeats)
    copy_s = _best_seconds(lambda: dst.copy_(src), repeats)
    return {
        "read_bandwidth_gb_s": num_bytes / read_s / 1e9,
        "copy_bandwidth_gb_s": 2 * num_bytes / copy_s / 1e9,
        "bandwidth_bytes": num_bytes,
    }


def measure_gemm(n: int, repeats: int = 10) -> dict[str, float]:
    """fp32 (n, n) @ (n, n): 2 n^3 FLOPs per product."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)  # (n, n)
    b = torch.randn(n, n, generator=gen)  # (n, n)
    out = torch.empty(n, n)  # (n, n)
    seconds = _best_seconds(lambda: torch.mm(a, b, out=out), repeats)
    return {"gemm_fp32_flop_s": 2 * n**3 / seconds, "gemm_size": n}


def measure_cuda(num_bytes: int = 2**30, matmul_size: int = 8192, repeats: int = 10) -> dict[str, Any]:
    """The GPU's ceilings: HBM bandwidth of a device-to-device copy (read + write, GB/s) and bf16 / fp16 matmul
    FLOP/s at (n, n) @ (n, n), timed with CUDA events (best of `repeats`)."""
    import torch

    def best_s(fn) -> float:
        fn()
        torch.cuda.synchronize()
        best = math.inf
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        return best

    src = torch.empty(num_bytes, dtype=torch.uint8, device="cuda")  # (bytes,)
    dst = torch.empty_like(src)  # (bytes,)
    copy_s = best_s(lambda: dst.copy_(src))
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "memory_bytes": torch.cuda.get_device_properties(0).total_memory,
        "hbm_copy_bandwidth_gb_s": 2 * num_bytes / copy_s / 1e9,
        "copy_bytes": num_bytes,
        "matmul_size": matmul_size,
    }
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        a = torch.randn(matmul_size, matmul_size, device="cuda", dtype=dtype)  # (n, n)
        b = torch.randn(matmul_size, matmul_size, device="cuda", dtype=dtype)  # (n, n)
        result[f"matmul_{name}_flop_s"] = 2 * matmul_size**3 / best_s(lambda a=a, b=b: a @ b)
    return result


def probe(payload: dict[str, Any]) -> dict[str, Any]:
    """Bandwidth and GEMM results with torch on payload["threads"] threads, and the seconds they took."""
    import torch

    torch.set_num_threads(int(payload["threads"]))
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        **measure_bandwidth(int(payload["bandwidth_bytes"])),
        **measure_gemm(int(payload["gemm_size"])),
    }
    if torch.cuda.is_available():
        result["cuda"] = measure_cuda()
    result["measure_s"] = time.perf_counter() - t0
    return result


if __name__ == "__main__":
    sys.exit(child_main(probe))
