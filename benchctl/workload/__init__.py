"""Workloads: where prompts come from, their exact token lengths, and when each request arrives."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from benchctl.workload.base import RequestSpec, Workload, WorkloadError, length_stats
from benchctl.workload.conversations import sample_conversations
from benchctl.workload.random_tokens import sample_random
from benchctl.workload.schedule import arrival_times, schedule_description
from benchctl.workload.sharegpt import load_conversations, sample_sharegpt
from benchctl.workload.tokenizer import Tokenizer, load_tokenizer

__all__ = ["RequestSpec", "Workload", "WorkloadError", "WorkloadOptions", "arrival_times", "build_workload",
           "bundled_datasets", "length_stats", "load_conversations", "load_tokenizer", "resolve_dataset",
           "Tokenizer", "WORKLOAD_KINDS"]

DEFAULT_DATASET = "sharegpt-sample"
WORKLOAD_KINDS = ("single-turn", "conversations")


def datasets_dir() -> Path:
    return Path(os.environ.get("BENCHCTL_DATASETS_DIR") or Path(__file__).resolve().parents[2] / "datasets")


def bundled_datasets() -> dict[str, Path]:
    """Bundled ShareGPT-format files by name: datasets/foo_bar.json -> "foo-bar"."""
    folder = datasets_dir()
    if not folder.is_dir():
        return {}
    return {p.stem.replace("_", "-"): p for p in sorted(folder.glob("*.json"))}


@dataclass(slots=True)
class WorkloadOptions:
    dataset: str = DEFAULT_DATASET
    num_prompts: int = 16  # the default run takes about a minute on 2 CPU cores; conversations when kind=conversations
    kind: str = "single-turn"  # single-turn (one request per entry) | conversations (benchctl.workload.conversations)
    max_turns: int | None = None  # conversations: turns per conversation at most
    think_time_s: float = 0.0  # conversations: pause between an answer and the next user turn
    history: str = "recorded"  # conversations: the earlier answers sent back are the recorded or the generated ones
    seed: int = 0
    sharegpt_output_len: int | None = None
    random_input_len: int = 144
    random_output_len: int = 144
    random_range_ratio: float = 0.0
    random_prefix_len: int = 0
    request_rate: float = math.inf
    burstiness: float = 1.0
    arrival: str = "poisson"  # poisson | gamma | constant (used when the rate is finite)
    max_concurrency: int | None = None


def resolve_dataset(dataset: str) -> tuple[str, Path | None]:
    """`random`, a bundled name, `sharegpt:PATH` or a path -> (kind, path)."""
    if dataset == "random":
        return "random", None
    bundled = bundled_datasets()
    if dataset in bundled:
        return "sharegpt", bundled[dataset]
    path = Path(dataset.removeprefix("sharegpt:")).expanduser()
    if dataset.startswith("sharegpt:") or path.suffix == ".json" or path.exists():
        return "sharegpt", path
    names = ", ".join(["random", *bundled]) or "random"
    raise WorkloadError(f"unknown dataset {dataset!r}: not a file, 'sharegpt:PATH', or one of: {names}")


def build_workload(options: WorkloadOptions, tokenizer: Tokenizer) -> Workload:
    kind, path = resolve_dataset(options.dataset)
    if options.max_concurrency is not None and options.max_concurrency < 1:
        raise WorkloadError(f"--max-concurrency must be >= 1, got {options.max_concurrency}")
    if options.kind not in WORKLOAD_KINDS:
        raise WorkloadError(f"--workload must be one of {', '.join(WORKLOAD_KINDS)}, got {options.kind!r}")
    if options.kind == "conversations":
        if kind == "random":
            raise WorkloadError("--workload conversations replays ShareGPT conversations; the random dataset has none")
        requests, source = sample_conversations(path, tokenizer, options.num_prompts, options.seed,
                                                options.max_turns, options.think_time_s, options.sharegpt_output_len,
                                                options.history)
    elif kind == "random":
        requests, source = sample_random(tokenizer, options.num_prompts, options.random_input_len,
                                         options.random_output_len, options.random_range_ratio, options.seed,
                                         options.random_prefix_len)
    else:
        requests, source = sample_sharegpt(path, tokenizer, options.num_prompts, options.seed,
                                           options.sharegpt_output_len)
    # vLLM's convention: --burstiness other than 1 turns the Poisson process into a gamma process.
    arrival = "gamma" if options.burstiness != 1.0 and options.arrival == "poisson" else options.arrival
    # Conversations: the schedule says when each conversation starts; later turns wait for their previous turn.
    heads = [r for r in requests if r.after is None]
    arrivals = arrival_times(len(heads), options.request_rate, options.burstiness, arrival, options.seed)
    for request, t in zip(heads, arrivals):
        request.arrival_s = float(t)
    schedule = schedule_description(options.request_rate, options.burstiness, arrival, options.max_concurrency)
    name = options.dataset if kind == "random" or options.dataset in bundled_datasets() else f"sharegpt:{path}"
    return Workload(name, requests, options.seed, schedule, source)
