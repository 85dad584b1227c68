"""The harness process never imports an engine, torch or transformers: a real `benchctl run` in a subprocess,
read from the interpreter's own import log (-X importtime). Conversion, hwinfo and bench-attention have theirs
beside their own tests (test_models, test_hwinfo, test_kernelbench)."""

from __future__ import annotations

import json
import os

import pytest
from harness_imports import engine_modules, run_with_importtime

from benchctl.worker.host import REPO_ROOT

RUN = "import sys\nfrom benchctl.cli import main\nsys.exit(main(sys.argv[1:] or {argv!r}))\n"


def _run(argv: list[str], env: dict[str, str]):
    return run_with_importtime(RUN.format(argv=argv), env=env)


def _finished_run(out_dir) -> dict:
    (run_dir,) = out_dir.iterdir()
    return json.loads((run_dir / "run.json").read_text())


def test_a_run_imports_no_engine_torch_or_transformers(tmp_path, model_dir):
    env = {
        "BENCHCTL_CACHE_DIR": str(tmp_path / "cache"),
        "BENCHCTL_BACKENDS": "fake=tests.harness.sweep_fakes:BACKEND",
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH")))),
    }
    proc, modules = _run(
        [
            "run",
            "--backend",
            "fake",
            "--model",
            str(model_dir),
            "--dataset",
            "random",
            "--num-prompts",
            "2",
            "--random-input-len",
            "8",
            "--random-output-len",
            "4",
            "--engine-arg",
            "step_ms=1",
            "--output-dir",
            str(tmp_path / "results"),
        ],
        env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _finished_run(tmp_path / "results")
    assert run["status"] == "completed" and run["summary"]["completed"] == 2
    assert {"benchctl.run.offline", "benchctl.workload", "benchctl.metrics"} <= modules
    assert engine_modules(modules) == []


def test_the_reference_adapter_checks_engine_args_without_torch():
    code = (
        "from backends.reference import BACKEND\nBACKEND.check_args({'max_num_seqs': '4', 'gemm': 'torch'})\n"
        "BACKEND.check_args({})\n"
    )
    proc, modules = run_with_importtime(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert engine_modules(modules) == ["reference_engine", "reference_engine.config"]  # stdlib only


@pytest.mark.slow
def test_the_first_reference_run_converts_and_the_harness_imports_no_engine(tmp_path):
    """issue 21's check: an empty cache (the bundled GGUF is converted), the reference engine, a small run."""
    env = {"BENCHCTL_CACHE_DIR": str(tmp_path / "cache")}
    proc, modules = _run(
        [
            "run",
            "--dataset",
            "random",
            "--num-prompts",
            "2",
            "--random-input-len",
            "8",
            "--random-output-len",
            "2",
            "--output-dir",
            str(tmp_path / "results"),
        ],
        env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "converting SmolLM2-135M-Instruct.Q4_1.gguf to fp32 safetensors" in proc.stderr
    run = _finished_run(tmp_path / "results")
    assert run["status"] == "completed" and run["summary"]["completed"] == 2
    assert run["engine"]["engine"] == "reference"
    assert {"benchctl.models", "benchctl.run.offline"} <= modules and engine_modules(modules) == []
