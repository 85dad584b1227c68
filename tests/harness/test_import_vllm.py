"""benchctl.importers.vllm: `vllm bench serve --save-result --save-detailed` JSON as a benchctl run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from benchctl import importers, store
from benchctl.importers import ImportFormatError
from benchctl.records import read_records
from tests.harness.import_fixtures import VLLM, check_complete_folder, check_recomputation, import_one, write_json


def test_becomes_a_complete_run_folder_with_vllms_figures_beside_benchctls(tmp_path):
    assert importers.detect_tool(VLLM) == "vllm"
    run_dir, run = import_one(VLLM, tmp_path)
    check_complete_folder(run_dir, run, VLLM, "vllm", requests=12, failed=0)
    assert "not recorded" in run["source"]["tool_version"]  # vLLM's file names no version
    assert run["source"]["settings"]["request_rate"] == 8.0 and run["workload"]["schedule"]["kind"] == "poisson"
    rows = {r["metric"]: r for r in check_recomputation(run)}
    assert {"ttft_p99_ms", "tpot_median_ms", "itl_p99_ms", "itl_std_ms"} <= {
        m for m, r in rows.items() if r["same_definition"]
    }


def test_records_rebuild_every_token_time(tmp_path):
    data = json.loads(VLLM.read_text())
    run_dir, run = import_one(VLLM, tmp_path)
    rows = read_records(run_dir / "requests.jsonl")
    for i, r in enumerate(rows):
        assert r["ttft_s"] == pytest.approx(data["ttfts"][i], abs=1e-12)
        assert len(r["token_times_s"]) == len(data["itls"][i]) + 1
        assert np.diff(r["token_times_s"]) == pytest.approx(data["itls"][i], abs=1e-12)
        assert r["e2el_s"] == pytest.approx(data["latencies"][i], abs=1e-12)
        assert r["queue_s"] == pytest.approx(data["queue_times"][i], abs=1e-12)
    # benchctl's numbers come from the records: checked against the raw lists too, not only against vLLM's summary
    assert run["summary"]["itl_s"]["median"] == pytest.approx(np.median(np.concatenate(data["itls"])), abs=1e-12)
    assert run["summary"]["ttft_s"]["p99"] == pytest.approx(np.percentile(data["ttfts"], 99), abs=1e-12)


def test_a_failure_as_vllm_writes_it_is_a_failed_record(tmp_path):
    data = json.loads(VLLM.read_text())
    # serve.py for a failed request: success False, error text, output_len 0, ttft 0, no itls, latency 0
    data["errors"][3], data["output_lens"][3], data["ttfts"][3] = "Internal Server Error", 0, 0.0
    data["itls"][3], data["latencies"][3] = [], 0.0
    run_dir, run = import_one(write_json(tmp_path / "vllm.json", data), tmp_path / "out")
    rows = read_records(run_dir / "requests.jsonl")
    assert rows[3]["error"] == "Internal Server Error" and rows[3]["finish_s"] is None
    assert run["summary"]["completed"] == 11 and run["summary"]["failed"] == 1


def test_append_result_file_gives_one_run_per_benchmark(tmp_path):
    path = tmp_path / "appended.json"
    path.write_text(VLLM.read_text().strip() + "\n" + VLLM.read_text().strip() + "\n")  # --append-result's layout
    dirs = importers.import_result(path, output_dir=tmp_path / "out")
    assert len(dirs) == 2 and [store.load_run(d)["source"]["result_index"] for d in dirs] == [0, 1]


def _without_detail(tmp_path: Path) -> Path:
    data = json.loads(VLLM.read_text())
    for name in ("input_lens", "output_lens", "start_times", "ttfts", "itls", "generated_texts", "errors"):
        del data[name]  # exactly what serve.py removes when --save-detailed is not given
    return write_json(tmp_path / "summary_only.json", data)


def _in_ms(tmp_path: Path) -> Path:
    data = json.loads(VLLM.read_text())
    data["ttfts"] = [t * 1000 for t in data["ttfts"]]
    return write_json(tmp_path / "ms.json", data)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            _without_detail,
            "no per-request data (start_times, ttfts, itls, input_lens, output_lens, errors missing): "
            "rerun `vllm bench serve` with --save-detailed",
        ),
        (_in_ms, "mismatched units: mean_ttft_ms is 1x the mean of ttfts"),
    ],
)
def test_bad_file_is_one_clear_line_and_writes_nothing(tmp_path, make, message):
    out = tmp_path / "results"
    with pytest.raises(ImportFormatError) as info:
        importers.import_result(make(tmp_path), output_dir=out)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()


def test_ten_thousand_requests_import(tmp_path):
    """A 10,000-request file with the real one's structure (its requests repeated): the import's speed is measured
    in docs/crosstool.md, not here; this checks that nothing in it breaks or goes quadratic at size."""
    data = json.loads(VLLM.read_text())
    reps = -(-10_000 // len(data["ttfts"]))
    gap = max(data["start_times"]) - min(data["start_times"]) + 1.0
    for name in ("input_lens", "output_lens", "ttfts", "itls", "latencies", "queue_times", "generated_texts", "errors"):
        data[name] = (data[name] * reps)[:10_000]
    data["start_times"] = [t + k * gap for k in range(reps) for t in data["start_times"]][:10_000]
    data["completed"], data["num_prompts"] = 10_000, 10_000
    t0 = time.perf_counter()
    run_dir, run = import_one(write_json(tmp_path / "vllm_10k.json", data), tmp_path / "out")
    elapsed = time.perf_counter() - t0
    assert run["summary"]["completed"] == 10_000 and len(read_records(run_dir / "requests.jsonl")) == 10_000
    print(f"10k-request vLLM import: {elapsed:.2f} s")
