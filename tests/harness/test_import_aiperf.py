"""benchctl.importers.aiperf: aiperf 0.13 profile_export.jsonl (+ its summary beside it) as a benchctl run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchctl import importers
from benchctl.importers import ImportFormatError
from benchctl.records import read_records
from tests.harness.import_fixtures import AIPERF, check_complete_folder, check_recomputation, import_one

SUMMARY = AIPERF.with_name("profile_export_aiperf.json")


def test_becomes_a_complete_run_folder_with_aiperfs_figures_beside_benchctls(tmp_path):
    assert importers.detect_tool(AIPERF) == "aiperf"
    run_dir, run = import_one(AIPERF, tmp_path)
    check_complete_folder(run_dir, run, AIPERF, "aiperf", requests=12, failed=1)
    source = run["source"]
    assert source["tool_version"] == "0.13.0" and source["summary_file"]["sha256"]
    assert source["command"].startswith("aiperf profile ") and "--request-count 12" in source["command"]
    rows = {r["metric"]: r for r in check_recomputation(run)}
    # aiperf interpolates its percentiles as benchctl does: they coincide too, and its ICL is benchctl's ITL
    assert all(
        rows[m]["same_definition"] and rows[m]["agrees"]
        for m in ("ttft_p50_ms", "ttft_p99_ms", "itl_p90_ms", "e2el_p95_ms")
    )
    assert rows["tpot_mean_ms"]["tool_name"] == "inter_token_latency.avg"


def test_error_record_and_warmup_records(tmp_path):
    lines = AIPERF.read_text().splitlines()
    warm = json.loads(lines[0])
    warm["metadata"]["benchmark_phase"] = "warmup"
    folder = tmp_path / "artifacts"
    folder.mkdir()
    (folder / "profile_export.jsonl").write_text("\n".join([json.dumps(warm), *lines]) + "\n")
    shutil.copy(SUMMARY, folder)
    assert importers.detect_tool(folder) == "aiperf"  # the artifact folder is accepted too
    run_dir, run = import_one(folder, tmp_path / "out")
    assert run["source"]["warmup_records_skipped"] == 1 and run["summary"]["num_requests"] == 12
    [failed] = [r for r in read_records(run_dir / "requests.jsonl") if r["error"]]
    assert "fake failure 500" in failed["error"]


def test_records_without_the_summary_still_import(tmp_path):
    shutil.copy(AIPERF, tmp_path / "profile_export.jsonl")
    run_dir, run = import_one(tmp_path / "profile_export.jsonl", tmp_path / "out")
    assert run["summary"]["completed"] == 11 and run["source"]["figures"] == []
    assert "aiperf's version and own figures unknown" in run["source"]["notes"][0]


def _in_ns(tmp_path: Path) -> Path:
    rows = [json.loads(line) for line in AIPERF.read_text().splitlines()]
    ttft = rows[0]["metrics"]["time_to_first_token"]
    rows[0]["metrics"]["time_to_first_token"] = {"value": ttft["value"] * 1e6, "unit": "ns"}
    path = tmp_path / "profile_export.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (_in_ns, "mismatched units: time_to_first_token in 'ns', benchctl reads 'ms'"),
        (
            lambda tmp: SUMMARY,
            "aiperf's summary has no per-request data; import profile_export.jsonl from the same "
            "folder (aiperf writes it at --export-level records, the default)",
        ),
    ],
)
def test_bad_file_is_one_clear_line_and_writes_nothing(tmp_path, make, message):
    out = tmp_path / "results"
    with pytest.raises(ImportFormatError) as info:
        importers.import_result(make(tmp_path), output_dir=out)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()
