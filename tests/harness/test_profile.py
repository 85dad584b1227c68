"""Profiling: nsys command construction and CSV parsing (fixtures), torch trace summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchctl import profile
from benchctl.backend import BackendError

DATA = Path(__file__).parent / "data" / "nsys"


def test_nsys_commands():
    prefix = profile.nsys_prefix(Path("/runs/r1"))
    assert prefix[:2] == ["nsys", "profile"]
    assert "--trace=nvtx,cuda,osrt" in prefix and "--output=/runs/r1/nsys" in prefix
    stats = profile.nsys_stats_command(Path("/runs/r1/nsys.nsys-rep"), Path("/runs/r1/nsys"))
    assert stats[:2] == ["nsys", "stats"] and stats[-1] == "/runs/r1/nsys.nsys-rep"
    assert {f"--report={r}" for r in profile.NSYS_REPORTS} <= set(stats) and "--format=csv" in stats


def test_nsys_refused_clearly_without_nsys_or_gpu(monkeypatch):
    monkeypatch.setattr(profile.shutil, "which", lambda name: None)
    monkeypatch.setattr(profile, "cuda_present", lambda: False)
    with pytest.raises(BackendError, match="nsys on PATH and an NVIDIA GPU"):
        profile.check_profile("nsys")
    with pytest.raises(BackendError, match="--profile must be one of"):
        profile.check_profile("perf")
    profile.check_profile("torch")


def test_parse_nvtx_summary_with_banner():
    rows = profile.parse_nsys_csv((DATA / "nsys_nvtx_sum.csv").read_text())
    assert [r["Range"] for r in rows] == [":engine.forward", ":engine.sample", ":engine.schedule"]
    assert rows[0]["Total Time (ns)"] == 5_000_000_000 and rows[0]["Instances"] == 100
    assert rows[1]["Time (%)"] == pytest.approx(25.0)


def test_parse_kernel_summary_keeps_commas_in_names():
    rows = profile.parse_nsys_csv((DATA / "nsys_cuda_gpu_kern_sum.csv").read_text())
    assert rows[0]["Name"].startswith("void paged_attention_v1_kernel<float, 64, 16>")
    assert rows[1]["Instances"] == 2000 and rows[1]["Avg (ns)"] == pytest.approx(750.0)
    with pytest.raises(ValueError):
        profile.parse_nsys_csv("no,report,here\n1,2,3\n")


def test_summarize_nsys_reads_the_stats_files(tmp_path, monkeypatch):
    (tmp_path / "nsys.nsys-rep").write_bytes(b"report")
    calls = []

    def fake_run(cmd, **kw):  # nsys stats writes one CSV per report next to the output prefix
        calls.append(cmd)
        for name in ("nvtx_sum", "cuda_gpu_kern_sum"):
            (tmp_path / f"nsys_{name}.csv").write_text((DATA / f"nsys_{name}.csv").read_text())

    monkeypatch.setattr(profile.subprocess, "run", fake_run)
    summary = profile.summarize_nsys(tmp_path)
    assert calls and calls[0][:2] == ["nsys", "stats"]
    assert summary["nvtx_sum"][0]["Range"] == ":engine.forward"
    assert summary["cuda_gpu_kern_sum"][0]["Instances"] == 1000
    assert "osrt_sum" not in summary


def _trace(tmp_path, events):
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": events}))
    return path


def test_torch_trace_summary_coverage_idle_and_self_time(tmp_path):
    ann = "user_annotation"
    events = [
        # two steps of 40 us each in a 100 us window: 20 us idle between them
        {"ph": "X", "cat": ann, "name": "engine.step", "ts": 0, "dur": 40, "pid": 1, "tid": 1},
        {"ph": "X", "cat": ann, "name": "engine.forward", "ts": 5, "dur": 30, "pid": 1, "tid": 1},
        {"ph": "X", "cat": ann, "name": "engine.step", "ts": 60, "dur": 40, "pid": 1, "tid": 1},
        {"ph": "X", "cat": ann, "name": "worker.admit", "ts": 45, "dur": 10, "pid": 1, "tid": 1},
        # aten::linear (20 us) contains aten::addmm (15 us): linear's self time is 5 us
        {"ph": "X", "cat": "cpu_op", "name": "aten::linear", "ts": 10, "dur": 20, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "cpu_op", "name": "aten::addmm", "ts": 12, "dur": 15, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "cpu_op", "name": "aten::addmm", "ts": 70, "dur": 15, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "cpu_op", "name": "aten::_local_scalar_dense", "ts": 90, "dur": 1, "pid": 1, "tid": 1},
        # a kernel called outside torch's dispatcher, in its own range, allocating its output (1 us)
        {"ph": "X", "cat": ann, "name": "cpu_ops::packed_linear", "ts": 62, "dur": 6, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "cpu_op", "name": "aten::empty", "ts": 63, "dur": 1, "pid": 1, "tid": 1},
    ]
    s = profile.summarize_torch_trace(_trace(tmp_path, events))
    assert s["num_steps"] == 2 and s["window_s"] == pytest.approx(100e-6)
    assert s["idle_between_steps_fraction"] == pytest.approx(0.2)
    assert s["range_coverage"] == pytest.approx(0.9)  # steps (80) + admit (10) of 100
    assert s["host_syncs_per_step"] == pytest.approx(0.5)
    ops = {o["name"]: o for o in s["top_operators"]}
    assert ops["aten::addmm"]["self_ms"] == pytest.approx(0.030) and ops["aten::addmm"]["calls"] == 2
    assert ops["aten::linear"]["self_ms"] == pytest.approx(0.005)
    assert sum(o["self_share"] for o in s["top_operators"]) == pytest.approx(1.0)
    assert ops["aten::_local_scalar_dense"]["calls"] == 1
    assert ops["cpu_ops::packed_linear"]["self_ms"] == pytest.approx(0.005) and "engine.step" not in ops
    assert s["ranges"]["engine.step"]["count"] == 2


@pytest.mark.slow
def test_torch_profile_of_a_real_reference_run(tmp_path):
    """--profile torch on the reference engine: the trace is JSON and the engine's ranges cover the run."""
    from benchctl.cli import main

    code = main(["run", "--backend", "reference", "--profile", "torch", "--dataset", "random", "--num-prompts", "4",
                 "--random-input-len", "24", "--random-output-len", "6", "--output-dir", str(tmp_path), "--json"])
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    trace = json.loads((run_dir / "torch_trace.json").read_text())
    steps = (run_dir / "steps.jsonl").read_text().splitlines()
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"engine.step", "engine.forward", "engine.sample", "worker.run"} <= names
    assert run["profile"]["num_steps"] == len(steps) > 0
    assert run["engine"]["sampling"] == {"temperature": 0.0}  # greedy unless asked, like every backend
    assert run["profile"]["range_coverage"] >= 0.9
    summary = json.loads((run_dir / "profile_summary.json").read_text())
    # torch's, oneDNN's or the engine's own GEMMs
    gemms = ("aten::mm", "aten::addmm", "aten::linear", "mkldnn::_linear_pointwise", "cpu_ops::packed_linear",
             "cpu_ops::block_packed_linear")
    assert any(op["name"] in gemms for op in summary["top_operators"][:5]), summary["top_operators"][:5]
