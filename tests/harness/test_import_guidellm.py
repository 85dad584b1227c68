"""benchctl.importers.guidellm: guidellm 0.8 benchmarks JSON as a benchctl run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchctl import importers
from benchctl.importers import ImportFormatError
from benchctl.records import read_records
from tests.harness.import_fixtures import GUIDELLM, check_complete_folder, check_recomputation, import_one, write_json


def test_becomes_a_complete_run_folder_with_guidellms_figures_beside_benchctls(tmp_path):
    assert importers.detect_tool(GUIDELLM) == "guidellm"
    run_dir, run = import_one(GUIDELLM, tmp_path)
    check_complete_folder(run_dir, run, GUIDELLM, "guidellm", requests=10, failed=1)
    assert run["source"]["tool_version"] == "0.8.1" and run["config"]["serving"]["base_url"].startswith("http://")
    rows = {r["metric"]: r for r in check_recomputation(run)}
    # guidellm's "TPOT" includes the TTFT: benchctl's latency per token, not its TPOT
    assert rows["latency_per_token_mean_ms"]["agrees"]
    assert rows["latency_per_token_mean_ms"]["tool_name"] == "metrics.time_per_output_token_ms.successful.mean"
    assert rows["tpot_mean_ms"]["tool_name"] == "metrics.inter_token_latency_ms.successful.mean"


def test_keeps_its_errors_and_has_no_itl(tmp_path):
    run_dir, run = import_one(GUIDELLM, tmp_path)
    rows = read_records(run_dir / "requests.jsonl")
    [failed] = [r for r in rows if r["error"]]
    assert "500 Internal Server Error" in failed["error"] and failed["extra"]["guidellm_status"] == "errored"
    assert run["summary"]["itl_s"] == {"count": 0}  # guidellm keeps the first and last token times only
    assert all(r["expected_output_tokens"] == 16 for r in rows if not r["error"])  # max_tokens of the body


def test_a_target_that_is_not_an_epoch_time_falls_back_to_the_send(tmp_path):
    """Seen on a CPU busy with other work: targeted_start as small relative numbers, some negative."""
    data = json.loads(GUIDELLM.read_text())
    for k, r in enumerate(data["benchmarks"][0]["requests"]["successful"][:3]):
        r["info"]["timings"]["targeted_start"] = -0.87 + k
    run_dir, run = import_one(write_json(tmp_path / "guidellm.json", data), tmp_path / "out")
    rows = read_records(run_dir / "requests.jsonl")
    assert all(0 <= r["arrival_s"] < 10 and r["queue_s"] >= 0 for r in rows)
    assert "3 of 10 requests have no usable targeted_start" in run["source"]["notes"][0]


def _old_schema(tmp_path: Path) -> Path:
    data = json.loads(GUIDELLM.read_text())
    data["metadata"]["version"], data["metadata"]["guidellm_version"] = 1, "0.3.0"
    return write_json(tmp_path / "old.json", data)


def _sampled(tmp_path: Path) -> Path:
    data = json.loads(GUIDELLM.read_text())
    data["benchmarks"][0]["requests"]["successful"] = data["benchmarks"][0]["requests"]["successful"][:4]
    return write_json(tmp_path / "sampled.json", data)


@pytest.mark.parametrize(
    "make, message",
    [
        (_old_schema, "guidellm report schema version 1 (guidellm 0.3.0); benchctl reads version 2 (guidellm 0.8)"),
        (_sampled, "keeps 5 of 10 requests: rerun guidellm without --metrics sample_size"),
    ],
)
def test_bad_file_is_one_clear_line_and_writes_nothing(tmp_path, make, message):
    out = tmp_path / "results"
    with pytest.raises(ImportFormatError) as info:
        importers.import_result(make(tmp_path), output_dir=out)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()
