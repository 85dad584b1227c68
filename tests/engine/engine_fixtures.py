"""The prompts the reference engine tests decode, and greedy sampling as HF's min_new_tokens does it.

The fixtures built on them (prompt_ids, hf_greedy) are in tests/engine/conftest.py.
"""

from __future__ import annotations

NUM_TOKENS = 48

# Varied on purpose: prose, code, numbers, non-ASCII, chat markup, one word, repetition, a list.
PROMPTS = [
    "The capital of France is",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "1, 2, 3, 5, 8, 13,",
    "Le chat est assis sur le tapis. Das Wetter ist schön. 東京は",
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
    "Photosynthesis",
    "the cat sat on the mat. the cat sat on the mat. the cat sat on the mat.",
    "Three reasons to learn a second language:\n1.",
]


def greedy(max_tokens: int = NUM_TOKENS):
    from reference_engine import SamplingParams

    # min_tokens masks eos exactly as HF's min_new_tokens does.
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, min_tokens=max_tokens)
