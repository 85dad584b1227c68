"""scripts/check_imports.py on small planted trees: each boundary it guards fails when broken, and the real
repository passes."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_imports.py"
spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
check_imports = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_imports)


def tree(root: Path, files: dict[str, str]) -> Path:
    for top in ("benchctl", "backends", "reference_engine"):
        (root / top).mkdir(parents=True, exist_ok=True)
        (root / top / "__init__.py").touch()
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_clean_tree_passes(tmp_path):
    root = tree(tmp_path, {"benchctl/a.py": "from benchctl import b\n", "benchctl/b.py": "import json\n"})
    assert check_imports.check(root) == []


def test_cycle_is_found_through_a_lazy_import(tmp_path):
    root = tree(
        tmp_path,
        {
            "benchctl/run/__init__.py": "",
            "benchctl/run/offline.py": "from benchctl.run.serving import go\n",
            "benchctl/run/serving.py": "def go():\n    from benchctl.run import offline\n",
        },
    )
    assert check_imports.check(root) == [
        "import cycle: benchctl.run.offline -> benchctl.run.serving -> benchctl.run.offline"
    ]


def test_torch_in_the_harness_is_refused_but_not_in_a_child_program(tmp_path):
    root = tree(
        tmp_path,
        {
            "benchctl/metrics.py": "def f():\n    import torch\n",
            "benchctl/worker/__init__.py": "",
            "benchctl/worker/probe.py": "import torch\n",
        },
    )
    problems = check_imports.check(root)
    assert (
        len(problems) == 1
        and "benchctl/metrics.py:2: benchctl.metrics runs in the harness process and imports torch" in problems[0]
    )


def test_a_child_program_imported_by_the_harness_is_refused(tmp_path):
    root = tree(
        tmp_path,
        {
            "benchctl/hwinfo.py": "from benchctl.worker import probe\n",
            "benchctl/worker/__init__.py": "",
            "benchctl/worker/probe.py": "from transformers import AutoModel\n",
        },
    )
    problems = check_imports.check(root)
    assert len(problems) == 1 and "benchctl.worker.probe runs in the harness process" in problems[0]


def test_adapters_and_engine_directions(tmp_path):
    root = tree(
        tmp_path,
        {
            "benchctl/a.py": "from backends.reference import BACKEND\n",
            "reference_engine/llm.py": "from benchctl.metrics import summarize\n",
            "backends/reference.py": "from benchctl.worker.protocol import send\n",
        },
    )
    problems = check_imports.check(root)
    assert len(problems) == 2  # backends/ may use benchctl's worker protocol: that direction is the design
    assert any(
        "benchctl/a.py:1: benchctl.a runs in the harness process and imports backends.reference.BACKEND" in p
        for p in problems
    )
    assert any("reference_engine/llm.py:1: reference_engine imports benchctl.metrics.summarize" in p for p in problems)


def test_long_modules_are_refused(tmp_path):
    root = tree(tmp_path, {"backends/big.py": "x = 1\n" * 401, "reference_engine/big.py": "x = 1\n" * 401})
    assert check_imports.check(root) == ["backends/big.py: 401 lines (at most 400: split it by concept)"]


@pytest.mark.parametrize("planted", ["cycle", "torch"])
def test_the_repository_passes_and_fails_when_planted(tmp_path, planted):
    """The real tree passes; a copy with one planted violation fails with exit code 1."""
    assert subprocess.run([sys.executable, str(SCRIPT), str(REPO)], capture_output=True).returncode == 0
    copy = tmp_path / "repo"
    for top in ("benchctl", "backends", "reference_engine"):
        shutil.copytree(REPO / top, copy / top, ignore=shutil.ignore_patterns("__pycache__", "*.so", "build"))
    if planted == "cycle":
        (copy / "benchctl" / "store.py").write_text(
            (REPO / "benchctl" / "store.py").read_text() + "\n\ndef _planted():\n    from benchctl.run import folder\n"
        )
    else:
        (copy / "benchctl" / "store.py").write_text("import torch\n" + (REPO / "benchctl" / "store.py").read_text())
    result = subprocess.run([sys.executable, str(SCRIPT), str(copy)], capture_output=True, text=True)
    assert result.returncode == 1
    assert ("import cycle:" if planted == "cycle" else "imports torch") in result.stdout
