"""Fixtures of the harness tests: texts of an exact token count, JSON files in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def text_of(tok):
    """text_of(n, word) -> a text the real tokenizer counts as exactly n tokens ("cat cat cat ...")."""

    def make(n: int, word: str = "hello") -> str:
        text = " ".join([word] * n)
        assert len(tok.encode(text)) == n, f"{word!r} x {n} is not {n} tokens"
        return text

    return make


@pytest.fixture
def write_json(tmp_path):
    """Write a JSON value (or raw text) to tmp_path/name and return the path."""

    def write(name: str, value, raw: bool = False) -> Path:
        path = tmp_path / name
        path.write_text(value if raw else json.dumps(value), encoding="utf-8")
        return path

    return write
