"""exllamav2: refused cleanly without CUDA; its request -> job mapping and result parsing work without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from backends.exllamav2 import BACKEND, ResultCollector, job_kwargs
from benchctl.envinfo import cuda_present

no_cuda = pytest.mark.skipif(cuda_present(), reason="this host has CUDA: exllamav2 is not refused here")


def benchctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        check=False,
        args=[sys.executable, "-m", "benchctl", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )


@no_cuda
def test_backends_lists_it_unavailable_with_the_reason():
    rows = {r["name"]: r for r in json.loads(benchctl("backends", "--json").stdout)}
    assert rows["exllamav2"]["available"] is False
    assert rows["exllamav2"]["reason"] == "needs an NVIDIA GPU with CUDA; none found on this machine"
    assert set(rows["exllamav2"]["capabilities"]) >= {"offline", "batch_size", "per_token_times", "needs_cuda"}


@no_cuda
def test_run_exits_2_with_one_line():
    result = benchctl(
        "run", "--backend", "exllamav2", "--dataset", "random", "--num-prompts", "2", "--output-dir", os.devnull
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        (
            "benchctl: error: backend 'exllamav2' is unavailable here: needs an NVIDIA GPU with CUDA; "
            "none found on this machine"
        )
    ], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def _request(rid: str, prompt_len: int, output_len: int) -> dict:
    return {
        "request_id": rid,
        "prompt_token_ids": list(range(10, 10 + prompt_len)),
        "output_len": output_len,
        "arrival_s": 0.0,
    }


def test_job_has_exact_length_and_no_stop_conditions():
    kwargs = job_kwargs(_request("req-7", 5, 12))
    assert kwargs["max_new_tokens"] == kwargs["min_new_tokens"] == 12
    assert kwargs["stop_conditions"] is None  # EOS and stop strings never end a benchmark request early
    assert kwargs["identifier"] == "req-7"


def _stream(rid: str, tokens: int, eos: bool = False, **extra) -> dict:
    result = {"stage": "streaming", "identifier": rid, "eos": eos, "serial": 0, **extra}
    if tokens:
        result["token_ids"] = [list(range(tokens))]  # the engine gives a (1, n) tensor
    return result


def test_results_become_records_with_chunked_token_times():
    a, b = _request("a", 4, 3), _request("b", 6, 2)
    collector = ResultCollector([a, b])
    collector.started("a", 0.0)
    collector.started("b", 0.01)
    assert (
        collector.feed(
            [
                {"stage": "started", "identifier": "a"},
                {"stage": "prefill", "identifier": "b", "curr_progress": 3, "max_progress": 6},
            ],
            0.1,
        )
        == []
    )
    assert collector.feed([_stream("a", 1), _stream("b", 1)], 0.2) == []
    done = collector.feed(
        [
            _stream("a", 2, eos=True, eos_reason="max_new_tokens", new_tokens=3, time_prefill=0.15),
            _stream("b", 1, eos=True, eos_reason="max_new_tokens", new_tokens=2),
        ],
        0.3,
    )
    records = {r["request_id"]: r for r in done}
    assert records["a"]["output_tokens"] == 3 and records["a"]["expected_output_tokens"] == 3
    assert records["a"]["token_times_s"] == [0.2, 0.3] and records["a"]["chunk_tokens"] == [1, 2]
    assert records["a"]["first_token_s"] == 0.2 and records["a"]["finish_s"] == 0.3
    assert records["a"]["start_s"] == 0.0 and records["a"]["error"] is None
    assert records["a"]["extra"]["engine_time_prefill_s"] == 0.15
    assert records["b"]["token_times_s"] == [0.2, 0.3] and records["b"]["chunk_tokens"] is None  # 1 token each
    assert records["b"]["prompt_tokens"] == 6 and records["b"]["start_s"] == 0.01
    assert collector.finished == 2


def test_a_short_job_is_an_error_not_a_silent_success():
    collector = ResultCollector([_request("a", 4, 5)])
    (rec,) = collector.feed([_stream("a", 2, eos=True, eos_reason="stop_token")], 0.5)
    assert rec["output_tokens"] == 2
    assert "produced 2 tokens, expected 5 (eos_reason=stop_token)" in rec["error"]


def test_unknown_job_is_a_bug():
    with pytest.raises(RuntimeError, match="unknown job 'zzz'"):
        ResultCollector([_request("a", 4, 5)]).feed([_stream("zzz", 1)], 0.1)


def test_backend_declares_cuda_and_its_managed_env():
    assert BACKEND.capabilities.needs_cuda and BACKEND.managed_env == "exllamav2"
    assert BACKEND.worker == "backends.exllamav2:ExLlamaV2Worker"
