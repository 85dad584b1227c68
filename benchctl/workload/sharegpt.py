"""ShareGPT JSON: schema validation and vLLM's sampling rules (REFERENCE.md, "ShareGPT")."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from benchctl.workload.base import RequestSpec, WorkloadError
from benchctl.workload.tokenizer import Tokenizer

# vLLM's filters: a pair is dropped when prompt or output is shorter than MIN_TOKENS, the prompt is
# longer than MAX_PROMPT_TOKENS, or both together exceed MAX_TOTAL_TOKENS.
MIN_TOKENS = 4
MAX_PROMPT_TOKENS = 1024
MAX_TOTAL_TOKENS = 2048


def load_conversations(path: Path) -> list[dict]:
    """Read and validate a ShareGPT file; raise WorkloadError naming the first problem."""
    if not path.is_file():
        raise WorkloadError(f"dataset file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WorkloadError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise WorkloadError(f"{path}: expected a JSON array of conversations, got {type(data).__name__}")
    for i, entry in enumerate(data):
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(turns, list):
            raise WorkloadError(f"{path}: entry {i} has no 'conversations' list")
        for j, turn in enumerate(turns):
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                raise WorkloadError(f"{path}: entry {i} turn {j} has no string 'value'")
    return data


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def sample_sharegpt(path: Path, tokenizer: Tokenizer, num_prompts: int, seed: int,
                    fixed_output_len: int | None = None) -> tuple[list[RequestSpec], dict]:
    """Sample (prompt, completion) pairs the way vLLM's benchmark does.

    Keep conversations with >= 2 turns, shuffle with the seed, take turn 0 as the prompt and turn 1
    as the reference completion, and drop pairs that fail the length filters. `fixed_output_len`
    replaces the completion's length (and is exempt from the minimum, as in vLLM).
    """
    if num_prompts < 1:
        raise WorkloadError(f"--num-prompts must be >= 1, got {num_prompts}")
    if fixed_output_len is not None and fixed_output_len < 1:
        raise WorkloadError(f"--sharegpt-output-len must be >= 1, got {fixed_output_len}")
    conversations = [c for c in load_conversations(path) if len(c["conversations"]) >= 2]
    random.Random(seed).shuffle(conversations)
    requests: list[RequestSpec] = []
    dropped = {"too_short": 0, "prompt_too_long": 0, "total_too_long": 0}
    for conv in conversations:
        prompt = conv["conversations"][0]["value"]
        completion = conv["conversations"][1]["value"]
        prompt_ids = tokenizer.encode(prompt)
        output_len = fixed_output_len or len(tokenizer.encode(completion))
        if len(prompt_ids) < MIN_TOKENS or (fixed_output_len is None and output_len < MIN_TOKENS):
            dropped["too_short"] += 1
            continue
        if len(prompt_ids) > MAX_PROMPT_TOKENS:
            dropped["prompt_too_long"] += 1
            continue
        if len(prompt_ids) + output_len > MAX_TOTAL_TOKENS:
            dropped["total_too_long"] += 1
            continue
        requests.append(RequestSpec(f"req-{len(requests):05d}", prompt_ids, prompt, output_len))
        if len(requests) == num_prompts:
            break
    if len(requests) < num_prompts:
        raise WorkloadError(f"{path}: only {len(requests)} conversations pass the ShareGPT filters, "
                            f"{num_prompts} requested (lower --num-prompts)")
    source = {"path": str(path), "sha256_16": file_digest(path), "fixed_output_len": fixed_output_len,
              "filters": {"min_tokens": MIN_TOKENS, "max_prompt_tokens": MAX_PROMPT_TOKENS,
                          "max_total_tokens": MAX_TOTAL_TOKENS},
              "dropped_while_sampling": dropped}
    return requests, source
