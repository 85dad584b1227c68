"""Per-request sampling options, named as in vLLM."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SamplingParams:
    n: int = 1  # parallel samples sharing the prompt's KV blocks
    temperature: float = 1.0  # 0 -> greedy
    top_k: int = 0  # 0 or -1 -> whole vocabulary
    top_p: float = 1.0
    seed: int | None = None  # child i of a request samples with seed + i
    max_tokens: int = 16
    min_tokens: int = 0  # stop tokens (and eos) are masked out until this many tokens exist
    stop_token_ids: list[int] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)  # stop strings; the text is cut before them
    ignore_eos: bool = False
    logprobs: int | None = None  # None -> none; k -> the sampled token's logprob and the top k
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < -1:
            raise ValueError(f"top_k must be -1, 0 or positive, got {self.top_k}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"min_tokens must be in [0, max_tokens], got {self.min_tokens}")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be >= 0, got {self.logprobs}")
        if self.n > 1 and self.temperature == 0:
            # n greedy copies would be identical; vLLM refuses the same.
            raise ValueError("n > 1 needs temperature > 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
