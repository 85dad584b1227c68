"""TGI, lmdeploy and SGLang presets: launch commands, availability here, and their servers' shapes.

None of the three can run on this machine, so the launch path is exercised with
tests/harness/fakes_serving/preset_server.py standing in for each server (health answers, served model names,
Prometheus names, SSE chunk shapes written from each project's source), under the preset's own health and
metrics routes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import backends.lmdeploy as lmdeploy
import backends.sglang as sglang
import backends.tgi as tgi
import benchctl.run.prepare as run_prepare
from benchctl.backend import Capabilities, get_backend
from benchctl.cli import main
from benchctl.records import read_records
from benchctl.run import RunConfig, run_benchmark
from benchctl.serving.launch import free_port, server_argv
from benchctl.workload import WorkloadOptions

FAKE = Path(__file__).resolve().parent / "fakes_serving" / "preset_server.py"
VALUES = {
    "python": "py",
    "model_dir": "/m",
    "gguf_path": "",
    "model_name": "tiny",
    "host": "127.0.0.1",
    "port": "8000",
    "max_model_len": "2048",
}
PRESETS = {"tgi": tgi.BACKEND, "lmdeploy": lmdeploy.BACKEND, "sglang": sglang.BACKEND}


def test_launch_commands_are_what_each_projects_users_type():
    argv, env = server_argv(
        tgi.BACKEND.server, VALUES, {"max_total_tokens": "4096", "num_shard": "2", "prefix_caching": "0"}
    )
    assert argv == [
        "text-generation-launcher",
        "--model-id",
        "/m",
        "--hostname",
        "127.0.0.1",
        "--port",
        "8000",
        "--max-total-tokens",
        "4096",
        "--num-shard",
        "2",
    ]
    assert env == {"PREFIX_CACHING": "0"}
    argv, env = server_argv(
        lmdeploy.BACKEND.server, VALUES, {"tp": "2", "enable_prefix_caching": "true", "enable_metrics": "false"}
    )
    assert argv == [
        "lmdeploy",
        "serve",
        "api_server",
        "/m",
        "--server-name",
        "127.0.0.1",
        "--server-port",
        "8000",
        "--model-name",
        "tiny",
        "--session-len",
        "2048",
        "--backend",
        "turbomind",
        "--tp",
        "2",
        "--enable-prefix-caching",
    ]  # store_true flags: false leaves them out
    argv, _ = server_argv(sglang.BACKEND.server, VALUES, {"disable_radix_cache": "true", "tp_size": "2"})
    assert argv == [
        "py",
        "-m",
        "sglang.launch_server",
        "--model-path",
        "/m",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--served-model-name",
        "tiny",
        "--context-length",
        "2048",
        "--enable-metrics",
        "--disable-radix-cache",
        "--tp-size",
        "2",
    ]


def test_backends_lists_every_engine_and_says_why_these_cannot_run_here():
    out = subprocess.run(
        [sys.executable, "-m", "benchctl", "backends", "--json"], capture_output=True, text=True, check=True
    ).stdout
    listed = {b["name"]: b for b in json.loads(out)}
    assert {"reference", "hf", "vllm", "llamacpp", "exllamav2", "openai", "tgi", "lmdeploy", "sglang"} <= set(listed)
    for name in ("tgi", "lmdeploy", "sglang"):
        assert listed[name]["available"] is False, name
    assert "needs an NVIDIA GPU" in listed["tgi"]["reason"] and "Intel CPU image" in listed["tgi"]["reason"]
    assert "TurboMind has no CPU backend" in listed["lmdeploy"]["reason"]
    assert "sglang" in listed["sglang"]["reason"]


def test_launching_a_preset_here_is_one_line_and_exit_2(capsys, tmp_path):
    code = main(["run", "--mode", "serving", "--backend", "lmdeploy", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "backend 'lmdeploy' is unavailable here" in err and len(err.strip().splitlines()) == 1
    code = main(["run", "--backend", "tgi", "--output-dir", str(tmp_path)])  # offline: no such thing for a server
    assert code == 2 and "tgi" in capsys.readouterr().err


def _cfg(tmp_path, backend: str, **kw) -> RunConfig:
    workload = WorkloadOptions(
        dataset="random", num_prompts=6, random_input_len=8, random_output_len=5, request_rate=30.0
    )
    return RunConfig(
        backend=backend,
        mode="serving",
        workload=workload,
        output_dir=tmp_path / "out",
        endpoint=kw.pop("endpoint", "completions"),
        **kw,
    )


@pytest.mark.parametrize("flavor", ["tgi", "lmdeploy", "sglang"])
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_launched_preset_health_model_name_metrics_and_stream_shapes(flavor, endpoint, tmp_path, monkeypatch):
    preset = PRESETS[flavor]
    stand_in = dataclasses.replace(
        preset,
        capabilities=dataclasses.replace(preset.capabilities, needs_cuda=False),
        requirements=(),
        executables=(),
        server=dataclasses.replace(
            preset.server, argv=(sys.executable, str(FAKE), flavor, "{port}"), startup_timeout_s=60.0
        ),
    )
    monkeypatch.setattr(run_prepare, "get_backend", lambda name: stand_in)
    run_dir = run_benchmark(_cfg(tmp_path, flavor, endpoint=endpoint))
    run = json.loads((run_dir / "run.json").read_text())
    rows = read_records(run_dir / "requests.jsonl")
    assert run["status"] == "completed" and run["summary"]["completed"] == 6, run.get("error")
    assert (
        run["serving_stats"]["model_name"]
        == {"tgi": "/models/tiny", "lmdeploy": "served-tiny", "sglang": "tiny"}[flavor]
    )
    for r in rows:  # every shape yields exact token counts from the server's usage, one time per token
        assert r["output_tokens"] == r["expected_output_tokens"] == 5 and r["output_tokens_source"] == "usage"
        assert len(r["token_times_s"]) == 5 and r["chunk_tokens"] is None
    if flavor == "sglang":
        assert run["engine"]["startup_s"] >= 0.5  # waited through the 503s of warm-up
    samples = [json.loads(line) for line in (run_dir / "server_metrics.jsonl").read_text().splitlines()]
    names = {name.split("{")[0] for s in samples for name in s.get("metrics", {})}
    expected = {
        "tgi": {"tgi_batch_current_size", "tgi_queue_size"},
        "lmdeploy": {"lmdeploy:num_requests_running", "lmdeploy:num_requests_waiting", "lmdeploy:gpu_cache_usage_perc"},
        "sglang": {
            "sglang:num_running_reqs",
            "sglang:num_queue_reqs",
            "sglang:token_usage",
            "sglang:cache_hit_rate",
            "sglang:num_retracted_reqs",
        },
    }[flavor]
    assert names == expected  # kept exactly the preset's series, nothing unrelated


def test_attaching_to_a_running_preset_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(FAKE), "tgi", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("listening on")
        run_dir = run_benchmark(_cfg(tmp_path, "tgi", base_url=f"http://127.0.0.1:{port}"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["config"]["backend"] == "tgi"
    assert get_backend("tgi").capabilities == Capabilities(
        offline=False, serving=True, per_token_times=True, arrivals=True, needs_cuda=True
    )
