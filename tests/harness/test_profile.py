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

    code = main(
        [
            "run",
            "--backend",
            "reference",
            "--profile",
            "torch",
            "--dataset",
            "random",
            "--num-prompts",
            "4",
            "--random-input-len",
            "24",
            "--random-output-len",
            "6",
            "--output-dir",
            str(tmp_path),
            "--json",
        ]
    )
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
    gemms = (
        "aten::mm",
        "aten::addmm",
        "aten::linear",
        "mkldnn::_linear_pointwise",
        "cpu_ops::packed_linear",
        "cpu_ops::block_packed_linear",
    )
    assert any(op["name"] in gemms for op in summary["top_operators"][:5]), summary["top_operators"][:5]
    # the report's figures: one split per step, and the timeline's lanes
    assert len(summary["step_split"]["start_ms"]) == len(steps) == len(summary["step_split"]["parts"]["forward"])
    assert all(f > 0 for f in summary["step_split"]["parts"]["forward"])
    lanes = {lane["lane"]: lane for lane in summary["timeline"]}
    assert lanes["engine steps"]["of"] == len(steps) and lanes["engine phases"]["of"] == 4 * len(steps)
    assert run["energy"]["source"] in ("rapl", None)  # a CPU run: RAPL where /sys/class/powercap is readable


def test_trace_views_split_each_step_and_keep_the_longest_events(tmp_path, monkeypatch):
    ann = "user_annotation"
    events = [
        {"ph": "X", "cat": ann, "name": "engine.step", "ts": 1000, "dur": 40, "pid": 1, "tid": 1},
        {"ph": "X", "cat": ann, "name": "engine.schedule", "ts": 1001, "dur": 4, "pid": 1, "tid": 1},
        {"ph": "X", "cat": ann, "name": "engine.forward", "ts": 1005, "dur": 30, "pid": 1, "tid": 1},
        {"ph": "X", "cat": ann, "name": "engine.step", "ts": 1060, "dur": 20, "pid": 1, "tid": 1},
        {"ph": "X", "cat": ann, "name": "engine.sample", "ts": 1062, "dur": 10, "pid": 1, "tid": 1},
        # the detokenize thread's range overlaps step 2 but is not its child
        {"ph": "X", "cat": ann, "name": "engine.detokenize", "ts": 1065, "dur": 5, "pid": 1, "tid": 2},
        {"ph": "X", "cat": "cpu_op", "name": "aten::linear", "ts": 1006, "dur": 20, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "cpu_op", "name": "aten::addmm", "ts": 1007, "dur": 15, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "cpu_op", "name": "aten::add", "ts": 1030, "dur": 2, "pid": 1, "tid": 1},
        {"ph": "X", "cat": "kernel", "name": "gemm_kernel", "ts": 1010, "dur": 12, "pid": 0, "tid": 7},
    ]
    views = profile.trace_views(events)
    split = views["step_split"]
    assert split["start_ms"] == [0.0, 0.06]
    assert split["parts"]["schedule"] == [0.004, 0.0] and split["parts"]["forward"] == [0.03, 0.0]
    assert split["parts"]["sample"] == [0.0, 0.01] and split["parts"]["detokenize"] == [0.0, 0.0]
    assert split["parts"]["other"] == [0.006, 0.01]
    lanes = {lane["lane"]: lane for lane in views["timeline"]}
    assert lanes["engine steps"]["start_ms"] == [0.0, 0.06] and lanes["engine steps"]["dur_ms"] == [0.04, 0.02]
    # outermost host ops only: addmm runs inside linear
    assert lanes["host ops (outermost)"]["name"] == ["aten::linear", "aten::add"]
    assert lanes["device kernels"]["name"] == ["gemm_kernel"] and lanes["device kernels"]["start_ms"] == [0.01]
    assert lanes["engine phases"]["of"] == 4
    monkeypatch.setattr(profile.traces, "TIMELINE_MAX_EVENTS", 1)  # where trace_views reads it
    lanes = {lane["lane"]: lane for lane in profile.trace_views(events)["timeline"]}
    assert lanes["engine phases"]["name"] == ["engine.forward"] and lanes["engine phases"]["of"] == 4
    assert lanes["engine steps"]["dur_ms"] == [0.04]
    s = profile.summarize_torch_trace(_trace(tmp_path, events))
    assert s["step_split"]["parts"]["other"] == [0.006, 0.01] and s["timeline"]


