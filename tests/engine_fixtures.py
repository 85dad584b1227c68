"""Session fixtures shared by the reference engine tests: the bundled model and HF's greedy tokens for it.

Test modules import the fixtures they use (`from engine_fixtures import model_dir`), which registers them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NUM_TOKENS = 48

# Varied on purpose: prose, code, numbers, non-ASCII, chat markup, one word, repetition, a list.
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "1, 2, 3, 5, 8, 13,",
    "Le chat est assis sur le tapis. Das Wetter ist schön. 東京は",
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
    "Photosynthesis",
    "the cat sat on the mat. the cat sat on the mat. the cat sat on the mat.",
    "Three reasons to learn a second language:\n1.",
]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from benchctl.models import resolve_model

    return resolve_model("smollm2-135m").hf_dir


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
        out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False, max_new_tokens=NUM_TOKENS,
                             min_new_tokens=NUM_TOKENS, pad_token_id=pad)
    del model
    return [row[width:].tolist() for row in out]


def greedy(max_tokens: int = NUM_TOKENS):
    from reference_engine import SamplingParams

    # min_tokens masks eos exactly as HF's min_new_tokens does.
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, min_tokens=max_tokens)
