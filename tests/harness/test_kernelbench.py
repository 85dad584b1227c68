"""benchctl bench-attention: the paged kernels against contiguous SDPA on the same keys and values."""

from __future__ import annotations

import json

import pytest

from benchctl import kernelbench


@pytest.mark.parametrize("queries_per_seq", [1, 4])
def test_paged_kernels_and_sdpa_answer_the_same_attention(queries_per_seq):
    # 3 sequences of 40 tokens, blocks of 16 (the last one partly filled), GQA 3; with 4 rows per sequence the
    # rows are causal: row i sees 37 + i tokens in both layouts
    result = kernelbench.bench_attention(
        3, 40, 6, 2, 64, 16, ["torch", "cpu"], threads=1, min_time_s=0.01, queries_per_seq=queries_per_seq
    )
    assert result["shapes"]["queries_per_seq"] == queries_per_seq and result["shapes"]["threads"] == 1
    by_impl = {r["impl"]: r for r in result["results"]}
    assert set(by_impl) == {"contiguous sdpa", "paged torch", "paged cpu"}
    for r in by_impl.values():
        assert r["calls"] >= 5 and r["median_us"] > 0 and r["max_abs_err"] < 2e-6
    assert by_impl["contiguous sdpa"]["vs_contiguous"] == 1.0


def test_bad_shapes_are_one_line_and_exit_2(capsys):
    from benchctl.cli import main

    assert main(["bench-attention", "--context-len", "16", "--queries-per-seq", "17"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--queries-per-seq 17 must be between 1 and --context-len 16" in err[0]
    assert main(["bench-attention", "--heads", "9", "--kv-heads", "2"]) == 2
    assert "not a multiple" in capsys.readouterr().err


def test_json_output_names_the_shapes(capsys):
    from benchctl.cli import main

    assert (
        main(
            [
                "bench-attention",
                "--num-seqs",
                "2",
                "--context-len",
                "20",
                "--backends",
                "cpu",
                "--threads",
                "1",
                "--min-time",
                "0.01",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["shapes"]["context_len"] == 20 and [r["impl"] for r in out["results"]] == [
        "contiguous sdpa",
        "paged cpu",
    ]


def test_the_benchmark_runs_in_a_child_and_the_harness_imports_no_torch():
    from harness_imports import engine_modules, run_with_importtime

    code = (
        "import sys\nfrom benchctl.cli import main\n"
        "sys.exit(main(['bench-attention', '--num-seqs', '2', '--context-len', '20', '--backends', 'torch',"
        " '--threads', '1', '--min-time', '0.01', '--json']))\n"
    )
    proc, modules = run_with_importtime(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert [r["impl"] for r in out["results"]] == ["contiguous sdpa", "paged torch"]
    assert out["results"][1]["max_abs_err"] < 2e-6
    assert "benchctl.kernelbench" in modules and engine_modules(modules) == []


def test_an_unknown_kernel_backend_is_one_line_and_exit_2(capsys):
    from benchctl.cli import main

    assert main(["bench-attention", "--backends", "torch,nonesuch", "--min-time", "0.01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown kernel backend 'nonesuch'" in err[0]