def test_nsys_traces_give_the_same_views(tmp_path, monkeypatch):
    def fake_run(cmd, **kw):
        for name in ("nvtx_sum", "cuda_gpu_kern_sum", "nvtx_pushpop_trace", "cuda_gpu_trace"):
            (tmp_path / f"nsys_{name}.csv").write_text((DATA / f"nsys_{name}.csv").read_text())

    (tmp_path / "nsys.nsys-rep").write_bytes(b"report")
    monkeypatch.setattr(profile.subprocess, "run", fake_run)
    summary = profile.summarize(mode="nsys", run_dir=tmp_path)
    assert "nvtx_pushpop_trace" not in summary and "cuda_gpu_trace" not in summary  # views, not tables
    split = summary["step_split"]
    assert split["start_ms"] == [0.0, 11.0]
    assert split["parts"]["forward"] == [8.0, 8.0] and split["parts"]["schedule"] == [0.2, 0.2]
    assert split["parts"]["other"] == [pytest.approx(0.3), pytest.approx(0.3)]
    lanes = {lane["lane"]: lane for lane in summary["timeline"]}
    assert lanes["device kernels"]["of"] == 14 and lanes["device kernels"]["start_ms"][0] == 0.4
    assert lanes["engine phases"]["name"][:2] == ["engine.schedule", "engine.forward"]
    top = summary["top_operators"]
    assert top[0]["name"].startswith("void paged_attention_v1_kernel") and top[0]["self_ms"] == pytest.approx(3.5)
    assert top[0]["calls"] == 1000 and top[0]["self_share"] == pytest.approx(0.7)


def test_ncu_csv_parsed_to_base_units_and_kernel_table():
    launches = profile.parse_ncu_csv((Path(__file__).parent / "data" / "ncu" / "ncu.csv").read_text())
    assert [x["id"] for x in launches] == [0, 1, 2]
    first = launches[0]
    assert first["kernel"].startswith("void paged_attention_kernel<__nv_bfloat16, 128, 16, 512>")
    assert first["grid"] == "(32, 64, 2)" and first["device"] == 0
    assert first["metrics"]["dram__bytes.sum.per_second"] == pytest.approx(3.57e12)
    assert first["units"]["dram__bytes.sum.per_second"] == "byte/second"
    assert first["metrics"]["gpu__time_duration.sum"] == pytest.approx(152.45e-6)
    assert first["metrics"]["dram__bytes_read.sum"] == pytest.approx(540.12e6)
    table = profile.ncu_kernels(launches)
    assert [k["launches"] for k in table] == [2, 1]
    attn = table[0]
    assert attn["mean_duration_us"] == pytest.approx((152.45 + 148.77) / 2)
    assert attn["dram_bandwidth_gb_s"] == pytest.approx((3570 + 3660) / 2)
    assert attn["mean_dram_bytes"] == pytest.approx(544.31e6) and attn["dram_peak_share"] == pytest.approx(0.7534)
    assert table[1]["sm_peak_share"] == pytest.approx(0.0802)
    with pytest.raises(ValueError, match="not an ncu"):
        profile.parse_ncu_csv("==PROF== nothing profiled\n")


def test_ncu_bandwidth_from_bytes_and_time_when_the_rate_is_missing():
    text = (
        '"ID","Kernel Name","Metric Name","Metric Unit","Metric Value"\n'
        '"0","k","gpu__time_duration.sum","nsecond","2,000"\n'
        '"0","k","dram__bytes_read.sum","byte","6,000,000"\n'
        '"0","k","dram__bytes_write.sum","Kbyte","2,000"\n'
        '"0","k","sm__throughput.avg.pct_of_peak_sustained_elapsed","%","n/a"\n'
    )
    (kernel,) = profile.ncu_kernels(profile.parse_ncu_csv(text))
    assert kernel["dram_bandwidth_gb_s"] == pytest.approx(8e6 / 2e-6 / 1e9)  # 4000 GB/s
    assert kernel["mean_duration_us"] == pytest.approx(2.0) and kernel["sm_peak_share"] is None
    assert profile.to_base_unit(3.0, "msecond") == (pytest.approx(3e-3), "second")
    assert profile.to_base_unit(7.0, "warp") == (7.0, "warp")


def test_ncu_prefix_and_refusal(tmp_path, monkeypatch):
    prefix = profile.worker_prefix("ncu", tmp_path)
    assert prefix[:4] == ["env", "REFERENCE_ENGINE_NVTX=1", "ncu", "--csv"] and f"{tmp_path / 'ncu.csv'}" in prefix
    assert prefix[prefix.index("--kernel-name") + 1] == "regex:paged_attention"
    assert set(prefix[prefix.index("--metrics") + 1].split(",")) == set(profile.NCU_METRICS)
    assert profile.worker_prefix("nsys", tmp_path)[1:4] == ["REFERENCE_ENGINE_NVTX=1", "nsys", "profile"]
    assert profile.worker_prefix("torch", tmp_path) is None
    monkeypatch.setattr(profile.shutil, "which", lambda name: "/usr/bin/ncu")
    monkeypatch.setattr(profile, "cuda_present", lambda: False)
    with pytest.raises(BackendError, match="--profile ncu needs an NVIDIA GPU"):
        profile.check_profile("ncu")
    assert profile.summarize_ncu(tmp_path)["error"].startswith("ncu wrote no ncu.csv")
    (tmp_path / "ncu.csv").write_text((Path(__file__).parent / "data" / "ncu" / "ncu.csv").read_text())
    summary = profile.summarize("ncu", tmp_path)
    assert summary["ncu_launches"] == 3 and summary["ncu_kernels"][0]["launches"] == 2
