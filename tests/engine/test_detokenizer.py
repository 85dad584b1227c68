"""Incremental detokenization with the bundled model's byte-level BPE tokenizer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_engine.detokenizer import IncrementalDetokenizer, find_stop, load_tokenizer
from reference_engine.sampling_params import SamplingParams
from reference_engine.sequence import Sequence

TEXTS = [
    "Hello, world! This is plain ASCII.",
    "Zürich, naïve café, façade — “quotes” and ellipses…",
    "東京は日本の首都です。中文也可以。한국어 텍스트.",
    "Emoji: 👩‍👩‍👧 🚀🔥 and flags 🇫🇷🇯🇵 in a row",
    "def f(x):\n\treturn x ** 2  # tabs, newlines\n\n",
    "  leading spaces and    runs   of spaces  ",
]


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return load_tokenizer(model_dir)


def stream(tokenizer, prompt_ids: list[int], output_ids: list[int], params=None) -> tuple[Sequence, list[str]]:
    """Feed output tokens one at a time, as the engine does, flushing at the end."""
    seq = Sequence("r", list(prompt_ids), len(prompt_ids), params or SamplingParams())
    detok = IncrementalDetokenizer(tokenizer)
    deltas = []
    for t in output_ids:
        seq.token_ids.append(t)
        deltas.append(detok.step(seq))
    deltas.append(detok.flush(seq))
    return seq, deltas


@pytest.mark.parametrize("text", TEXTS)
def test_deltas_add_up_to_the_text_and_never_split_a_character(tokenizer, text):
    prompt = tokenizer.encode("Say something:").ids
    output = tokenizer.encode(text).ids
    seq, deltas = stream(tokenizer, prompt, output)
    assert "".join(deltas) == seq.text == tokenizer.decode(output)
    assert not any("\ufffd" in d for d in deltas)
    if any(ord(c) >= 0x3000 for c in text):
        # CJK and emoji span several byte tokens: some steps must hold their bytes back.
        assert deltas.count("") > 1


def test_special_tokens_are_skipped_by_default(tokenizer):
    ids = tokenizer.encode("Hi").ids + [2] + tokenizer.encode(" there").ids
    _, deltas = stream(tokenizer, [1], ids)
    assert "".join(deltas) == "Hi there"
    _, kept = stream(tokenizer, [1], ids, SamplingParams(skip_special_tokens=False))
    assert "".join(kept) == "Hi<|im_end|> there"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(17, 49151), min_size=1, max_size=24))
def test_random_token_streams_match_a_full_decode(tokenizer, ids):
    seq, deltas = stream(tokenizer, [504, 2988], ids)
    assert "".join(deltas) == seq.text
    full = tokenizer.decode(ids)
    if "\ufffd" not in full:  # random bytes may be invalid UTF-8; where they are not, the texts agree exactly
        assert seq.text == full


def test_find_stop_cuts_before_the_stop_string_even_across_deltas():
    seq = Sequence("r", [1], 1, SamplingParams(stop=["STOP", "\n\n"]))
    seq.text = "abc ST"
    assert find_stop(seq, "c ST") is None
    seq.text += "OP and more"
    assert find_stop(seq, "OP and more") == "STOP" and seq.text == "abc "
