"""llama.cpp backend, end to end on the bundled model through its managed environment (or this interpreter)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from engine_envs import engine_python

from benchctl.backend import get_backend

pytestmark = pytest.mark.slow

WORKLOAD = [
    "--dataset",
    "random",
    "--num-prompts",
    "6",
    "--random-input-len",
    "32",
    "--random-output-len",
    "12",
    "--random-range-ratio",
    "0.5",
    "--seed",
    "3",
]


@pytest.fixture(scope="module")
def python() -> str:
    return engine_python("llamacpp")


def run(tmp_path: Path, *args: str) -> dict:
    result = subprocess.run(
        check=False,
        args=[
            sys.executable,
            "-m",
            "benchctl",
            "run",
            "--backend",
            "llamacpp",
            *WORKLOAD,
            "--output-dir",
            str(tmp_path),
            "--json",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    run_json = json.loads(result.stdout)
    run_dir = tmp_path / run_json["run_id"]
    rows = [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
    return {"run": run_json, "rows": rows, "workload": run_json["workload"]}


def check_records(result: dict) -> None:
    rows = result["rows"]
    assert result["run"]["status"] == "completed"
    assert len(rows) == result["workload"]["num_requests"] == 6
    assert len({r["output_tokens"] for r in rows}) > 1  # the workload's lengths vary, and each one is honoured
    for r in rows:
        assert r["error"] is None
        assert r["output_tokens"] == r["expected_output_tokens"] == len(r["extra"]["output_token_ids"])
        times = r["token_times_s"]
        assert len(times) == r["output_tokens"] and r["chunk_tokens"] is None  # one time per token
        assert r["start_s"] <= r["extra"]["slot_start_s"] <= r["first_token_s"] == times[0]
        assert times == sorted(times) and r["finish_s"] == times[-1]
        assert len(r["itl_s"]) == r["output_tokens"] - 1


@pytest.fixture(scope="module")
def batched(python, tmp_path_factory) -> dict:
    return run(tmp_path_factory.mktemp("llamacpp-bs4"), "--batch-size", "4")


@pytest.fixture(scope="module")
def sequential(python, tmp_path_factory) -> dict:
    return run(tmp_path_factory.mktemp("llamacpp-bs1"), "--batch-size", "1", "--engine-arg", "flash_attn=off")


def test_batched_run_records(batched):
    check_records(batched)
    engine = batched["run"]["engine"]
    assert engine["slots"] == 4 and engine["kv_unified"] is False
    assert engine["versions"]["llama-cpp-python"] == "0.3.36"
    assert "Q4_1" in engine["precision"]  # the bundled GGUF is Q4_1: the run says so
    assert engine["python"] == get_backend("llamacpp").python()
    stats = batched["run"]["engine_stats"]
    assert stats["peak_active_sequences"] == 4
    # one llama_decode feeds all active sequences: fewer steps than tokens fed one at a time
    total_out = sum(r["output_tokens"] for r in batched["rows"])
    assert stats["decode_tokens_fed"] == total_out - 6  # the last sampled token of a request is never fed
    assert stats["steps"] < stats["decode_tokens_fed"]
    assert stats["prompt_tokens_fed"] == sum(r["prompt_tokens"] for r in batched["rows"])
    # continuous refill: with 6 requests and 4 slots, two requests start after others finish
    late = [
        r for r in batched["rows"] if r["extra"]["slot_start_s"] > min(x["finish_s"] for x in batched["rows"]) - 1e-9
    ]
    assert len(late) == 2


def test_sequential_run_records(sequential):
    check_records(sequential)
    rows = sorted(sequential["rows"], key=lambda r: r["finish_s"])
    assert [r["request_id"] for r in rows] == sorted(r["request_id"] for r in rows)  # one after another
    for a, b in itertools.pairwise(rows):
        assert b["first_token_s"] > a["finish_s"]


def test_sequential_greedy_matches_llama_cpp_python_high_level(sequential, python, tmp_path):
    """Batch size 1 is the path llama.cpp users know: greedy tokens equal `Llama.generate(temp=0)`."""
    run_json = sequential["run"]
    gguf = run_json["config"]["model"]["gguf_path"]
    prompts = _prompts(run_json)
    cases = [
        {
            "request_id": r["request_id"],
            "prompt": prompts[r["request_id"]],
            "n": r["output_tokens"],
            "ours": r["extra"]["output_token_ids"],
        }
        for r in sequential["rows"]
    ]
    script = """
import itertools, json, sys
import llama_cpp.llama_cpp as C
from llama_cpp import Llama
gguf, threads, extra_bufts, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", json.loads(sys.stdin.read())
default_model_params = C.llama_model_default_params
def model_params():  # Llama() has no switch for weight repacking; match the worker's setting
    params = default_model_params()
    params.use_extra_bufts = extra_bufts
    return params
C.llama_model_default_params = model_params
llm = Llama(model_path=gguf, n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads,
            flash_attn=False, verbose=False)
out = {c["request_id"]: list(itertools.islice(llm.generate(c["prompt"], temp=0.0, reset=True), c["n"]))
       for c in cases}
print(json.dumps(out))
"""
    threads = str(run_json["engine"]["threads"])
    extra_bufts = "1" if run_json["engine"]["extra_bufts"] else "0"
    result = subprocess.run(
        check=False,
        args=[python, "-c", script, gguf, threads, extra_bufts],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    reference = json.loads(result.stdout)
    for c in cases:
        assert c["ours"] == reference[c["request_id"]], c["request_id"]


def _prompts(run_json: dict) -> dict[str, list[int]]:
    """The run's prompt token ids, rebuilt from its recorded workload options (the workload is deterministic)."""
    from benchctl.workload import WorkloadOptions, build_workload, load_tokenizer

    opts = run_json["config"]["workload_options"]
    # run.json stores an infinite rate as null (JSON has no inf): leave such fields at their defaults
    options = WorkloadOptions(
        **{k: v for k, v in opts.items() if k in WorkloadOptions.__dataclass_fields__ and v is not None}
    )
    workload = build_workload(options, load_tokenizer(run_json["config"]["model"]["hf_dir"]))
    assert workload.spec()["num_requests"] == run_json["workload"]["num_requests"]
    return {r.request_id: list(r.prompt_token_ids) for r in workload.requests}


def test_model_without_gguf_is_refused(python, tmp_path):
    from benchctl.models import resolve_model

    hf_dir = str(resolve_model("smollm2-135m").hf_dir)  # the converted folder: safetensors, no GGUF
    result = subprocess.run(
        check=False,
        args=[
            sys.executable,
            "-m",
            "benchctl",
            "run",
            "--backend",
            "llamacpp",
            "--model",
            hf_dir,
            "--num-prompts",
            "1",
            "--dataset",
            "random",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1
    assert "llamacpp reads GGUF files: this model has none" in result.stderr
