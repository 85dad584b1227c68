"""vLLM-style `random` dataset: prompts of random real-vocabulary tokens with given lengths."""

from __future__ import annotations

import math

import numpy as np

from benchctl.workload.base import RequestSpec, WorkloadError
from benchctl.workload.tokenizer import Tokenizer


def length_range(mean_len: int, range_ratio: float) -> tuple[int, int]:
    """Inclusive [low, high] for lengths uniform around `mean_len`: the integers inside mean*(1 ± ratio).

    vLLM takes the integers around it instead (vllm_length_ranges); both agree when mean*ratio is an integer.
    Kept, not switched to vLLM's: workload W (144, 0.7778) is [32, 256] by this rule, [31, 257] by vLLM's.
    """
    low = max(1, math.ceil(mean_len * (1 - range_ratio) - 1e-9))
    high = max(low, math.floor(mean_len * (1 + range_ratio) + 1e-9))
    return low, high


def vllm_length_ranges(
    input_len: int, output_len: int, range_ratio: float, special_tokens: int = 0
) -> tuple[tuple[int, int], tuple[int, int]]:
    """vLLM 0.32's get_sampling_params: floor(mean*(1-ratio)) .. ceil(mean*(1+ratio)) for input and output, the
    input's mean less the special tokens the tokenizer adds, the output's bounds at least 1."""
    real_input_len = max(0, input_len - special_tokens)
    inputs = math.floor(real_input_len * (1 - range_ratio)), math.ceil(real_input_len * (1 + range_ratio))
    outputs = max(1, math.floor(output_len * (1 - range_ratio))), max(1, math.ceil(output_len * (1 + range_ratio)))
    return inputs, outputs


def random_sampler(tokenizer: Tokenizer, input_len: int, output_len: int, range_ratio: float) -> dict:
    """The workload's `sampler` field: vLLM draws the same lengths (same generator, same order) exactly when its
    ranges are benchctl's; the token ids always differ (docs/workloads.md, "random")."""
    ours = length_range(input_len, range_ratio), length_range(output_len, range_ratio)
    same = ours == vllm_length_ranges(input_len, output_len, range_ratio, tokenizer.num_special_tokens)
    return {
        "name": "benchctl-random",
        "lengths_identical_to_vllm_bench": same,
        "statement": (
            "input and output lengths identical to vllm bench --dataset-name random with the same "
            "seed and lengths; token ids differ"
            if same
            else "lengths from other ranges than vllm bench's (vLLM rounds outwards); token ids differ"
        ),
    }


def sample_random(
    tokenizer: Tokenizer,
    num_prompts: int,
    input_len: int,
    output_len: int,
    range_ratio: float,
    seed: int,
    prefix_len: int = 0,
) -> tuple[list[RequestSpec], dict]:
    if num_prompts < 1:
        raise WorkloadError(f"--num-prompts must be >= 1, got {num_prompts}")
    if input_len < 1 or output_len < 1:
        raise WorkloadError("--random-input-len and --random-output-len must be >= 1")
    if not 0 <= range_ratio < 1:
        raise WorkloadError(f"--random-range-ratio must be in [0, 1), got {range_ratio}")
    if prefix_len < 0:
        raise WorkloadError(f"--random-prefix-len must be >= 0, got {prefix_len}")
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
    source = {
        "input_len": input_len,
        "output_len": output_len,
        "range_ratio": range_ratio,
        "input_len_range": [in_low + prefix_len, in_high + prefix_len],
        "output_len_range": [out_low, out_high],
        "prefix_len": prefix_len,
    }
    return requests, source
