"""Prompt-lookup (n-gram) speculative decoding for greedy sequences.

The draft for a decoding sequence is what followed the latest earlier occurrence of its last n tokens (the longest
n in [prompt_lookup_min, prompt_lookup_max] that occurred), up to `num_speculative_tokens` tokens, as many as the
step's cost makes worth it given how often the sequence's drafts have been kept (below). The step feeds the
sequence's last token plus the draft, so one forward gives the model's greedy choice after each of them; the draft
is kept up to its first token that differs from that choice, and the choice after the kept part is added too.
Every kept token is the model's own argmax given exactly the tokens before it, so the output is the same as
decoding one token per step; a step yields 1 to 1 + len(draft) tokens for the cost of a multi-row forward.

Only greedy sequences without stop strings get drafts (random sampling would need rejection sampling, stop strings
a cut inside a step's tokens). `min_tokens` holds per row: the sampler bans stop tokens at each draft position that
is still under it, so a drafted eos there is rejected as it would be chosen against.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from reference_engine.sequence import Sequence


@dataclass(slots=True)
class NgramIndex:
    """For each n-gram of a sequence, the position right after its latest occurrence; kept up to date as the
    sequence grows, so a lookup costs a few dict operations instead of a scan of the whole sequence."""

    min_n: int
    max_n: int
    ends: dict[tuple[int, ...], int] = field(default_factory=dict)
    indexed: int = 0  # n-grams ending before this position are in `ends`

    def propose(self, token_ids: list[int], k: int) -> list[int]:
        length = len(token_ids)
        # Index n-grams that have a token after them (ends < length), so the sequence's own suffix never
        # matches itself.
        for end in range(max(self.indexed, 1), length):
            for n in range(self.min_n, min(self.max_n, end) + 1):
                self.ends[tuple(token_ids[end - n : end])] = end
        self.indexed = max(self.indexed, length)
        for n in range(min(self.max_n, length - 1), self.min_n - 1, -1):
            end = self.ends.get(tuple(token_ids[length - n :]))
            if end is not None:
                return token_ids[end : end + k]
        return []


# How long each sequence's draft is, decided for the whole step at once. A draft token costs a row of every GEMM
# whether it is kept or not, and a step also costs something that does not grow with its rows (reading the
# weights, per-layer overhead): `overhead_rows` rows' worth. With T rows in all, the step costs about
# overhead_rows + T and yields its certain tokens (one per decoding sequence, one per prompt token) plus, for
# each draft token, the chance it is kept. Adding a draft token whose chance is q raises tokens per unit of cost
# exactly when q > tokens / (overhead_rows + T) so far, so draft tokens go in most likely first while that holds
# (each sequence's estimate compounded: the j-th token is kept only if the ones before it were). Few rows: the
# overhead dominates and even unlikely tokens are worth a row; a full step: only near-certain ones are.
# Each sequence keeps a running estimate of the chance that its next draft token is kept given the ones before it
# were (`acceptance`); while it drafts nothing the estimate recovers towards 1 so it tries again now and then.
ACCEPTANCE_WEIGHT = 0.3  # of the newest draft's outcome in the running estimate
RECOVERY = 0.05  # per step without a draft, the estimate moves this share of the way back to 1


def plan_draft_lengths(
    acceptances: list[float], caps: list[int], certain_rows: int, room: int, overhead_rows: float
) -> list[int]:
    """Draft tokens for each of a step's decoding sequences (above): `acceptances[i]` is sequence i's chance of
    keeping a draft token, `caps[i]` the most it may draft, `certain_rows` the step's rows without drafts (each a
    certain token), `room` the draft tokens the step's token budget leaves."""
    lengths = [0] * len(acceptances)
    tokens, cost = float(certain_rows), overhead_rows + certain_rows
    heap = [(-a, i) for i, (a, c) in enumerate(zip(acceptances, caps)) if a > 0 and c > 0]
    heapq.heapify(heap)
    while heap and room > 0:
        q, i = heapq.heappop(heap)
        q = -q
        if q * cost <= tokens:  # every other candidate is as unlikely or less
            break
        lengths[i] += 1
        tokens, cost, room = tokens + q, cost + 1, room - 1
        if lengths[i] < caps[i]:
            heapq.heappush(heap, (-q * acceptances[i], i))
    return lengths


@dataclass(slots=True)
class DraftState:
    index: NgramIndex
    acceptance: float = 1.0  # optimistic at first: a sequence's first matches decide


class NgramProposer:
    def __init__(
        self,
        num_speculative_tokens: int,
        prompt_lookup_min: int,
        prompt_lookup_max: int,
        max_model_len: int,
        overhead_rows: float,
    ):
        self.k = num_speculative_tokens
        self.min_n, self.max_n = prompt_lookup_min, prompt_lookup_max
        self.max_model_len = max_model_len
        self.overhead_rows = overhead_rows

    def cap(self, seq: Sequence) -> int:
        """The most draft tokens a sequence about to decode one token may get (0: none, e.g. sampled)."""
        p = seq.params
        if not p.greedy or p.stop or seq.num_output_tokens < 1:
            return 0
        # The step always yields one token beyond the accepted draft: leave room for it.
        return max(0, min(self.k, p.max_tokens - seq.num_output_tokens - 1, self.max_model_len - seq.num_tokens - 1))

    def plan(self, seqs: list[Sequence], certain_rows: int, room: int) -> list[int]:
        """Draft lengths for a step's decoding sequences: plan_draft_lengths with their estimates and caps."""
        caps = [self.cap(s) for s in seqs]
        for seq, cap in zip(seqs, caps):
            if cap > 0 and seq.draft_state is None:
                seq.draft_state = DraftState(NgramIndex(self.min_n, self.max_n))
        return plan_draft_lengths(
            [s.draft_state.acceptance if c > 0 else 0.0 for s, c in zip(seqs, caps)],
            caps,
            certain_rows,
            room,
            self.overhead_rows,
        )

    def propose(self, seq: Sequence, k: int) -> list[int]:
        """Up to k draft tokens for a sequence about to decode one token: k from `plan` (so within its cap), cut to
        the step's remaining budget."""
        state = seq.draft_state
        if state is None:
            return []
        draft = state.index.propose(seq.token_ids, k) if k > 0 else []
        if not draft:
            state.acceptance += (1 - state.acceptance) * RECOVERY
        return draft

    def observe(self, seq: Sequence, num_draft: int, num_accepted: int) -> None:
        """A draft's outcome: tokens are tested in order up to the first rejected one."""
        state = seq.draft_state
        if state is None or num_draft == 0:
            return
        tested = num_accepted + (num_accepted < num_draft)
        state.acceptance += ACCEPTANCE_WEIGHT * (num_accepted / tested - state.acceptance)
