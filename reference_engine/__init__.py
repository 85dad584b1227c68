"""A paged-attention LLM inference engine that runs on CPU (and CUDA), usable without benchctl.

    from reference_engine import LLMEngine, SamplingParams
    engine = LLMEngine(model_dir, kv_cache_bytes=256 << 20)
    outs = engine.generate(["Hello"], SamplingParams(temperature=0, max_tokens=32))

The names below are imported on first use (PEP 562), so `import reference_engine.config` stays torch-free:
benchctl checks engine options with EngineConfig in a process that never loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> the module that defines it
_EXPORTS = {
    "get_attention_ops": "reference_engine.attention",
    "EngineConfig": "reference_engine.config",
    "ModelConfig": "reference_engine.config",
    "LLMEngine": "reference_engine.llm_engine",
    "SamplingParams": "reference_engine.sampling_params",
    "CompletionOutput": "reference_engine.sequence",
    "RequestOutput": "reference_engine.sequence",
    "RequestStream": "reference_engine.streaming",
    "StreamingEngine": "reference_engine.streaming",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    # `X as X`: re-exported for type checkers (ruff cannot read the computed __all__)
    from reference_engine.attention import get_attention_ops as get_attention_ops
    from reference_engine.config import EngineConfig as EngineConfig
    from reference_engine.config import ModelConfig as ModelConfig
    from reference_engine.llm_engine import LLMEngine as LLMEngine
    from reference_engine.sampling_params import SamplingParams as SamplingParams
    from reference_engine.sequence import CompletionOutput as CompletionOutput
    from reference_engine.sequence import RequestOutput as RequestOutput
    from reference_engine.streaming import RequestStream as RequestStream
    from reference_engine.streaming import StreamingEngine as StreamingEngine


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reference_engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
