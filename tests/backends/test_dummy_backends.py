"""A 1B-class dummy model (Llama-3.2-1B's shapes, random weights) runs a few requests on CPU with the reference and HF
backends; run.json says its weights are random."""

from __future__ import annotations

import json

import pytest

from benchctl.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "hf"])
def test_llama_3_2_1b_dummy_runs_two_requests(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHCTL_CACHE_DIR", str(tmp_path / "cache"))
    args = ["--engine-arg", "max_model_len=64"] + (
        ["--engine-arg", "kv_cache_bytes=8388608"] if backend == "reference" else []
    )
    code = main(
        [
            "run",
            "--backend",
            backend,
            "--model",
            "dummy:llama-3.2-1b",
            "--dataset",
            "random",
            "--num-prompts",
            "2",
            "--random-input-len",
            "8",
            "--random-output-len",
            "3",
            "--output-dir",
            str(tmp_path / "runs"),
            "--no-measure-ceiling",
            "--json",
            *args,
        ]
    )
    assert code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    model = run["config"]["model"]
    assert model["weights"] == "random (dummy)" and model["num_parameters"] == 1_235_814_400
    assert model["config_source"] == "meta-llama/Llama-3.2-1B config.json" and model["seed"] == 0
    if backend == "reference":
        assert run["engine"]["random_weights_seed"] == 0
    else:
        assert run["engine"]["weights"] == "random (dummy)"
    records = [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
    assert len(records) == 2 and [r["output_tokens"] for r in records] == [3, 3]
