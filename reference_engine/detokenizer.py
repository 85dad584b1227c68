"""Incremental detokenization: the text a step's new tokens add, never a broken character.

vLLM's method: decode a short window before the new tokens and the window with them, and emit the difference.
The window gives byte-level BPE and sentencepiece tokens the context that decides spaces and merges; a result
ending in U+FFFD means a multi-byte character is still incomplete, so nothing is emitted until it completes.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from reference_engine.sequence import Sequence


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no tokenizer.json")
    return Tokenizer.from_file(str(path))


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    def step(self, seq: Sequence, upto: int | None = None) -> str:
        """Append the text of seq.token_ids[:upto] not yet detokenized to seq.text; return that delta."""
        skip = seq.params.skip_special_tokens
        end = len(seq.token_ids) if upto is None else upto
        if seq.read_offset >= end:
            return ""
        prefix_text = self.tokenizer.decode(
            seq.token_ids[seq.prefix_offset : seq.read_offset], skip_special_tokens=skip
        )
        new_text = self.tokenizer.decode(seq.token_ids[seq.prefix_offset : end], skip_special_tokens=skip)
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return ""
        delta = new_text[len(prefix_text) :]
        seq.prefix_offset, seq.read_offset = seq.read_offset, end
        seq.text += delta
        return delta

    def flush(self, seq: Sequence, upto: int | None = None) -> str:
        """At the end: whatever the window held back (an incomplete character decodes as U+FFFD)."""
        ids = seq.token_ids[seq.num_prompt_tokens : upto]
        full = self.tokenizer.decode(ids, skip_special_tokens=seq.params.skip_special_tokens)
        if full.startswith(seq.text) and len(full) > len(seq.text):
            delta = full[len(seq.text) :]
            seq.text = full
            seq.read_offset = seq.prefix_offset = seq.num_prompt_tokens + len(ids)
            return delta
        return ""


def find_stop(seq: Sequence, delta: str) -> str | None:
    """If a stop string now appears in seq.text, cut the text before it and return the stop string."""
    start = len(seq.text) - len(delta)
    for stop in seq.params.stop:
        at = seq.text.find(stop, max(0, start - len(stop) + 1))
        if at != -1:
            seq.text = seq.text[:at]
            return stop
    return None
