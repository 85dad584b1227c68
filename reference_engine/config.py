"""Engine options (`EngineConfig`) and the model's shape (`ModelConfig`, read from config.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

_CHOICES = {
    "kv_layout": ("paged", "contiguous"),
    "attention_backend": ("auto", "torch", "cpu", "triton", "cuda"),
    "dtype": ("auto", "float32", "float16", "bfloat16"),
    "sampler": ("batched", "per_seq"),
    "host_transfer": ("coalesced", "per_seq"),
    "detokenize": ("inline", "thread", "off"),
    "gemm": ("auto", "torch", "onednn", "packed"),
    "speculative": ("off", "ngram"),
}


@dataclass(slots=True)
class ModelConfig:
    """The few numbers of a Llama checkpoint the engine needs."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    eos_token_ids: tuple[int, ...]
    rope_scaling: dict | None = None  # Llama 3.1+'s "llama3" frequency scaling (factor, low/high_freq_factor, ...)
    initializer_range: float = 0.02  # std of random weights (a dummy model)

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> ModelConfig:
        raw = json.loads((Path(model_dir) / "config.json").read_text())
        archs = raw.get("architectures") or []
        if raw.get("model_type") not in ("llama", None) and "LlamaForCausalLM" not in archs:
            raise ValueError(f"{model_dir}: only the Llama architecture is supported, got {raw.get('model_type')!r}")
        # transformers 5.x moved rope_theta into rope_parameters; 4.x keeps it at the top level.
        rope = raw.get("rope_parameters") or {}
        theta = rope.get("rope_theta") or raw.get("rope_theta") or 10000.0
        scaling = raw.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
        if scaling and scaling.get("rope_type", scaling.get("type")) != "llama3":
            raise ValueError(f"{model_dir}: only unscaled or llama3-scaled RoPE is supported")
        num_heads = raw["num_attention_heads"]
        eos = raw.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        return cls(
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=raw.get("num_key_value_heads", num_heads),
            head_dim=raw.get("head_dim") or raw["hidden_size"] // num_heads,
            vocab_size=raw["vocab_size"],
            rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta),
            max_position_embeddings=raw.get("max_position_embeddings", 2048),
            tie_word_embeddings=raw.get("tie_word_embeddings", False),
            eos_token_ids=eos_ids,
            rope_scaling=dict(scaling) if scaling else None,
            initializer_range=raw.get("initializer_range", 0.02),
        )


@dataclass(slots=True)
class EngineConfig:
    """Everything `LLMEngine(model_dir, **options)` accepts, with its default."""

    model_dir: str
    device: str = "auto"  # "auto" -> cuda when available, else cpu
    dtype: str = "auto"  # "auto" -> float32 on CPU, bfloat16 (or float16) on CUDA
    max_model_len: int = 2048  # prompt + output tokens of one sequence
    max_num_seqs: int = 64  # sequences in one step
    max_num_batched_tokens: int = 512  # tokens in one step (prefill chunks + decodes)
    enable_chunked_prefill: bool = True
    block_size: int = 16  # tokens per KV block
    kv_cache_bytes: int | None = None  # K and V of all layers; None -> kv_cache_memory_fraction
    kv_cache_memory_fraction: float | None = None  # of free memory; None -> 0.05 on CPU, 0.8 on CUDA
    kv_layout: str = "paged"  # "contiguous": each sequence reserves max_model_len slots up front
    enable_prefix_caching: bool = True
    watermark: float = 0.01  # fraction of blocks new prefills may not take, so decodes can grow
    attention_backend: str = "auto"
    # projections: "torch" (x @ W), "onednn" (prepacked oneDNN linear), "packed" (a CPU kernel over weights packed in
    # column panels); auto -> packed on CPU fp32 (onednn if the CPU kernels do not build)
    gemm: str = "auto"
    # with gemm=packed on a CPU float32 model: the GGUF file the float32 weights were dequantized from. Decode steps
    # of <= 16 rows then stream its Q4_1/Q8_0 blocks, expanded in the kernel to exactly the float32 weights (checked
    # bit for bit at load). "auto": the source benchctl's conversion recorded in model_dir (or model_dir's only
    # .gguf); "none": float32 panels only; or a path (an error if its blocks do not reproduce the weights)
    gguf_file: str = "auto"
    sampler: str = "batched"
    host_transfer: str = "coalesced"
    detokenize: str = "inline"
    # "ngram": prompt-lookup speculative decoding for greedy sequences (reference_engine/speculative.py): up to
    # num_speculative_tokens drafted from the sequence's own earlier tokens, checked in one forward, same output
    speculative: str = "off"
    num_speculative_tokens: int = 3
    # what a step costs apart from its rows, in rows: the weight given to a draft row's cost when draft lengths are
    # chosen (speculative.plan_draft_lengths). A decode step on the 2-core Xeon of issue 10 costs ~40 ms + ~1.7 ms
    # per row: 24. Where a step costs about the same from 1 to 64 rows (a GPU), set it in the hundreds.
    speculative_overhead_rows: float = 24.0
    prompt_lookup_min: int = 1
    prompt_lookup_max: int = 3
    seed: int = 0  # for requests without their own seed
    nvtx: bool = False  # also emit NVTX ranges (reference_engine.profiling; REFERENCE_ENGINE_NVTX=1 does too)

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        for name in (
            "max_model_len",
            "max_num_seqs",
            "max_num_batched_tokens",
            "block_size",
            "num_speculative_tokens",
            "prompt_lookup_min",
            "prompt_lookup_max",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.speculative_overhead_rows >= 0:  # (NaN too)
            raise ValueError(f"speculative_overhead_rows must be >= 0, got {self.speculative_overhead_rows}")
        if self.gguf_file not in ("auto", "none") and not Path(self.gguf_file).expanduser().is_file():
            raise ValueError(f"gguf_file={self.gguf_file!r}: no such file (or 'auto', 'none')")
        if self.prompt_lookup_min > self.prompt_lookup_max:
            raise ValueError(
                f"prompt_lookup_min={self.prompt_lookup_min} is above prompt_lookup_max={self.prompt_lookup_max}"
            )
        if not self.enable_chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError("without chunked prefill, max_num_batched_tokens must be >= max_model_len")
        if self.kv_layout == "contiguous" and self.enable_prefix_caching:
            # A contiguous reservation belongs to one sequence; there is nothing to share.
            self.enable_prefix_caching = False

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "model_dir"]
