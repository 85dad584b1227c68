"""Fixtures of the reference engine tests: the prompts' token ids and HF transformers' greedy tokens for them."""

from __future__ import annotations

import pytest
from engine_fixtures import NUM_TOKENS, PROMPTS


@pytest.fixture(scope="session")
def prompt_ids(model_dir) -> list[list[int]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return [tok.encode(p).ids for p in PROMPTS]


@pytest.fixture(scope="session")
def hf_greedy(model_dir, prompt_ids) -> list[list[int]]:
    """HF transformers' greedy continuation of each prompt (fp32, eos masked for NUM_TOKENS tokens)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    width = max(len(p) for p in prompt_ids)
    pad = 2
    # Left padding, so all 8 run in one generate() call (tokens are identical to batch size 1 in fp32).
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=NUM_TOKENS,
            min_new_tokens=NUM_TOKENS,
            pad_token_id=pad,
        )
    del model
    return [row[width:].tolist() for row in out]
