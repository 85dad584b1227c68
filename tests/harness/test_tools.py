"""benchctl.tools: pinned environments for guidellm and aiperf, installed with benchctl.engines' machinery."""

from __future__ import annotations

import json

import pytest

from benchctl import engines, tools


def test_pins_and_folder_names():
    guidellm, aiperf = tools.plan("guidellm"), tools.plan("aiperf")
    assert guidellm.requirements[0] == "guidellm==0.8.1" and aiperf.requirements == ("aiperf==0.13.0",)
    # guidellm's unpinned torch would be the CUDA wheel (a 6.0 GB venv); the pin takes the CPU build where offered
    assert "torch==2.13.0" in guidellm.requirements
    assert guidellm.key.startswith("guidellm-0.8.1-any-py") and aiperf.key.startswith("aiperf-0.13.0-any-py")
    with pytest.raises(engines.EngineError, match="unknown tool 'vllm'.*comes with `benchctl engines install vllm`"):
        tools.plan("vllm")


def test_install_goes_under_the_tools_dir_and_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv(tools.TOOLS_DIR_ENV, str(tmp_path))
    tiny = engines.EnginePlan("aiperf", "0.0.0", "any", "json", requirements=("pip",), upgrade_pip=False)
    monkeypatch.setattr(tools, "plan", lambda tool: tiny)  # a real venv with nothing to download
    assert tools.installed("aiperf") is None
    env, reused = tools.install("aiperf")
    assert not reused and env.path == tmp_path / tiny.key
    assert json.loads((env.path / engines.MANIFEST).read_text())["engine"] == "aiperf"
    again, reused = tools.install("aiperf")
    assert reused and again.path == env.path and tools.installed("aiperf").path == env.path
    assert tools.version(env) == "?"  # the tiny plan installed no aiperf distribution
    assert tools.script(env, "aiperf") == env.path / "bin" / "aiperf"
    rows = {r["tool"]: r for r in tools.list_tools()}
    assert rows["aiperf"]["path"] == str(env.path) and rows["aiperf"]["install_s"] is not None
