"""What the importer tests share: the sample result files and a one-call import.

The samples in tests/harness/data/import/ were written by the real tools against benchctl's fake server (see the
README there). A test that needs a variant changes a copy the way the tool itself would have written it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchctl import importers, store

DATA = Path(__file__).parent / "data" / "import"
VLLM = DATA / "vllm_bench_serve.json"
GUIDELLM = DATA / "guidellm_benchmarks.json"
AIPERF = DATA / "aiperf" / "profile_export.jsonl"


def import_one(path: Path, out: Path, tool: str | None = None) -> tuple[Path, dict]:
    """Import a file holding one benchmark: its run folder and run.json."""
    [run_dir] = importers.import_result(path, tool=tool, output_dir=out)
    return run_dir, store.load_run(run_dir)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def check_complete_folder(run_dir: Path, run: dict, sample: Path, tool: str, requests: int, failed: int) -> None:
    """A run folder compare/report/regress can read: run.json with source, one record per request, parquet."""
    from benchctl.records import read_records

    assert run["status"] == "completed" and run["config"]["mode"] == "serving"
    source = run["source"]
    assert source["tool"] == tool
    assert source["sha256"] == importers.common.sha256_file(sample) and source["bytes"] == sample.stat().st_size
    assert source["reconstructed"]["first_token_s"]  # each derived field says how it was derived
    rows = read_records(run_dir / "requests.jsonl")
    assert len(rows) == requests == run["summary"]["num_requests"] == run["workload"]["num_requests"]
    assert len({r["request_id"] for r in rows}) == requests  # exactly one record per request
    assert run["summary"]["failed"] == failed == sum(r["error"] is not None for r in rows)
    assert (run_dir / "requests.parquet").is_file()


def check_recomputation(run: dict) -> list[dict]:
    """Every figure whose definition benchctl shares equals benchctl's recomputation; the rest say why they differ.
    Returns the rows."""
    rows = importers.tool_vs_benchctl(run)
    same = [r for r in rows if r["same_definition"]]
    assert {"completed", "total_output_tokens", "ttft_mean_ms", "tpot_mean_ms"} <= {r["metric"] for r in same}
    assert [(r["metric"], r["tool_value"], r["benchctl_value"]) for r in same if not r["agrees"]] == []
    assert all(r["why"] and r["benchctl_value"] is not None for r in rows if not r["same_definition"])
    [duration] = [r for r in rows if r["metric"] == "duration_s"]  # each tool's own window: really different
    assert not duration["same_definition"] and not duration["agrees"]
    return rows
