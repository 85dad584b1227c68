"""A dummy model as a GGUF file, for llama.cpp: the config's Llama shapes with seeded random F16 weights and the
dummy folder's tokenizer, written once next to the config (`model-f16-seed<N>.gguf`) with the `gguf` package.

Plain Llama only (no RoPE scaling, no attention biases, no sliding window): other configs are refused in one line.
numpy and gguf are imported here, when a llama.cpp run on a dummy model asks for the file, and nowhere else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

UNSUPPORTED = ("rope_scaling", "sliding_window", "attention_bias")  # config keys llama.cpp would need more for


def gguf_path(hf_dir: Path, seed: int) -> Path:
    return hf_dir / f"model-f16-seed{seed}.gguf"


def unsupported_reason(config: dict[str, Any]) -> str | None:
    if config.get("model_type", "llama") != "llama":
        return f"model_type {config.get('model_type')!r} (only llama)"
    found = [k for k in UNSUPPORTED if config.get(k)]
    return f"{', '.join(found)} in its config" if found else None


def tensor_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """llama.cpp's tensor names for the config, each with its shape as a checkpoint stores it (out, in)."""
    h, inter, heads = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or h // heads
    q, kv = heads * head_dim, config.get("num_key_value_heads", heads) * head_dim
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (config["vocab_size"], h), "output_norm.weight": (h,)}
    if not config.get("tie_word_embeddings"):
        shapes["output.weight"] = (config["vocab_size"], h)
    for i in range(config["num_hidden_layers"]):
        shapes.update(
            {
                f"blk.{i}.attn_norm.weight": (h,),
                f"blk.{i}.ffn_norm.weight": (h,),
                f"blk.{i}.attn_q.weight": (q, h),
                f"blk.{i}.attn_k.weight": (kv, h),
                f"blk.{i}.attn_v.weight": (kv, h),
                f"blk.{i}.attn_output.weight": (h, q),
                f"blk.{i}.ffn_gate.weight": (inter, h),
                f"blk.{i}.ffn_up.weight": (inter, h),
                f"blk.{i}.ffn_down.weight": (h, inter),
            }
        )
    return shapes


def write_random_gguf(hf_dir: Path, seed: int) -> Path:
    """The folder's GGUF (written on first use; renamed into place when complete)."""
    target = gguf_path(hf_dir, seed)
    if target.is_file():
        return target
    import gguf
    import numpy as np

    config = json.loads((hf_dir / "config.json").read_text())
    tokenizer = json.loads((hf_dir / "tokenizer.json").read_text())
    h, heads = config["hidden_size"], config["num_attention_heads"]
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(f"benchctl dummy ({hf_dir.name})")
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(h)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads", heads))
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_rope_dimension_count(config.get("head_dim") or h // heads)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    add_tokenizer(writer, tokenizer, config)
    rng = np.random.default_rng(seed)
    std = float(config.get("initializer_range", 0.02))
    for name, shape in tensor_shapes(config).items():
        if len(shape) == 1:  # norms: ones, F32 as llama.cpp's converter writes them
            writer.add_tensor(name, np.ones(shape, dtype=np.float32))
        else:
            writer.add_tensor(name, (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, target)
    return target


def add_tokenizer(writer: Any, tokenizer: dict[str, Any], config: dict[str, Any]) -> None:
    """The BPE tokenizer as llama.cpp reads it (SmolLM2's pre-tokenizer); ids past the tokenizer's own up to the
    config's vocab_size are unused padding tokens."""
    import gguf

    vocab = tokenizer["model"]["vocab"]
    special = {t["id"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    tokens = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    for i in range(len(tokens), config["vocab_size"]):
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config.get("bos_token_id", 1))
    writer.add_eos_token_id(config.get("eos_token_id", 2))
    writer.add_pad_token_id(config.get("pad_token_id", 2))
    writer.add_add_bos_token(False)
    writer.add_add_space_prefix(False)
