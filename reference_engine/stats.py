"""Per-step engine statistics and their cumulative summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(slots=True)
class StepStats:
    step: int
    num_running: int  # after scheduling
    num_waiting: int
    num_scheduled_seqs: int  # batch size of this step's forward
    num_decode_tokens: int  # tokens of decoding sequences: one each, plus their draft tokens
    num_prefill_tokens: int
    num_kv_blocks_used: int
    num_kv_blocks_total: int
    num_token_slots_filled: int  # slots of used blocks that hold a token
    num_token_slots_allocated: int  # used blocks * block_size
    num_preemptions: int
    num_prefix_hit_blocks: int
    num_generated_tokens: int
    num_decode_seqs: int = 0
    num_draft_tokens: int = 0  # speculative decoding: drafted this step
    num_accepted_tokens: int = 0  # of which kept
    num_drafts: int = 0  # sequences that had a draft
    schedule_s: float = 0.0
    forward_s: float = 0.0
    sample_s: float = 0.0
    detokenize_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class EngineStats:
    keep_steps: bool = True  # keep every StepStats (a long run can turn this off)
    steps: list[StepStats] = field(default_factory=list)
    num_steps: int = 0
    num_busy_steps: int = 0  # steps that ran a forward
    sum_batch_size: int = 0
    sum_batched_tokens: int = 0
    sum_slots_filled: int = 0
    sum_slots_allocated: int = 0
    peak_kv_blocks_used: int = 0
    peak_batch_size: int = 0
    num_preemptions: int = 0
    num_prefix_hit_blocks: int = 0
    num_generated_tokens: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    num_drafts: int = 0
    schedule_s: float = 0.0
    forward_s: float = 0.0
    sample_s: float = 0.0
    detokenize_s: float = 0.0

    def record(self, s: StepStats) -> None:
        if self.keep_steps:
            self.steps.append(s)
        self.num_steps += 1
        if s.num_scheduled_seqs:
            self.num_busy_steps += 1
            self.sum_batch_size += s.num_scheduled_seqs
            self.sum_batched_tokens += s.num_decode_tokens + s.num_prefill_tokens
            self.sum_slots_filled += s.num_token_slots_filled
            self.sum_slots_allocated += s.num_token_slots_allocated
        self.peak_kv_blocks_used = max(self.peak_kv_blocks_used, s.num_kv_blocks_used)
        self.peak_batch_size = max(self.peak_batch_size, s.num_scheduled_seqs)
        self.num_preemptions += s.num_preemptions
        self.num_prefix_hit_blocks += s.num_prefix_hit_blocks
        self.num_generated_tokens += s.num_generated_tokens
        self.num_draft_tokens += s.num_draft_tokens
        self.num_accepted_tokens += s.num_accepted_tokens
        self.num_drafts += s.num_drafts
        self.schedule_s += s.schedule_s
        self.forward_s += s.forward_s
        self.sample_s += s.sample_s
        self.detokenize_s += s.detokenize_s

    def summary(self) -> dict:
        busy = max(self.num_busy_steps, 1)
        waste = 1 - self.sum_slots_filled / self.sum_slots_allocated if self.sum_slots_allocated else 0.0
        return {
            "num_steps": self.num_steps,
            "peak_kv_blocks_used": self.peak_kv_blocks_used,
            "mean_batch_size": self.sum_batch_size / busy,
            "peak_batch_size": self.peak_batch_size,
            "mean_batched_tokens": self.sum_batched_tokens / busy,
            # Slot-weighted over steps: of the KV slots held by sequences, the share holding no token.
            "kv_waste_pct": 100 * waste,
            "num_preemptions": self.num_preemptions,
            "num_prefix_hit_blocks": self.num_prefix_hit_blocks,
            "num_generated_tokens": self.num_generated_tokens,
            # vLLM's spec-decode metrics: accepted ÷ drafted, and tokens per drafted sequence-step (1 + accepted)
            "spec_decode_num_drafts": self.num_drafts,
            "spec_decode_num_draft_tokens": self.num_draft_tokens,
            "spec_decode_num_accepted_tokens": self.num_accepted_tokens,
            "spec_decode_acceptance_rate": (
                self.num_accepted_tokens / self.num_draft_tokens if self.num_draft_tokens else None
            ),
            "spec_decode_mean_acceptance_length": (
                1 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else None
            ),
            "schedule_s": self.schedule_s,
            "forward_s": self.forward_s,
            "sample_s": self.sample_s,
            "detokenize_s": self.detokenize_s,
            "step_total_s": self.schedule_s + self.forward_s + self.sample_s + self.detokenize_s,
        }
