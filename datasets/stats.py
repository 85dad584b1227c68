#!/usr/bin/env python3
"""Token-length statistics for a ShareGPT-format file under the SmolLM2 tokenizer.

    python datasets/stats.py [datasets/sharegpt_sample.json] [--model smollm2-135m]

Pairs are formed the way vLLM's ShareGPT sampler does: conversations with >= 2 turns, prompt = turn 0,
completion = turn 1. Tokens are counted without special tokens. A pair is dropped when the prompt or
completion is < 4 tokens, the prompt is > 1024 tokens, or prompt + completion > 2048 tokens
(benchctl/workload/sharegpt.py's limits and order). Statistics are benchctl.metrics.distribution's.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from benchctl.metrics import distribution
from benchctl.workload.sharegpt import MAX_PROMPT_TOKENS, MAX_TOTAL_TOKENS, MIN_TOKENS


def load_tokenizer(model: str) -> Tokenizer:
    from benchctl.models import resolve_model

    hf_dir = Path(resolve_model(model).hf_dir)
    return Tokenizer.from_file(str(hf_dir / "tokenizer.json"))


def ntok(tok: Tokenizer, texts: list[str]) -> np.ndarray:
    return np.array([len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)], dtype=np.int64)


def row(name: str, x: np.ndarray) -> str:
    d = distribution(x.tolist(), (50, 90, 99))
    return (
        f"| {name:<22} | {d['count']:>5} | {d['mean']:>7.1f} | {d['p50']:>6.0f} | {d['p90']:>6.0f} | "
        f"{d['p99']:>6.0f} | {d['min']:>5.0f} | {d['max']:>5.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", type=Path, default=Path(__file__).resolve().parent / "sharegpt_sample.json")
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()

    data = json.loads(args.path.read_text(encoding="utf-8"))
    tok = load_tokenizer(args.model)

    n_turns = [len(c["conversations"]) for c in data]
    multi = sum(1 for t in n_turns if t >= 4)
    print(f"file: {args.path.name}  ({args.path.stat().st_size / 1e6:.2f} MB)")
    print(
        f"conversations: {len(data)}   turns: {sum(n_turns)}   "
        f"multi-turn (>= 4 turns): {multi} ({multi / len(data):.1%})"
    )
    print("turns per conversation: " + ", ".join(f"{k}: {v}" for k, v in sorted(Counter(n_turns).items())))

    human = [t["value"] for c in data for t in c["conversations"] if t["from"] == "human"]
    gpt = [t["value"] for c in data for t in c["conversations"] if t["from"] == "gpt"]

    pairs = [c for c in data if len(c["conversations"]) >= 2]
    p = ntok(tok, [c["conversations"][0]["value"] for c in pairs])
    o = ntok(tok, [c["conversations"][1]["value"] for c in pairs])

    print()
    print(
        f"vLLM-style pairs (prompt = turn 0, completion = turn 1): {len(pairs)} "
        f"({len(data) - len(pairs)} conversation(s) with < 2 turns skipped)"
    )
    print()
    print("| tokens (SmolLM2)       |     n |    mean |    p50 |    p90 |    p99 |   min |   max |")
    print("|------------------------|------:|--------:|-------:|-------:|-------:|------:|------:|")
    print(row("pair prompt (turn 0)", p))
    print(row("pair output (turn 1)", o))
    print(row("pair prompt + output", p + o))
    print(row("all human turns", ntok(tok, human)))
    print(row("all gpt turns", ntok(tok, gpt)))

    short = (p < MIN_TOKENS) | (o < MIN_TOKENS)
    long_prompt = ~short & (p > MAX_PROMPT_TOKENS)
    long_total = ~short & ~long_prompt & (p + o > MAX_TOTAL_TOKENS)
    keep = ~(short | long_prompt | long_total)
    print()
    print(
        f"vLLM filters: {int(keep.sum())} of {len(pairs)} pairs survive; dropped: "
        f"{int(short.sum())} too short (prompt or output < {MIN_TOKENS}), "
        f"{int(long_prompt.sum())} prompt > {MAX_PROMPT_TOKENS}, "
        f"{int(long_total.sum())} prompt + output > {MAX_TOTAL_TOKENS}"
    )
    dropped = [(c["id"], int(a), int(b)) for c, a, b, k in zip(pairs, p, o, keep) if not k]
    for cid, a, b in dropped:
        print(f"  dropped: {cid}  (prompt {a}, output {b} tokens)")
    kp, ko = p[keep], o[keep]
    print()
    print("after filtering:")
    print(row("prompt", kp))
    print(row("output", ko))


if __name__ == "__main__":
    main()
