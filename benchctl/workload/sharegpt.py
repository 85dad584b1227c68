"""ShareGPT single-turn sampling: exactly the requests `vllm bench` picks (docs/workloads.md, "vLLM's sample").

vLLM 0.32's ShareGPTDataset keeps the entries with >= 2 turns, seeds Python's `random` with the seed and shuffles
them, then walks them in order: turn 0 is the prompt, turn 1's token count the output length, and a pair is
skipped when `is_valid_sequence` refuses its lengths, until num_prompts pairs are taken. When fewer pass, it reseeds
and repeats `random.choice` picks; benchctl does that only with oversample=True, and otherwise says so.
tests/backends/test_vllm_sample.py runs vLLM's own sampler and compares request by request.
"""

from __future__ import annotations

import random
from pathlib import Path

from benchctl.workload.base import RequestSpec, WorkloadError
from benchctl.workload.reader import DatasetFile, read_sharegpt
from benchctl.workload.tokenizer import Tokenizer

# vLLM's filters (is_valid_sequence): a pair is dropped when prompt or output is shorter than MIN_TOKENS, the
# prompt is longer than MAX_PROMPT_TOKENS, or both together exceed MAX_TOTAL_TOKENS.
MIN_TOKENS = 4
MAX_PROMPT_TOKENS = 1024
MAX_TOTAL_TOKENS = 2048
SAMPLER = "vllm-bench-sharegpt"
SAMPLER_RULE = "vLLM 0.32 vllm/benchmarks/datasets/datasets.py ShareGPTDataset.sample"


def load_conversations(path: Path) -> list[dict]:
    """The entries of a ShareGPT file (every complete one of a truncated file); WorkloadError names a problem."""
    return read_sharegpt(path).entries


def file_source(dataset: DatasetFile) -> dict:
    """What a workload records about its file: two runs with the same sha256 read the same bytes."""
    return {"path": str(dataset.path), "sha256_16": dataset.sha256[:16], "file": dataset.provenance()}


def sample_sharegpt(
    path: Path,
    tokenizer: Tokenizer,
    num_prompts: int,
    seed: int,
    fixed_output_len: int | None = None,
    oversample: bool = False,
) -> tuple[list[RequestSpec], dict]:
    """(requests, source): (prompt, completion) pairs picked the way `vllm bench` picks them.

    `fixed_output_len` replaces the completion's length (and is exempt from the minimum, as in vLLM). Lengths
    are counted as vLLM counts them: with the special tokens the tokenizer adds (none for SmolLM2).
    """
    if num_prompts < 1:
        raise WorkloadError(f"--num-prompts must be >= 1, got {num_prompts}")
    if fixed_output_len is not None and fixed_output_len < 1:
        raise WorkloadError(f"--sharegpt-output-len must be >= 1, got {fixed_output_len}")
    dataset = read_sharegpt(path)
    candidates = [c for c in dataset.entries if len(c["conversations"]) >= 2]
    random.Random(seed).shuffle(candidates)
    special = tokenizer.num_special_tokens
    requests: list[RequestSpec] = []
    dropped = {"too_short": 0, "prompt_too_long": 0, "total_too_long": 0}
    for conv in candidates:
        if len(requests) == num_prompts:
            break
        prompt = conv["conversations"][0]["value"]
        completion = conv["conversations"][1]["value"]
        prompt_ids = tokenizer.encode(prompt)
        prompt_len = len(prompt_ids) + special
        output_len = fixed_output_len or len(tokenizer.encode(completion)) + special
        if prompt_len < MIN_TOKENS or (fixed_output_len is None and output_len < MIN_TOKENS):
            dropped["too_short"] += 1
        elif prompt_len > MAX_PROMPT_TOKENS:
            dropped["prompt_too_long"] += 1
        elif prompt_len + output_len > MAX_TOTAL_TOKENS:
            dropped["total_too_long"] += 1
        else:
            requests.append(RequestSpec(f"req-{len(requests):05d}", prompt_ids, prompt, output_len))
    passed = len(requests)
    if passed < num_prompts and (not oversample or not requests):
        hint = "; vllm bench would repeat random picks to fill the count, as --oversample does" if requests else ""
        raise WorkloadError(
            f"{path}: only {passed} conversations pass the ShareGPT filters, {num_prompts} "
            f"requested (lower --num-prompts{hint})"
        )
    if passed < num_prompts:  # vLLM's maybe_oversample_requests: reseed, then one random.choice per missing request
        rng, picked = random.Random(seed), requests[:passed]
        for i in range(passed, num_prompts):
            pick = rng.choice(picked)
            requests.append(RequestSpec(f"req-{i:05d}", list(pick.prompt_token_ids), pick.prompt, pick.output_len))
    source = {
        **file_source(dataset),
        "fixed_output_len": fixed_output_len,
        "filters": {
            "min_tokens": MIN_TOKENS,
            "max_prompt_tokens": MAX_PROMPT_TOKENS,
            "max_total_tokens": MAX_TOTAL_TOKENS,
        },
        "dropped_while_sampling": dropped,
        "oversampled": num_prompts - passed,
    }
    return requests, source


def vllm_sampler(seed: int, num_prompts: int, fixed_output_len: int | None, truncated: bool) -> dict:
    """The workload's `sampler` field for a single-turn ShareGPT sample: what vLLM command picks the same."""
    command = f"vllm bench serve --dataset-name sharegpt --dataset-path FILE --seed {seed} --num-prompts {num_prompts}"
    if fixed_output_len is not None:
        command += f" --sharegpt-output-len {fixed_output_len}"
    sampler = {
        "name": SAMPLER,
        "rule": SAMPLER_RULE,
        "identical_to": command,
        "statement": f"sample identical to vllm bench (seed {seed}, {num_prompts} requests)",
    }
    if truncated:  # vLLM's json.load refuses a cut file: FILE must hold the complete entries as one array
        sampler["file_for_vllm"] = "the complete entries written as a JSON array (docs/workloads.md)"
    return sampler
