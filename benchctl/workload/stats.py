"""Token-length statistics of a ShareGPT-format dataset (what `benchctl datasets NAME` prints)."""

from __future__ import annotations

import numpy as np

from benchctl.workload.base import WorkloadError, length_stats
from benchctl.workload.datasets import bundled_datasets, resolve_dataset, sharegpt_file
from benchctl.workload.reader import read_sharegpt
from benchctl.workload.sharegpt import MAX_PROMPT_TOKENS, MAX_TOTAL_TOKENS, MIN_TOKENS, file_source
from benchctl.workload.tokenizer import Tokenizer


def dataset_stats(dataset: str, tokenizer: Tokenizer) -> dict:
    """Turns per conversation and the (turn 0, turn 1) pairs' token lengths, before and after vLLM's filters.

    Lengths are counted as the sampler counts them (benchctl.workload.sharegpt: with the tokenizer's special
    tokens, as vLLM does).
    """
    kind, path = resolve_dataset(dataset)
    if kind != "sharegpt":
        raise WorkloadError("`benchctl datasets` describes ShareGPT files; random datasets have no file")
    assert path is not None  # resolve_dataset gives every ShareGPT dataset its file
    data = read_sharegpt(path)
    conversations = [c["conversations"] for c in data.entries]
    pairs = [c for c in conversations if len(c) >= 2]
    prompt = _token_counts(tokenizer, [p[0]["value"] for p in pairs])
    output = _token_counts(tokenizer, [p[1]["value"] for p in pairs])
    turns = [len(c) for c in conversations]
    keep = (
        (prompt >= MIN_TOKENS)
        & (output >= MIN_TOKENS)
        & (prompt <= MAX_PROMPT_TOKENS)
        & (prompt + output <= MAX_TOTAL_TOKENS)
    )
    stats = {
        "dataset": dataset,
        **file_source(data),
        "conversations": len(conversations),
        "pairs": len(pairs),
        "turns": length_stats(turns),
        "with_turns": {"4_or_more": sum(t >= 4 for t in turns), "10_or_more": sum(t >= 10 for t in turns)},
        "prompt_tokens": length_stats(prompt),
        "output_tokens": length_stats(output),
        "pairs_passing_filters": int(keep.sum()),
        "filtered_prompt_tokens": length_stats(prompt[keep]),
        "filtered_output_tokens": length_stats(output[keep]),
        "filters": {
            "min_tokens": MIN_TOKENS,
            "max_prompt_tokens": MAX_PROMPT_TOKENS,
            "max_total_tokens": MAX_TOTAL_TOKENS,
        },
        "tokenizer": str(tokenizer.model_dir),
        "bundled": sorted(bundled_datasets()),
    }
    if dataset == "sharegpt":
        stats["package"] = sharegpt_file()[1]
    return stats


def _token_counts(tokenizer: Tokenizer, texts: list[str], batch: int = 1024) -> np.ndarray:
    """Token counts with the special tokens, in batches: 17,400 encodings at once held ~1 GB."""
    counts = [len(ids) for i in range(0, len(texts), batch) for ids in tokenizer.encode_batch(texts[i : i + batch])]
    return np.array(counts, dtype=np.int64) + tokenizer.num_special_tokens
