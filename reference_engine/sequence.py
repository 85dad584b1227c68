"""A sequence (one sample of a request), the request that owns its n samples, and what `step()` returns."""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field

import torch

from reference_engine.sampling_params import SamplingParams

_seq_ids = itertools.count()


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(slots=True, eq=False)
class Sequence:
    """Token ids of one sample and where its KV lives. The scheduler and block manager work on these."""

    request_id: str
    token_ids: list[int]  # prompt followed by the output so far
    num_prompt_tokens: int
    params: SamplingParams
    index: int = 0  # which of the request's n samples
    seq_id: int = field(default_factory=lambda: next(_seq_ids))
    status: SequenceStatus = SequenceStatus.WAITING
    block_table: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0  # tokens whose K/V is in the cache (or will be after this step's forward)
    num_cached_tokens: int = 0  # prompt tokens served by the prefix cache at the last admission
    num_preemptions: int = 0
    finish_reason: str | None = None  # "stop" | "length" | "abort" | "error"
    stop_reason: int | str | None = None  # the stop token id or stop string that ended it
    error: str | None = None
    # Incremental detokenizer state (vLLM's prefix/read offsets into token_ids).
    text: str = ""
    prefix_offset: int = 0
    read_offset: int = 0
    logprobs: list[dict[int, float]] | None = None
    cumulative_logprob: float = 0.0
    generator: torch.Generator | None = None  # set when the request has a seed
    draft_state: object | None = None  # speculative decoding's per-sequence state (speculative.DraftState)

    def __post_init__(self) -> None:
        self.prefix_offset = max(self.num_prompt_tokens - 5, 0)
        self.read_offset = self.num_prompt_tokens
        if self.params.logprobs is not None:
            self.logprobs = []

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def fork(self, index: int) -> Sequence:
        """A child sharing this sequence's tokens; the block manager shares its blocks separately."""
        child = Sequence(self.request_id, list(self.token_ids), self.num_prompt_tokens, self.params, index=index)
        child.status = self.status
        child.num_computed_tokens = self.num_computed_tokens
        child.num_cached_tokens = self.num_cached_tokens
        child.text, child.prefix_offset, child.read_offset = self.text, self.prefix_offset, self.read_offset
        if self.params.seed is not None:
            child.generator = torch.Generator(self.generator.device).manual_seed(self.params.seed + index)
        return child


@dataclass(slots=True, eq=False)
class Request:
    """A user request: one prompt, n samples. Until its prompt is prefilled it has a single sequence."""

    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    arrival_time_s: float
    seqs: list[Sequence] = field(default_factory=list)
    forked: bool = False  # True once its n samples exist as separate sequences

    @property
    def is_finished(self) -> bool:
        # Before the fork a request has one sequence, which can only finish early (abort, error).
        return all(s.is_finished for s in self.seqs)


@dataclass(slots=True)
class CompletionOutput:
    index: int
    token_ids: list[int]  # all output tokens so far
    new_token_ids: list[int]  # output tokens produced by this step
    text: str  # all output text so far
    text_delta: str  # text added by this step
    finished: bool
    finish_reason: str | None
    stop_reason: int | str | None = None
    logprobs: list[dict[int, float]] | None = None
    cumulative_logprob: float | None = None


@dataclass(slots=True)
class RequestOutput:
    """One request's state after a step. The top-level token fields mirror `outputs[0]`."""

    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    num_cached_tokens: int = 0
    error: str | None = None

    @property
    def token_ids(self) -> list[int]:
        return self.outputs[0].token_ids if self.outputs else []

    @property
    def new_token_ids(self) -> list[int]:
        return self.outputs[0].new_token_ids if self.outputs else []

    @property
    def text(self) -> str:
        return self.outputs[0].text if self.outputs else ""

    @property
    def finish_reason(self) -> str | None:
        if self.error is not None:
            return "error"
        return self.outputs[0].finish_reason if self.outputs else None
