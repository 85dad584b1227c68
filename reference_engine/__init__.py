"""A paged-attention LLM inference engine that runs on CPU (and CUDA), usable without benchctl.

    from reference_engine import LLMEngine, SamplingParams
    engine = LLMEngine(model_dir, kv_cache_bytes=256 << 20)
    outs = engine.generate(["Hello"], SamplingParams(temperature=0, max_tokens=32))
"""

from reference_engine.attention import get_attention_ops
from reference_engine.config import EngineConfig, ModelConfig
from reference_engine.llm_engine import LLMEngine
from reference_engine.sampling_params import SamplingParams
from reference_engine.sequence import CompletionOutput, RequestOutput
from reference_engine.streaming import RequestStream, StreamingEngine

__all__ = ["CompletionOutput", "EngineConfig", "LLMEngine", "ModelConfig", "RequestOutput", "RequestStream",
           "SamplingParams", "StreamingEngine", "get_attention_ops"]
