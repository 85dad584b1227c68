"""vLLM-style `random` dataset: prompts of random real-vocabulary tokens with given lengths."""

from __future__ import annotations

import math

import numpy as np

from benchctl.workload.base import RequestSpec, WorkloadError
from benchctl.workload.tokenizer import Tokenizer


def length_range(mean_len: int, range_ratio: float) -> tuple[int, int]:
    """Inclusive [low, high] for lengths uniform around `mean_len` (vLLM's range ratio)."""
    low = max(1, math.ceil(mean_len * (1 - range_ratio) - 1e-9))
    high = max(low, math.floor(mean_len * (1 + range_ratio) + 1e-9))
    return low, high


def sample_random(tokenizer: Tokenizer, num_prompts: int, input_len: int, output_len: int,
                  range_ratio: float, seed: int, prefix_len: int = 0) -> tuple[list[RequestSpec], dict]:
    if num_prompts < 1:
        raise WorkloadError(f"--num-prompts must be >= 1, got {num_prompts}")
    if input_len < 1 or output_len < 1:
        raise WorkloadError("--random-input-len and --random-output-len must be >= 1")
    if not 0 <= range_ratio < 1:
        raise WorkloadError(f"--random-range-ratio must be in [0, 1), got {range_ratio}")
    rng = np.random.default_rng(seed)
    # Real vocabulary only: special tokens (bos/eos/chat markers) would change engine behaviour.
    allowed = np.array(sorted(set(range(tokenizer.vocab_size)) - tokenizer.special_ids))
    in_low, in_high = length_range(input_len, range_ratio)
    out_low, out_high = length_range(output_len, range_ratio)
    input_lens = rng.integers(in_low, in_high + 1, size=num_prompts)
    output_lens = rng.integers(out_low, out_high + 1, size=num_prompts)
    prefix = rng.choice(allowed, size=prefix_len).tolist() if prefix_len else []
    requests = []
    for i in range(num_prompts):
        ids = prefix + rng.choice(allowed, size=int(input_lens[i])).tolist()
        requests.append(RequestSpec(f"req-{i:05d}", ids, tokenizer.decode(ids), int(output_lens[i])))
    source = {"input_len": input_len, "output_len": output_len, "range_ratio": range_ratio,
              "input_len_range": [in_low + prefix_len, in_high + prefix_len],
              "output_len_range": [out_low, out_high], "prefix_len": prefix_len}
    return requests, source
