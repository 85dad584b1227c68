"""scripts/gpu-check --dry-run: the GPU check's plan, its imports and its commands, checked on CPU (CI runs this, so
that the check's first run on a GPU is not its first run)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check"


def load_script(monkeypatch):
    loader = SourceFileLoader("gpu_check", str(SCRIPT))
    module = module_from_spec(spec_from_loader("gpu_check", loader))
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # dataclasses look their module up while it loads
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_plan(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", str(out)], capture_output=True, text=True, timeout=900
    )
    return done, json.loads((out / "plan.json").read_text())


def test_dry_run_passes_and_checks_everything(dry_plan):
    done, plan = dry_plan
    assert done.returncode == 0, done.stdout + done.stderr
    checks = plan["checks"]
    assert plan["ok"] and all(checks[k]["ok"] for k in ("budget", "imports", "commands", "gpu_tests"))
    assert checks["budget"]["total_timeout_s"] <= 480 == plan["budget_s"]
    assert checks["gpu_tests"]["collected"] >= 30  # paged attention and fused ops, CUDA and Triton, three dtypes
    assert {"reference_engine.kernels.cuda_ops", "backends.hf", "benchctl.worker.hwprobe"} <= set(
        checks["imports"]["modules"]
    )
    assert set(checks["commands"]["checked"]) >= {"reference-paged", "hf", "profile-torch", "profile-ncu"}


def test_the_plan_is_the_one_the_issue_asks_for(dry_plan):
    _, plan = dry_plan
    steps = {s["name"]: s for s in plan["steps"]}
    assert list(steps)[:3] == ["environment", "hwinfo", "kernels"] and list(steps)[-2:] == ["compare", "report"]
    assert "-m" in steps["kernels"]["argv"] and "gpu" in steps["kernels"]["argv"]
    for name in (
        "reference-paged",
        "hf",
        "reference-contiguous",
        "reference-sampler-per-seq",
        "reference-transfer-per-seq",
    ):
        argv = steps[name]["argv"]
        assert argv[argv.index("--model") + 1] == "dummy:llama-2-7b" and steps[name]["benchmark"]
        assert argv[argv.index("--num-prompts") + 1] == "512" and "dtype=bfloat16" in argv
    assert "kv_layout=contiguous" in steps["reference-contiguous"]["argv"]
    assert "sampler=per_seq" in steps["reference-sampler-per-seq"]["argv"]
    assert "host_transfer=per_seq" in steps["reference-transfer-per-seq"]["argv"]
    assert steps["profile-torch"]["env"] == {"REFERENCE_ENGINE_NVTX": "1"}
    assert "torch" in steps["profile-torch"]["argv"] and steps["profile-ncu"]["tools"] == ["ncu"]
    assert steps["compare"]["argv"] == ["benchctl", "compare", "{runs}"]


def test_a_broken_command_fails_the_dry_run(tmp_path, monkeypatch):
    module = load_script(monkeypatch)
    good = module.plan(tmp_path)

    def broken(out, scale=module.GPU):
        steps = list(good)
        ref = next(s for s in steps if s.name == "reference-paged")
        steps.append(module.Step("typo", "", ["benchctl", "run", "--num-prompt", "3"], 1))
        steps.append(module.Step("bad-arg", "", [*ref.argv, "--engine-arg", "kv_layout=diagonal"], 1))
        short = [a.replace("max_model_len=512", "max_model_len=300") for a in ref.argv]
        steps.append(module.Step("short", "", short, 1))
        return steps

    monkeypatch.setattr(module, "plan", broken)
    assert module.dry_run(tmp_path / "out") == 1
    problems = json.loads((tmp_path / "out" / "plan.json").read_text())["checks"]["commands"]["problems"]
    assert any(p.startswith("typo:") and "--num-prompt" in p for p in problems)
    assert any(p.startswith("bad-arg:") and "kv_layout" in p for p in problems)
    assert any(p.startswith("short:") and "max_model_len 300 < the longest request (512 tokens)" in p for p in problems)


def test_rehearsal_scale_keeps_the_steps(tmp_path, monkeypatch):
    module = load_script(monkeypatch)
    gpu, toy = module.plan(tmp_path), module.plan(tmp_path, module.REHEARSE)
    assert [s.name for s in gpu] == [s.name for s in toy]
    toy_ref = next(s for s in toy if s.name == "reference-paged").argv
    assert toy_ref[toy_ref.index("--model") + 1] == "dummy:smollm2-135m" and "dtype=bfloat16" not in toy_ref
    assert module.expand(["benchctl", "compare", "{runs}"], [Path("/r/a"), Path("/r/b")], [])[-2:] == ["/r/a", "/r/b"]
