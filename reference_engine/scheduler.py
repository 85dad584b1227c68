"""Continuous batching: which sequences run this step, and how many of their tokens.

Each step first serves the running sequences in order (a decode token each, or the next chunk of a prefill),
preempting from the back of the queue when blocks run out, then admits waiting sequences first-come first-served
while the token budget, `max_num_seqs` and free blocks allow. Preemption is by recompute: the victim drops its
blocks and goes back to the front of the waiting queue; its prompt and output are prefilled again later.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

from reference_engine.block_manager import BlockManager
from reference_engine.config import EngineConfig
from reference_engine.sequence import Sequence, SequenceStatus
from reference_engine.speculative import NgramProposer


@dataclass(slots=True)
class ScheduledSeq:
    seq: Sequence
    start: int  # position of the first token computed this step
    num_new_tokens: int
    num_draft: int = 0  # speculative: the last num_draft of the new tokens are a draft, each needing logits

    @property
    def needs_sample(self) -> bool:
        """True when this step computes the sequence's last token, so its logits give the next one."""
        return self.start + self.num_new_tokens == self.seq.num_tokens


@dataclass(slots=True)
class SchedulerOutput:
    scheduled: list[ScheduledSeq] = field(default_factory=list)
    blocks_to_copy: list[tuple[int, int]] = field(default_factory=list)  # (src, dst), before the forward
    preempted: list[Sequence] = field(default_factory=list)
    failed: list[Sequence] = field(default_factory=list)  # finished with finish_reason "error"
    num_prefix_hit_blocks: int = 0

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)


class Scheduler:
    def __init__(self, config: EngineConfig, block_manager: BlockManager):
        self.max_num_seqs = config.max_num_seqs
        self.max_num_batched_tokens = config.max_num_batched_tokens
        self.max_model_len = config.max_model_len
        self.chunked_prefill = config.enable_chunked_prefill
        self.forks_after_prefill = config.kv_layout == "paged"
        self.block_manager = block_manager
        self.proposer = (
            NgramProposer(
                config.num_speculative_tokens,
                config.prompt_lookup_min,
                config.prompt_lookup_max,
                config.max_model_len,
                config.speculative_overhead_rows,
            )
            if config.speculative == "ngram"
            else None
        )
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        bm = self.block_manager
        drafts = self._plan_drafts() if self.proposer else {}
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            num_new = seq.num_tokens - seq.num_computed_tokens
            draft = self.proposer.propose(seq, min(drafts[id(seq)], budget - 1)) if id(seq) in drafts else []
            if draft and not bm.can_append(seq, 1 + len(draft)):
                draft = []  # no room for the draft: decode one token (or preempt) as usual
            if num_new > budget:
                if not self.chunked_prefill:
                    i += 1
                    continue
                num_new = budget
            while not bm.can_append(seq, num_new) and len(self.running) - 1 > i:
                self._preempt(self.running.pop(), out)
            if not bm.can_append(seq, num_new):
                self.running.pop(i)
                if i == 0 and not self.running:
                    # Alone with every block free or evictable and still short: it can never fit.
                    self._fail(
                        seq,
                        out,
                        f"needs more than the {bm.num_total_blocks} KV blocks of the cache ({seq.num_tokens} tokens)",
                    )
                else:
                    self._preempt(seq, out)
                break
            if draft:
                # The draft rides in token_ids for this step's forward; the engine takes it out again and keeps
                # what the model agrees with (LLMEngine._accept).
                seq.token_ids += draft
                num_new += len(draft)
            out.blocks_to_copy += bm.append_slots(seq, num_new)
            out.scheduled.append(ScheduledSeq(seq, seq.num_computed_tokens, num_new, len(draft)))
            seq.num_computed_tokens += num_new
            budget -= num_new
            i += 1

        # vLLM's rule: no admissions in a step that preempted, or the victims would be re-admitted at once.
        while self.waiting and budget > 0 and not out.preempted:
            seq = self.waiting[0]
            if error := self._never_fits(seq):
                self.waiting.popleft()
                self._fail(seq, out, error)
                continue
            if self.running and self._num_seq_slots(self.running) + self._num_seq_slots([seq]) > self.max_num_seqs:
                break
            num_cached = bm.num_cached_tokens(seq)
            num_new = seq.num_tokens - num_cached
            if num_new > budget:
                if not self.chunked_prefill:
                    break
                num_new = budget
            if not bm.can_allocate(seq, num_cached + num_new):
                break
            self.waiting.popleft()
            bm.allocate(seq, num_new)
            out.num_prefix_hit_blocks += seq.num_cached_tokens // bm.block_size
            out.scheduled.append(ScheduledSeq(seq, seq.num_computed_tokens, num_new))
            seq.num_computed_tokens += num_new
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            budget -= num_new
        return out

    def _plan_drafts(self) -> dict[int, int]:
        """Draft length per decoding sequence (by id) for this step. Its rows without drafts: the decoding
        sequences and the prompt tokens that the token budget left to them would take (running chunks, then the
        waiting queue), each a certain token that a draft row would compete with."""
        decoding = [s for s in self.running if s.num_tokens - s.num_computed_tokens == 1]
        if not decoding:
            return {}
        room = self.max_num_batched_tokens - len(decoding)
        prompt_rows = 0
        for seq in itertools.chain(self.running, self.waiting):
            if prompt_rows >= room:
                break
            if seq.num_tokens - seq.num_computed_tokens > 1 or seq.status == SequenceStatus.WAITING:
                prompt_rows += seq.num_tokens - seq.num_computed_tokens
        certain = len(decoding) + min(prompt_rows, room)
        lengths = self.proposer.plan(decoding, certain, room)
        return {id(s): k for s, k in zip(decoding, lengths)}

    def _num_seq_slots(self, seqs: list[Sequence]) -> int:
        """Sequences these will be: an unforked parallel-sampling request becomes n once its prompt is in."""
        if not self.forks_after_prefill:
            return len(seqs)
        return sum(s.params.n if s.num_output_tokens == 0 else 1 for s in seqs)

    def _never_fits(self, seq: Sequence) -> str | None:
        if seq.num_tokens > self.max_model_len:
            return f"prompt has {seq.num_tokens} tokens, more than max_model_len={self.max_model_len}"
        needed = self.block_manager.blocks_needed(seq.num_tokens)
        if needed > self.block_manager.num_total_blocks:
            return (
                f"prompt needs {needed} KV blocks but the cache has {self.block_manager.num_total_blocks} "
                f"({seq.num_tokens} tokens)"
            )
        return None

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self.block_manager.free(seq)
        seq.num_computed_tokens = 0
        seq.num_preemptions += 1
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)  # victims come from the back of running, so FCFS order is kept
        self.num_preemptions += 1
        out.preempted.append(seq)

    def _fail(self, seq: Sequence, out: SchedulerOutput, error: str) -> None:
        self.block_manager.free(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason, seq.error = "error", error
        out.failed.append(seq)

    def fork(self, parent: Sequence, children: list[Sequence]) -> None:
        """Parallel sampling: children share parent's blocks and run right behind it."""
        for child in children:
            self.block_manager.fork(parent, child)
        at = self.running.index(parent) + 1
        self.running[at:at] = children

    def abort(self, seq: Sequence) -> None:
        if seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        elif seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = seq.finish_reason or "abort"

    def free_finished(self) -> None:
        """Release the blocks of sequences the engine marked finished this step."""
        if any(s.is_finished for s in self.running):
            for seq in self.running:
                if seq.is_finished:
                    self.block_manager.free(seq)
            self.running = [s for s in self.running if not s.is_finished]
