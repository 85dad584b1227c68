"""The target model's tokenizer, read from the model folder's tokenizer.json (no engine import)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from benchctl.workload.base import WorkloadError


class Tokenizer:
    def __init__(self, model_dir: Path):
        from tokenizers import Tokenizer as _HFTokenizer

        self.model_dir = Path(model_dir)
        path = Path(model_dir) / "tokenizer.json"
        if not path.is_file():
            raise WorkloadError(f"{model_dir}: no tokenizer.json; token lengths need the model's tokenizer")
        self._tok = _HFTokenizer.from_file(str(path))
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.special_ids = _special_ids(Path(model_dir), self._tok)
        # what encoding with special tokens adds (a BOS, say): vLLM's ShareGPT sampler counts them in both lengths
        processor = self._tok.post_processor
        self.num_special_tokens = processor.num_special_tokens_to_add(False) if processor is not None else 0

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)


def _special_ids(model_dir: Path, tok) -> set[int]:
    ids: set[int] = set()
    added = json.loads((model_dir / "tokenizer.json").read_text()).get("added_tokens", [])
    ids.update(t["id"] for t in added if t.get("special"))
    return ids


@lru_cache(maxsize=4)
def load_tokenizer(model_dir: str) -> Tokenizer:
    return Tokenizer(Path(model_dir))
