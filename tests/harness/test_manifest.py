"""run.json's typed manifest (benchctl/manifest.py): one validating reader, one line for a broken file everywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchctl import manifest, store
from benchctl.cli import main
from benchctl.manifest import ManifestError, RunManifest

# A run.json as benchctl wrote it before schema 2 (a reference-engine baseline of 2026-11-22)
SCHEMA_1_RUN = Path(__file__).resolve().parent / "data" / "manifest" / "schema-1-run.json"
SUMMARY = {
    "num_requests": 4,
    "completed": 4,
    "failed": 0,
    "duration_s": 2.0,
    "request_throughput": 2.0,
    "output_tok_s": 40.0,
    "ttft_s": {"count": 4, "mean": 0.5, "p99": 0.8},
}


def good_run(run_id: str = "20250101-000000-hf-aaaaaa", **changes) -> dict:
    run = {
        "schema_version": 2,
        "run_id": run_id,
        "status": "completed",
        "created_at": "2025-01-01T00:00:00Z",
        "config": {"backend": "hf", "mode": "offline", "model": {"name": "m"}, "engine_args": {}, "slos_ms": {}},
        "workload": {"num_requests": 4, "dataset": "random", "seed": 0, "schedule": {"kind": "all-at-once"}},
        "environment": {"hardware": {}},
        "summary": dict(SUMMARY),
        "timings": {"total_s": 3.0},
    }
    run.update(changes)
    return run


def write(folder: Path, content) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


BROKEN = [  # (run.json content, the one line the reader gives)
    ([], "is not a run manifest: a JSON array, expected an object"),
    ("7", "is not a run manifest: a JSON number, expected an object"),
    ({"status": "completed", "summary": None}, "summary must be an object, got null"),
    ({"status": "completed"}, "a completed run without a summary"),
    (b'{"run_id": "caf\xe9"}', "is not UTF-8 text (byte 0xe9 at offset 15)"),
    ('{"status": "runn', "is not valid JSON"),
    ('{"summary": {"output_tok_s": NaN}}', "is not valid JSON (NaN is not a JSON number)"),
    (good_run(status="done"), "status must be one of running, completed, failed, got 'done'"),
    (good_run(schema_version="2"), "schema_version must be a positive integer, got '2'"),
    (good_run(schema_version=3), "written by a newer benchctl (schema 3; this one reads up to 2)"),
    (good_run(run_id=7), "run_id must be a string, got number"),
    (good_run(config=["hf"]), "config must be an object, got array"),
    (good_run(config={"backend": ["hf"]}), "config.backend must be a string, got array"),
    (good_run(config={"slos_ms": {"ttft": "fast"}}), "config.slos_ms.ttft must be a number, got string"),
    (good_run(workload={"num_requests": "4"}), "workload.num_requests must be an integer, got string"),
    (good_run(environment={"hardware": "x"}), "environment.hardware must be an object, got string"),
    (good_run(summary={**SUMMARY, "completed": 4.0}), "summary.completed must be an integer, got number"),
    (good_run(summary={**SUMMARY, "output_tok_s": "40"}), "summary.output_tok_s must be a number, got string"),
    (good_run(summary={**SUMMARY, "ttft_s": {"count": 4, "p99": [0.8]}}), "summary.ttft_s.p99 must be a number"),
    (good_run(summary={**SUMMARY, "failed": True}), "summary.failed must be an integer, got boolean"),
    (good_run(timings={"total_s": "3"}), "timings.total_s must be a number, got string"),
]


@pytest.mark.parametrize("content, message", BROKEN)
def test_a_broken_run_json_is_one_manifest_error(tmp_path, content, message):
    folder = write(tmp_path / "run", content)
    with pytest.raises(ManifestError) as e:
        store.load_run(folder)
    assert message in str(e.value) and str(folder / "run.json") in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("content, message", [BROKEN[0], BROKEN[2], BROKEN[4], BROKEN[10], BROKEN[17]])
@pytest.mark.parametrize("command", ["show", "compare", "report", "regress"])
def test_every_reader_turns_a_broken_run_json_into_one_line_and_exit_2(tmp_path, capsys, command, content, message):
    good = write(tmp_path / "runs" / "20250101-000000-hf-aaaaaa", good_run())
    bad = write(tmp_path / "runs" / "20250101-000001-hf-bbbbbb", content)
    argv = {
        "show": ["show", str(bad)],
        "compare": ["compare", str(good), str(bad)],
        "report": ["report", str(good), str(bad), "-o", str(tmp_path / "r.html")],
        "regress": ["regress", "--baseline", str(good), "--candidate", str(bad)],
    }[command]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("benchctl: error: ") and message in err
    assert "Traceback" not in err


def test_runs_of_schema_1_still_read(tmp_path, capsys):
    path = tmp_path / "20261122-102803-reference-371358"
    path.mkdir()
    shutil.copy(SCHEMA_1_RUN, path / "run.json")
    data = store.load_run(path)
    assert data == json.loads(SCHEMA_1_RUN.read_text()) and data["schema_version"] == 1  # read as it is on disk
    typed = manifest.read(path)
    assert typed.status == "completed" and typed.run_id == path.name and typed.timings == {}
    assert typed.summary["completed"] == data["summary"]["completed"] == 16
    assert typed.engine == data["engine"] and typed.extra == {}
    assert main(["show", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["output_tok_s"] == data["summary"]["output_tok_s"]


def test_the_manifest_round_trips_and_keeps_keys_it_does_not_know():
    data = good_run(
        engine={"engine": "hf"}, error=None, label=None, finished_at="2025-01-01T00:00:03Z", future_field={"kept": True}
    )
    typed = RunManifest.from_dict(data)
    assert typed.extra == {"future_field": {"kept": True}} and typed.engine == {"engine": "hf"}
    assert typed.to_dict() == data
    running = RunManifest(run_id="r", created_at="2025-01-01T00:00:00Z")
    assert running.to_dict()["status"] == "running" and "summary" not in running.to_dict()
    assert RunManifest.from_dict(running.to_dict()) == running


def test_a_missing_run_json_is_run_not_found(tmp_path):
    with pytest.raises(store.RunNotFound, match="no run.json there") as e:
        store.load_run(tmp_path)
    assert not isinstance(e.value, ManifestError)


def test_a_run_killed_before_it_ended_is_failed_through_its_folder(tmp_path):
    """The one writer also ends a run whose process was killed (a sweep cell at its timeout): with its records."""
    import pandas as pd

    from benchctl.run.folder import RunFolder
    from benchctl.run.sink import finish_record
    from tests.harness.fakes.workers import fake_record

    path = tmp_path / "20250101-000000-fake-aaaaaa"
    path.mkdir()
    running = RunManifest(
        run_id=path.name,
        created_at="2025-01-01T00:00:00Z",
        config={"slos_ms": {}},
        environment={"hardware": {"cpu": "Test CPU"}},
    )
    RunFolder(path, running)._write()
    requests = [
        {"request_id": f"r{i}", "prompt_token_ids": [1, 2, 3], "output_len": 4, "arrival_s": 0.0} for i in range(2)
    ]
    (path / "requests.jsonl").write_text(
        "".join(json.dumps(finish_record(fake_record(r, i))) + "\n" for i, r in enumerate(requests))
    )
    assert RunFolder.open(path).fail_unfinished("cell still running after cell_timeout_s=5; killed")
    run = store.load_run(path)
    assert run["status"] == "failed" and run["error"] == "cell still running after cell_timeout_s=5; killed"
    assert run["summary"]["completed"] == 2 and run["finished_at"] and "total_s" not in run["timings"]
    assert pd.read_parquet(path / "requests.parquet")["request_id"].tolist() == ["r0", "r1"]
    assert not RunFolder.open(path).fail_unfinished("again")  # an ended run stays as it ended
    assert store.load_run(path)["error"] == "cell still running after cell_timeout_s=5; killed"
