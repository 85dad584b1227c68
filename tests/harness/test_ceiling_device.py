"""A run's compute ceiling is taken on the device it ran on: the GPU's bf16/fp16 matmul for a CUDA run (hwinfo's
`cuda` section), the CPU's fp32 GEMM otherwise; never a GPU run against CPU ceilings."""

from __future__ import annotations

import pytest

from benchctl import hwinfo
from benchctl.metrics.ceiling import ceiling_from, gemm_rate, run_device

GPU_BOX = {
    "measured_at": "2026-12-01T10:00:00Z",
    "gemm_fp32_flop_s": 100e9,
    "hardware": {"cpu": "Xeon"},
    "hwinfo_version": 1,
    "cuda": {
        "device": "NVIDIA H200",
        "matmul_bf16_flop_s": 700e12,
        "matmul_fp16_flop_s": 720e12,
        "hbm_copy_bandwidth_gb_s": 4000.0,
    },
}
CPU_BOX = {
    "measured_at": "2026-12-01T10:02:00Z",
    "gemm_fp32_flop_s": 120e9,
    "hardware": {"cpu": "Xeon"},
    "hwinfo_version": 1,
}


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ({"device": "cuda:0", "dtype": "bfloat16"}, ("cuda", "bfloat16")),  # reference
        ({"device": "cuda", "dtype": "float16"}, ("cuda", "float16")),  # hf
        ({"device": "NVIDIA H200"}, ("cuda", "bfloat16")),  # vllm names the GPU
        ({"device": "cpu", "dtype": "float32"}, ("cpu", "float32")),
        ({}, ("cpu", "float32")),
    ],
)
def test_the_device_a_run_used(engine, expected):
    assert run_device({"engine": engine}) == expected


def test_gpu_run_against_the_gpu_matmul_cpu_run_against_fp32_gemm():
    gpu = ceiling_from((GPU_BOX, 0.0), 7_000_000_000, 1000.0, device="cuda", dtype="bfloat16")
    assert gpu["ceiling_tok_s"] == pytest.approx(700e12 / 14e9) and gpu["share"] == pytest.approx(0.02)
    assert gpu["gemm"] == "NVIDIA H200 bf16 matmul" and gpu["gemm_flop_s"] == 700e12
    fp16 = ceiling_from((GPU_BOX, 0.0), 7_000_000_000, 1000.0, device="cuda", dtype="float16")
    assert fp16["gemm_flop_s"] == 720e12
    cpu = ceiling_from((GPU_BOX, 0.0), 7_000_000_000, 10.0)
    assert cpu["gemm"] == "fp32 GEMM" and cpu["ceiling_tok_s"] == pytest.approx(100e9 / 14e9)
    # a measurement without the GPU's numbers gives a CUDA run no ceiling rather than the CPU's
    assert ceiling_from((CPU_BOX, 0.0), 7_000_000_000, 1000.0, device="cuda", dtype="bfloat16") is None
    assert gemm_rate(CPU_BOX, "cuda", "bfloat16")[0] is None
    best = ceiling_from((GPU_BOX, 1.0), 7_000_000_000, 1000.0, best=CPU_BOX, device="cuda", dtype="bfloat16")
    assert best["best_gemm_flop_s"] == 700e12  # the CPU-only measurement is not a better GPU


def test_ceiling_for_a_cuda_dummy_run_uses_the_gpu(tmp_path):
    run = {
        "created_at": "2026-12-01T10:01:00Z",
        "finished_at": "2026-12-01T10:03:00Z",
        "config": {
            "model": {
                "name": "dummy:llama-2-7b",
                "hf_dir": str(tmp_path),
                "weights": "random (dummy)",
                "num_parameters": 6_738_415_616,
            }
        },
        "engine": {"device": "cuda:0", "dtype": "bfloat16"},
        "environment": {"hardware": {"cpu": "Xeon"}},
        "summary": {"total_tok_s": 5000.0},
    }
    ceiling = hwinfo.ceiling_for_run(run, history=[GPU_BOX, CPU_BOX])
    assert ceiling["gemm"] == "NVIDIA H200 bf16 matmul"
    assert ceiling["share"] == pytest.approx(5000.0 / (700e12 / (2 * 6_738_415_616)))


def test_measure_keeps_the_probe_cuda_section(monkeypatch, tmp_path):
    probed = {
        "read_bandwidth_gb_s": 30.0,
        "copy_bandwidth_gb_s": 20.0,
        "bandwidth_bytes": 1,
        "gemm_fp32_flop_s": 1e11,
        "gemm_size": 1536,
        "measure_s": 2.0,
        "cuda": GPU_BOX["cuda"],
    }
    monkeypatch.setattr(hwinfo, "run_child", lambda module, payload, timeout_s=None: probed)
    assert hwinfo.measure()["cuda"]["matmul_bf16_flop_s"] == 700e12
    probed.pop("cuda")
    assert "cuda" not in hwinfo.measure()
