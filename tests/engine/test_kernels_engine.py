"""End to end: the reference engine with attention_backend="triton" (Triton's CPU interpreter) and "cpu" (the C++
kernels) gives the same greedy tokens as with attention_backend="torch", on a tiny random-weight Llama (2 layers,
GQA, head_dim 64).

Both engines run in one subprocess with TRITON_INTERPRET=1 (it must be set before triton is imported); the torch
engine there never touches Triton. The model folder is built with transformers in tmp_path, with the bundled
model's tokenizer files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# Prompt lengths around the block size of 16: 1, one block exactly, one past it, and three blocks plus some.
PROMPT_LENGTHS = (1, 16, 17, 40)
MAX_TOKENS = 8


def _make_tiny_llama(model_dir: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from benchctl.models import resolve_model

    bundled = resolve_model("smollm2-135m").hf_dir
    config = LlamaConfig(
        vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=2, initializer_range=0.1,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        if (bundled / name).exists() and not (model_dir / name).exists():
            shutil.copy(bundled / name, model_dir / name)


def _main(model_dir: str) -> None:
    """Print {"torch": [...], "cpu": [...], "triton": [...], "backends": [...]} for the prompts of PROMPT_LENGTHS."""
    import torch

    from reference_engine import LLMEngine, SamplingParams

    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 49152, (n,), generator=gen).tolist() for n in PROMPT_LENGTHS]
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    result: dict[str, object] = {"backends": []}
    for backend in ("torch", "cpu", "triton"):
        engine = LLMEngine(
            model_dir,
            attention_backend=backend,
            device="cpu",
            dtype="float32",
            block_size=16,
            max_model_len=128,
            kv_cache_bytes=64 * 1024 * 1024,
            enable_prefix_caching=False,
        )
        result["backends"].append(engine.attention_backend)
        result[backend] = [out.token_ids for out in engine.generate(prompts, params)]
    print(json.dumps(result), flush=True)


def test_triton_backend_matches_torch_backend_greedy_tokens(tmp_path: Path) -> None:
    pytest.importorskip("triton")
    pytest.importorskip("numpy")
    model_dir = tmp_path / "tiny-llama"
    _make_tiny_llama(model_dir)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, __file__, str(model_dir)], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-6000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backends"] == ["torch", "cpu", "triton"]
    assert [len(tokens) for tokens in result["torch"]] == [MAX_TOKENS] * len(PROMPT_LENGTHS)
    assert len({t for tokens in result["torch"] for t in tokens}) > MAX_TOKENS  # not one repeated token
    assert result["triton"] == result["torch"]
    assert result["cpu"] == result["torch"]


if __name__ == "__main__":
    _main(sys.argv[1])
