"""NVTX ranges of the reference engine: off unless asked (nvtx not even imported), and when on, every step pushes
engine.step with schedule / forward / sample / detokenize nested inside it, each popped."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reference_engine import LLMEngine, SamplingParams, profiling

STEP = ["engine.schedule", "engine.forward", "engine.sample", "engine.detokenize"]


class RangeRecorder:
    """Stands in for the nvtx module: records (event, name, depth) so nesting can be asserted."""

    def __init__(self):
        self.events: list[tuple[str, str, int]] = []
        self.stack: list[str] = []

    def push_range(self, name: str) -> None:
        self.events.append(("push", name, len(self.stack)))
        self.stack.append(name)

    def pop_range(self) -> None:
        self.events.append(("pop", self.stack.pop(), len(self.stack)))


@pytest.fixture
def recorder(monkeypatch):
    rec = RangeRecorder()
    monkeypatch.setattr(profiling, "_nvtx", rec)
    yield rec
    assert not rec.stack, f"ranges left open: {rec.stack}"


def test_off_by_default_nvtx_is_not_imported():
    code = (
        "import sys; from reference_engine import profiling as p\n"
        "with p.annotate('engine.step'): pass\n"
        "print(p.nvtx_enabled(), p.nvtx_requested(), 'nvtx' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != profiling.NVTX_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr
    env[profiling.NVTX_ENV] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["False", "True", "False"], out.stderr  # requested, enabled by the engine


def test_every_step_nests_its_four_ranges(model_dir, recorder):
    engine = LLMEngine(model_dir, kv_cache_bytes=2**24, max_model_len=128)
    try:
        engine.generate([[1, 2, 3, 4], [5, 6, 7]], SamplingParams(max_tokens=3, ignore_eos=True, temperature=0))
    finally:
        engine.close()
    steps = engine.stats.num_steps
    assert steps >= 3
    expected = []
    for _ in range(steps):
        expected.append(("push", "engine.step", 0))
        for name in STEP:
            expected += [("push", name, 1), ("pop", name, 1)]
        expected.append(("pop", "engine.step", 0))
    assert recorder.events == expected


def test_engine_option_and_environment_enable_the_real_package(model_dir, monkeypatch):
    pytest.importorskip("nvtx")
    monkeypatch.setattr(profiling, "_nvtx", None)
    monkeypatch.delenv(profiling.NVTX_ENV, raising=False)
    engine = LLMEngine(model_dir, kv_cache_bytes=2**24, max_model_len=128)
    assert not profiling.nvtx_enabled() and engine.info()["nvtx"] is False
    engine = LLMEngine(model_dir, kv_cache_bytes=2**24, max_model_len=128, nvtx=True)
    assert profiling.nvtx_enabled() and engine.info()["nvtx"] is True
    # the real nvtx package pushes and pops without a profiler attached (no GPU needed)
    out = engine.generate([[1, 2, 3]], SamplingParams(max_tokens=2, ignore_eos=True, temperature=0))
    assert len(out[0].outputs[0].token_ids) == 2
    profiling.enable_nvtx(False)
    monkeypatch.setenv(profiling.NVTX_ENV, "1")
    LLMEngine(model_dir, kv_cache_bytes=2**24, max_model_len=128)
    assert profiling.nvtx_enabled()
    profiling.enable_nvtx(False)


def test_missing_package_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(profiling, "_nvtx", None)

    def no_nvtx(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(profiling.importlib, "import_module", no_nvtx)
    with pytest.raises(ImportError, match="pip install nvtx"):
        profiling.enable_nvtx()


def test_benchctl_names_the_same_variable():
    from benchctl import profile

    assert profile.NVTX_ENV == profiling.NVTX_ENV
