"""The `hf` backend end to end on the bundled model: `benchctl run` in a subprocess, then the files it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def benchctl_run(tmp_path: Path, *args: str) -> tuple[dict, list[dict]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchctl",
            "run",
            "--backend",
            "hf",
            "--dataset",
            "random",
            *args,
            "--output-dir",
            str(tmp_path / "out"),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    run = json.loads(p.stdout)
    (run_dir,) = (tmp_path / "out").iterdir()
    assert run_dir.name == run["run_id"]
    rows = [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
    assert (run_dir / "requests.parquet").is_file()
    return run, rows


def check_token_times(rows: list[dict]) -> None:
    for r in rows:
        times = r["token_times_s"]
        assert r["error"] is None
        assert r["output_tokens"] == r["expected_output_tokens"], r["request_id"]
        assert len(times) == r["output_tokens"], r["request_id"]
        assert all(a <= b for a, b in zip(times, times[1:])), r["request_id"]
        assert r["start_s"] <= r["first_token_s"] == times[0]
        assert r["finish_s"] == times[-1]
        assert r["ttft_s"] == pytest.approx(times[0] - r["start_s"])
        assert len(r["itl_s"]) == r["output_tokens"] - 1


def test_hf_static_batching_end_to_end(tmp_path):
    run, rows = benchctl_run(
        tmp_path,
        "--num-prompts",
        "4",
        "--random-input-len",
        "24",
        "--random-output-len",
        "6",
        "--random-range-ratio",
        "0.5",
        "--batch-size",
        "2",
    )
    assert run["status"] == "completed"
    assert run["engine"]["mode"] == "static" and run["engine"]["batch_size"] == 2
    assert run["engine"]["dtype"] == "float32" and run["engine"]["engine"] == "hf-transformers"
    assert run["engine"]["precision"] == "float32"
    assert [r["request_id"] for r in rows] == [f"req-{i:05d}" for i in range(4)]
    assert all(12 <= r["prompt_tokens"] <= 36 and 3 <= r["expected_output_tokens"] <= 9 for r in rows)
    check_token_times(rows)

    batches = [rows[0:2], rows[2:4]]  # static batches in workload order
    for index, batch in enumerate(batches):
        assert [r["extra"]["batch_index"] for r in batch] == [index, index]
        assert batch[0]["start_s"] == batch[1]["start_s"]  # submitted together
        short, long = sorted(batch, key=lambda r: r["output_tokens"])
        assert long["token_times_s"][: short["output_tokens"]] == short["token_times_s"]  # one decode step clock
    assert batches[1][0]["start_s"] >= max(r["finish_s"] for r in batches[0])  # batches run one after another

    # padding waste by hand: each batch computes (batch size) x (longest prompt + longest output) slots
    computed = sum(len(b) * (max(r["prompt_tokens"] for r in b) + max(r["output_tokens"] for r in b)) for b in batches)
    useful = sum(r["prompt_tokens"] + r["output_tokens"] for r in rows)
    stats = run["engine_stats"]
    assert stats["num_batches"] == 2
    assert (stats["token_slots_computed"], stats["token_slots_useful"]) == (computed, useful)
    assert stats["padding_waste_pct"] == pytest.approx(100 * (1 - useful / computed))

    summary = run["summary"]
    assert summary["completed"] == 4 and summary["failed"] == 0 and summary["output_tokens_short"] == 0
    assert summary["total_output_tokens"] == sum(r["expected_output_tokens"] for r in rows)
    assert summary["duration_s"] == pytest.approx(max(r["finish_s"] for r in rows))
    assert run["workload"]["output_tokens"]["sum"] == summary["total_output_tokens"]


def test_hf_continuous_batching_honours_exact_lengths(tmp_path):
    run, rows = benchctl_run(
        tmp_path,
        "--num-prompts",
        "3",
        "--random-input-len",
        "16",
        "--random-output-len",
        "5",
        "--random-range-ratio",
        "0.5",
        "--engine-arg",
        "mode=continuous",
    )
    assert run["status"] == "completed" and run["engine"]["mode"] == "continuous"
    assert len({r["expected_output_tokens"] for r in rows}) > 1  # lengths differ per request
    check_token_times(rows)
    assert run["summary"]["completed"] == 3 and run["summary"]["output_tokens_short"] == 0
