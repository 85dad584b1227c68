"""The GEMM benchmark (reference_engine/kernels/bench_gemm.py): its numbers follow from its times, and every
implementation it times computes the same product."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cpu_isa_paths import RUNNABLE
from engine_envs import require_cpu_kernels

from reference_engine.kernels import bench_gemm

require_cpu_kernels()


def test_rates_follow_from_the_times_and_every_implementation_computes_the_same_product():
    k, n = 96, 40  # a last panel of 8 columns
    result = bench_gemm.run({"small": (k, n)}, [1, 7, 13], RUNNABLE, min_time_s=0.01, weights_bytes=4 * k * n * 3)
    impls = ["torch", *(f"{kind} {isa}" for isa in RUNNABLE for kind in ("packed", "block q4_1"))]
    assert [(r["rows"], r["impl"]) for r in result["results"]] == [(m, i) for m in (1, 7, 13) for i in impls]
    panels_bytes, blocks_bytes = 2 * k * 32 * 4, 2 * (k // 32) * 640  # 2 panels of 32 outputs
    for r in result["results"]:
        m = r["rows"]
        assert r["copies"] == 3 and r["calls"] >= 5 and r["min_s"] <= r["p10_s"] <= r["median_s"] <= r["p90_s"]
        assert r["flop"] == 2 * m * n * k
        assert r["gflop_s"] == pytest.approx(2 * m * n * k / r["median_s"] / 1e9)
        weights = {"torch": k * n * 4, "packed": panels_bytes, "block": blocks_bytes}[r["impl"].split()[0]]
        assert r["bytes"] == weights + (m * k + m * n) * 4
        assert r["gb_s"] == pytest.approx(r["bytes"] / r["median_s"] / 1e9)
        torch_median = next(t["median_s"] for t in result["results"] if t["rows"] == m and t["impl"] == "torch")
        assert r["vs_torch"] == pytest.approx(torch_median / r["median_s"])
        # the same weights (the blocks' exact float32 values) for all: float32 sums of k terms near the exact one
        assert r["max_abs_err"] < 1e-4
        if r["impl"].startswith("block"):
            assert r["same_as_packed"] is True  # bit for bit, as the engine relies on


def test_bad_shapes_and_rows_are_one_line_and_exit_2():
    with pytest.raises(ValueError, match="a name .* or KxN"):
        bench_gemm.parse_shapes("576x")
    with pytest.raises(ValueError, match="K=100 is not a multiple of 32"):
        bench_gemm.parse_shapes("100x64")
    assert bench_gemm.parse_shapes("model,576x1536") == {**bench_gemm.MODEL_SHAPES, "576x1536": (576, 1536)}
    for args in (["--rows", "0"], ["--shapes", "qkv,3x"], ["--shapes", "100x64"], ["--isa", "avx3"]):
        done = subprocess.run(
            [sys.executable, "-m", "reference_engine.kernels.bench_gemm", *args, "--min-time", "0.01"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2, args
        assert done.stderr.startswith("bench_gemm: error: ") and len(done.stderr.strip().splitlines()) == 1


def test_json_out_is_the_result():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reference_engine.kernels.bench_gemm",
            "--json",
            "--shapes",
            "64x32",
            "--rows",
            "2",
            "--isa",
            RUNNABLE[-1],
            "--min-time",
            "0.01",
            "--warm",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["isas"] == [RUNNABLE[-1]] and result["weights_bytes"] == 0
    assert [r["impl"] for r in result["results"]] == ["torch", f"packed {RUNNABLE[-1]}", f"block q4_1 {RUNNABLE[-1]}"]


def test_benchctl_bench_gemm_runs_the_module_in_a_child_and_says_bad_input_in_one_line(capsys):
    from benchctl.cli import main

    assert (
        main(
            [
                "bench-gemm",
                "--shapes",
                "64x40",
                "--rows",
                "3",
                "--isa",
                RUNNABLE[-1],
                "--min-time",
                "0.01",
                "--warm",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert [(r["rows"], r["impl"]) for r in result["results"]] == [
        (3, "torch"),
        (3, f"packed {RUNNABLE[-1]}"),
        (3, f"block q4_1 {RUNNABLE[-1]}"),
    ]
    assert set(result["hwinfo"]) == {"gemm_fp32_flop_s", "read_bandwidth_gb_s", "measured_at"}  # the cached ceilings
    assert main(["bench-gemm", "--shapes", "100x64"]) == 2
    assert capsys.readouterr().err.strip() == (
        "benchctl: error: Invalid value: shape '100x64': K=100 is not a multiple of 32 (a GGUF block)"
    )
