"""Fixtures every test tree uses: the bundled model's converted folder and its tokenizer.

Each tree (harness/, engine/, backends/) keeps its own fixtures in its own conftest.py; helpers shared across
trees (engine_envs) sit beside this file, which pytest's `pythonpath` puts on sys.path.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The bundled model's converted folder in the user cache (converted once, outside the tests)."""
    from benchctl.models import resolve_model

    return resolve_model("smollm2-135m").hf_dir


@pytest.fixture(scope="session")
def tok(model_dir):
    """The real SmolLM2 tokenizer: every token length in the workload tests is counted by it."""
    from benchctl.workload import load_tokenizer

    return load_tokenizer(str(model_dir))
