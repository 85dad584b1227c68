"""reference_engine/__init__.py is lazy (PEP 562): its configuration imports without torch, the engine on use."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_config_and_sampling_params_import_without_torch():
    out = _run(
        "import sys\nimport reference_engine.config\nfrom reference_engine import EngineConfig, SamplingParams\n"
        "EngineConfig('model', max_num_seqs=4)\nSamplingParams(temperature=0)\n"
        "print('torch' in sys.modules, sorted(m for m in sys.modules if m.startswith('reference_engine')))"
    )
    assert out == ("False ['reference_engine', 'reference_engine.config', 'reference_engine.sampling_params']")


def test_the_public_names_still_import_from_the_package():
    import reference_engine
    from reference_engine import LLMEngine, StreamingEngine, get_attention_ops
    from reference_engine.llm_engine import LLMEngine as defined

    assert LLMEngine is defined and callable(get_attention_ops) and StreamingEngine.__name__ == "StreamingEngine"
    assert set(reference_engine.__all__) <= set(dir(reference_engine))
    with pytest.raises(AttributeError, match="has no attribute 'Nonesuch'"):
        reference_engine.Nonesuch  # noqa: B018
