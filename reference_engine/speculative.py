"""Prompt-lookup (n-gram) speculative decoding for greedy sequences.

The draft for a decoding sequence is what followed the latest earlier occurrence of its last n tokens (the longest
n in [prompt_lookup_min, prompt_lookup_max] that occurred), up to `num_speculative_tokens` tokens, fewer for a
sequence whose drafts have lately been rejected (below). The step feeds the sequence's last token plus the draft,
so one forward gives the model's greedy choice after each of them; the draft is kept up to its first token that
differs from that choice, and the choice after the kept part is added too.
Every kept token is the model's own argmax given exactly the tokens before it, so the output is the same as
decoding one token per step; a step yields 1 to 1 + len(draft) tokens for the cost of a multi-row forward.

Only greedy sequences without stop strings get drafts (random sampling would need rejection sampling, stop strings
a cut inside a step's tokens). `min_tokens` holds per row: the sampler bans stop tokens at each draft position that
is still under it, so a drafted eos there is rejected as it would be chosen against.
"""

from __future__ import annotations

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
                self.ends[tuple(token_ids[end - n:end])] = end
        self.indexed = max(self.indexed, length)
        for n in range(min(self.max_n, length - 1), self.min_n - 1, -1):
            end = self.ends.get(tuple(token_ids[length - n:]))
            if end is not None:
                return token_ids[end:end + k]
        return []


# A draft token costs a row of every GEMM whether it is kept or not; on a CPU the GEMMs are compute-bound from a few
# dozen rows, so a draft pays only where it is likely to be kept. Each sequence keeps a running estimate of the
# chance that its next draft token is kept given the ones before it were (`acceptance`), drafts only as many
# tokens as keep that chance, compounded, at least MIN_KEEP_CHANCE, and while it drafts nothing the estimate
# recovers towards 1 so it tries again now and then. On this 2-core machine (issue 10's closing notes), fixed
# 3-token drafts kept 45% on the default ShareGPT sample and made its mean TPOT 19-28% worse; these keep 72.5%.
MIN_KEEP_CHANCE = 0.5
ACCEPTANCE_WEIGHT = 0.3  # of the newest draft's outcome in the running estimate
RECOVERY = 0.05  # per step without a draft, the estimate moves this share of the way back to 1


@dataclass(slots=True)
class DraftState:
    index: NgramIndex
    acceptance: float = 1.0  # optimistic at first: a sequence's first matches decide


class NgramProposer:
    def __init__(self, num_speculative_tokens: int, prompt_lookup_min: int, prompt_lookup_max: int,
                 max_model_len: int):
        self.k = num_speculative_tokens
        self.min_n, self.max_n = prompt_lookup_min, prompt_lookup_max
        self.max_model_len = max_model_len

    def propose(self, seq: Sequence, budget: int) -> list[int]:
        """Draft tokens for a sequence about to decode one token, within `budget` extra tokens this step."""
        p = seq.params
        if not p.greedy or p.stop or seq.num_output_tokens < 1:
            return []
        state = seq.draft_state
        if state is None:
            state = seq.draft_state = DraftState(NgramIndex(self.min_n, self.max_n))
        # The step always yields one token beyond the accepted draft: leave room for it.
        k = min(self.draft_length(state.acceptance), budget, p.max_tokens - seq.num_output_tokens - 1,
                self.max_model_len - seq.num_tokens - 1)
        draft = state.index.propose(seq.token_ids, k) if k > 0 else []
        if not draft:
            state.acceptance += (1 - state.acceptance) * RECOVERY
        return draft

    def draft_length(self, acceptance: float) -> int:
        """The most draft tokens (up to num_speculative_tokens) whose last is kept with chance >= MIN_KEEP_CHANCE."""
        k = 0
        while k < self.k and acceptance ** (k + 1) >= MIN_KEEP_CHANCE:
            k += 1
        return k

    def observe(self, seq: Sequence, num_draft: int, num_accepted: int) -> None:
        """A draft's outcome: tokens are tested in order up to the first rejected one."""
        state = seq.draft_state
        if state is None or num_draft == 0:
            return
        tested = num_accepted + (num_accepted < num_draft)
        state.acceptance += ACCEPTANCE_WEIGHT * (num_accepted / tested - state.acceptance)

