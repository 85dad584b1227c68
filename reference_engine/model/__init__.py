"""Model definitions. Only Llama for now."""

from reference_engine.model.llama import LlamaForCausalLM

__all__ = ["LlamaForCausalLM"]
