"""What a workload is: requests with exact token lengths, plus the spec that every result carries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


class WorkloadError(ValueError):
    """A dataset or workload option the user gave cannot be used (exit code 2, not a traceback)."""


@dataclass(slots=True)
class RequestSpec:
    request_id: str
    prompt_token_ids: list[int]  # what offline engines receive: exact input length, no re-tokenization
    prompt: str  # the same prompt as text, for servers
    output_len: int  # tokens to generate exactly (ignore_eos)
    arrival_s: float = 0.0  # offset from the run start; precomputed by benchctl.workload.schedule
    # Multi-turn conversations (benchctl.workload.conversations): a later turn has no precomputed arrival; it is
    # released `think_time_s` after the request `after` (the previous turn) finished, and carries the history.
    conversation_id: str | None = None
    turn: int | None = None  # 0 = the conversation's first user turn
    after: str | None = None
    think_time_s: float = 0.0
    messages: list[dict] | None = None  # the chat history up to this turn, for the chat endpoint
    # --history generated: the rendered tail after the previous turn's prompt and answer (its end-of-turn marks, the
    # next user message, the generation prompt); the previous *generated* answer is spliced in before it
    suffix_text: str | None = None
    suffix_ids: list[int] | None = None
    # Which window (phase: warmup | steady | cooldown) and stage of a load shape the request arrives in
    # (benchctl.workload.shapes); the record carries them in `extra`, where benchctl.metrics.windows reads them.
    labels: dict | None = None

    @property
    def prompt_len(self) -> int:
        return len(self.prompt_token_ids)

    def to_wire(self) -> dict:
        return asdict(self)


def length_stats(lengths: list[int] | np.ndarray) -> dict[str, float]:
    a = np.asarray(lengths, dtype=np.float64)
    if a.size == 0:
        return {"count": 0}
    return {
        "count": int(a.size),
        "mean": round(float(a.mean()), 2),
        "std": round(float(a.std()), 2),
        "min": int(a.min()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": int(a.max()),
        "sum": int(a.sum()),
    }


@dataclass(slots=True)
class Workload:
    """The requests of one run and the description of how they were made."""

    dataset: str  # "sharegpt:<path>", "random", or a bundled dataset's name
    requests: list[RequestSpec]
    seed: int
    schedule: dict  # {"kind": ..., "request_rate": ..., "burstiness": ..., "max_concurrency": ...}
    source: dict = field(default_factory=dict)  # dataset-specific options (lengths, filters, file hash...)
    sampler: dict = field(default_factory=dict)  # which rule picked the requests, and whose tool picks the same

    def spec(self) -> dict:
        """The workload spec recorded beside every number a run produces."""
        arrivals = [r.arrival_s for r in self.requests]
        spec = {
            "dataset": self.dataset,
            "num_requests": len(self.requests),
            "seed": self.seed,
            "input_tokens": length_stats([r.prompt_len for r in self.requests]),
            "output_tokens": length_stats([r.output_len for r in self.requests]),
            "schedule": {**self.schedule, "last_arrival_s": round(max(arrivals, default=0.0), 6)},
            "source": self.source,
            "sampler": self.sampler,
        }
        if any(r.turn is not None for r in self.requests):  # conversations: the history makes later prompts longer
            spec["input_tokens_by_turn"] = {
                "first": length_stats([r.prompt_len for r in self.requests if r.turn == 0]),
                "later": length_stats([r.prompt_len for r in self.requests if r.turn]),
            }
        return spec
