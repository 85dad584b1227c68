"""Prompt-lookup speculative decoding: the n-gram index, which sequences get drafts, the KV rollback, and on the
bundled model the same tokens (and logprobs) as decoding one token per step, with fewer steps."""

from __future__ import annotations

import itertools
import random

import pytest
from engine_fixtures import NUM_TOKENS, greedy
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_engine.block_manager import BlockManager
from reference_engine.config import EngineConfig
from reference_engine.sampling_params import SamplingParams
from reference_engine.sequence import Sequence
from reference_engine.speculative import NgramIndex, NgramProposer, plan_draft_lengths


def brute_force_draft(tokens: list[int], k: int, min_n: int, max_n: int) -> list[int]:
    """The definition: longest n first; the latest earlier occurrence of the last n tokens; what followed it."""
    for n in range(min(max_n, len(tokens) - 1), min_n - 1, -1):
        suffix = tokens[-n:]
        for end in range(len(tokens) - 1, n - 1, -1):
            if tokens[end - n : end] == suffix:
                return tokens[end : end + k]
    return []


@settings(max_examples=200, deadline=None)
@given(
    tokens=st.lists(st.integers(0, 4), min_size=1, max_size=40),
    grow=st.lists(st.integers(1, 4), max_size=8),
    k=st.integers(1, 5),
    min_n=st.integers(1, 3),
    span=st.integers(0, 2),
)
def test_ngram_index_matches_the_definition_as_the_sequence_grows(tokens, grow, k, min_n, span):
    index = NgramIndex(min_n, min_n + span)
    start = len(tokens) - sum(grow) if sum(grow) < len(tokens) else 1
    lengths = [start]
    for g in grow:
        lengths.append(min(lengths[-1] + g, len(tokens)))
    for length in lengths:  # the same index asked again after every growth, as the engine does
        prefix = tokens[:length]
        assert index.propose(prefix, k) == brute_force_draft(prefix, k, min_n, min_n + span)


def test_ngram_index_prefers_the_longest_then_the_latest_match():
    # "7 8" occurred twice (followed by 1 and by 2); the 3-gram "6 7 8" once, followed by 3.
    tokens = [6, 7, 8, 3, 4, 7, 8, 1, 5, 7, 8, 2, 0, 6, 7, 8]
    assert NgramIndex(1, 3).propose(tokens, 2) == [3, 4]
    assert NgramIndex(1, 2).propose(tokens, 2) == [2, 0]  # latest "7 8"
    assert NgramIndex(2, 3).propose([1, 2, 3, 4], 3) == []  # no repeat: no draft
    assert NgramIndex(1, 1).propose([5], 3) == []  # nothing before the suffix


def seq(tokens: list[int], num_prompt: int, **params) -> Sequence:
    return Sequence("r", list(tokens), num_prompt, SamplingParams(**{"temperature": 0, **params}))


def draft(p: NgramProposer, s: Sequence, budget: int, certain_rows: int = 1) -> list[int]:
    """What the scheduler does for one decoding sequence: plan its length for the step, then propose."""
    return p.propose(s, p.plan([s], certain_rows, budget)[0])


def test_proposer_drafts_only_for_greedy_decoding_sequences_and_within_their_limits():
    p = NgramProposer(
        num_speculative_tokens=4, prompt_lookup_min=1, prompt_lookup_max=2, max_model_len=64, overhead_rows=24.0
    )
    tokens = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]
    assert draft(p, seq(tokens, 8, max_tokens=16), budget=10) == [3, 4, 5, 1]
    assert draft(p, seq(tokens, 8, max_tokens=16), budget=2) == [3, 4]  # the step's token budget
    assert draft(p, seq(tokens, 8, max_tokens=6), budget=10) == [3]  # 4 out + 1 draft + the bonus token = 6
    assert draft(p, seq(tokens, 8, max_tokens=5), budget=10) == []
    assert draft(p, seq(tokens, 12, max_tokens=16), budget=10) == []  # no output yet: prefill's last token
    assert draft(p, seq(tokens, 8, max_tokens=16, temperature=0.7), budget=10) == []
    assert draft(p, seq(tokens, 8, max_tokens=16, stop=["x"]), budget=10) == []
    assert draft(p, seq(tokens, 8, max_tokens=16, min_tokens=16), budget=10) == [3, 4, 5, 1]  # banned per row
    near_end = NgramProposer(4, 1, 2, max_model_len=14, overhead_rows=24.0)
    assert draft(near_end, seq(tokens, 8, max_tokens=16), budget=10) == [3]  # 12 tokens + 1 + bonus = 14
    sampled = seq(tokens, 8, max_tokens=16, temperature=0.7)
    draft(p, sampled, budget=10)
    assert sampled.draft_state is None  # no n-gram index kept for a sequence that never drafts


def tokens_per_cost(acceptances, lengths, certain_rows, overhead_rows):
    kept = sum(a**j for a, k in zip(acceptances, lengths) for j in range(1, k + 1))
    return (certain_rows + kept) / (overhead_rows + certain_rows + sum(lengths))


@settings(max_examples=300, deadline=None)
@given(
    acceptances=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    caps=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    certain_extra=st.integers(0, 40),
    room=st.integers(0, 8),
    overhead=st.floats(0.0, 64.0),
)
def test_planned_draft_lengths_give_the_most_tokens_per_cost(acceptances, caps, certain_extra, room, overhead):
    """Against every combination of lengths within the caps and the room: none yields more expected tokens per unit
    of step cost than the plan."""
    caps = caps[: len(acceptances)]
    certain = len(acceptances) + certain_extra
    plan = plan_draft_lengths(acceptances, caps, certain, room, overhead)
    assert all(0 <= k <= c for k, c in zip(plan, caps)) and sum(plan) <= room
    best = max(
        tokens_per_cost(acceptances, ks, certain, overhead)
        for ks in itertools.product(*(range(c + 1) for c in caps))
        if sum(ks) <= room
    )
    assert tokens_per_cost(acceptances, plan, certain, overhead) >= best - 1e-9


def test_planned_draft_lengths_shrink_as_the_step_fills():
    # Alone in a step, a sequence drafts to its cap even if half its draft tokens are rejected (the step's fixed
    # cost, 24 rows' worth, is paid anyway); in a step of 64 sequences a draft row must be likelier than the
    # step's tokens per cost so far: 0.9 and 0.81 are, 0.729 is not.
    assert plan_draft_lengths([0.5], [3], 1, 100, 24.0) == [3]
    assert plan_draft_lengths([0.9] * 64, [3] * 64, 64, 448, 24.0) == [2] * 64
    assert plan_draft_lengths([0.5] * 64, [3] * 64, 64, 448, 24.0) == [0] * 64
    # prompt tokens in the step are certain tokens too: with 400 of them, only a sure draft token pays
    assert plan_draft_lengths([0.9, 1.0], [3, 3], 402, 110, 24.0) == [0, 3]
    # the room left by the token budget, most likely tokens first; no fixed cost: nothing is worth a draft row
    assert plan_draft_lengths([0.6, 0.95], [3, 3], 2, 2, 24.0) == [0, 2]
    assert plan_draft_lengths([1.0, 0.9], [3, 3], 2, 10, 0.0) == [0, 0]


def test_scheduler_weighs_drafts_against_waiting_prompt_tokens(model_dir):
    from reference_engine.scheduler import Scheduler

    config = EngineConfig(str(model_dir), speculative="ngram", max_num_batched_tokens=512)
    bm = BlockManager(64, 16)
    sched = Scheduler(config, bm)
    decoding = seq([1, 2, 3, 1, 2, 3, 1, 2], 4, max_tokens=100)
    bm.allocate(decoding, decoding.num_tokens)
    decoding.num_computed_tokens = decoding.num_tokens - 1
    sched.running.append(decoding)
    out = sched.schedule()  # alone: a full draft
    assert [(s.seq is decoding, s.num_draft) for s in out.scheduled] == [(True, 3)]
    decoding.token_ids[-3:] = []  # the engine takes the draft out again and keeps nothing (here)
    bm.truncate(decoding, decoding.num_tokens - 1)
    decoding.num_computed_tokens = decoding.num_tokens - 1
    decoding.draft_state.acceptance = 0.9
    sched.add(seq(list(range(100, 500)), 400, max_tokens=10))  # a 400-token prompt waits for the budget
    out = sched.schedule()
    assert [s.num_draft for s in out.scheduled] == [0, 0] and out.scheduled[1].num_new_tokens == 400


def test_sampler_bans_stop_tokens_per_draft_row_under_min_tokens():
    import torch

    from reference_engine.sampler import Sampler

    s = seq([1, 2, 3, 4], 2, max_tokens=10, min_tokens=4)  # 2 output tokens so far
    logits = torch.zeros(4, 8)
    logits[:, 7] = 5.0  # eos (7) is everyone's first choice
    result = Sampler(torch.device("cpu"), 0, eos_token_ids=(7,))(logits, [s] * 4)
    # rows choose output tokens 3, 4, 5, 6: eos is banned while fewer than 4 precede it
    assert result.token_ids == [0, 0, 7, 7]
    other = seq([1, 2, 3, 4], 2, max_tokens=10, min_tokens=4)
    assert Sampler(torch.device("cpu"), 0, eos_token_ids=(7,))(logits[:2], [s, other]).token_ids == [0, 0]


def test_each_sequences_estimate_follows_its_drafts():
    p = NgramProposer(
        num_speculative_tokens=3, prompt_lookup_min=1, prompt_lookup_max=2, max_model_len=4096, overhead_rows=24.0
    )
    s = seq([1, 2, 3] * 40, 60, max_tokens=1000)
    other = seq([1, 2, 3] * 40, 60, max_tokens=1000)
    busy = 64  # the rows of a step with 62 other decoding sequences

    def step(*seqs: Sequence) -> list[int]:
        return [len(p.propose(x, k)) for x, k in zip(seqs, p.plan(list(seqs), busy, 512 - busy))]

    assert step(s, other) == [3, 3]  # optimistic at first
    p.observe(s, 3, 0)  # rejected at once, twice: 1 -> 0.7 -> 0.49
    p.observe(s, 1, 0)
    assert s.draft_state.acceptance == pytest.approx(0.49)
    assert step(s, other) == [0, 3]  # too unlikely for a busy step ...
    assert len(draft(p, s, budget=100)) == 3  # ... worth a whole draft in a step of its own
    quiet = 0
    while step(s, other)[0] == 0:  # with no evidence its estimate recovers and it tries again
        quiet += 1
    assert 1 <= quiet <= 20
    for _ in range(4):  # kept drafts bring it back to full length
        p.observe(s, 1, 1)
    assert step(s, other) == [3, 3]
    p.observe(other, 3, 2)  # two kept of three tested: 1 -> 0.9
    assert other.draft_state.acceptance == pytest.approx(0.9)
    assert step(s, other)[1] == 2  # 0.9 and 0.81 pay in a busy step, 0.729 does not


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"speculative": "eagle"}, "speculative='eagle': expected one of off, ngram"),
        ({"num_speculative_tokens": 0}, "num_speculative_tokens must be >= 1"),
        ({"prompt_lookup_min": 3, "prompt_lookup_max": 2}, "prompt_lookup_min=3 is above prompt_lookup_max=2"),
    ],
)
def test_config_refuses_bad_speculative_options(bad, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig("m", **bad)


def draft_step(bm: BlockManager, s: Sequence, draft: list[int]) -> None:
    """What the scheduler does for a decoding sequence with a draft."""
    s.token_ids += draft
    bm.append_slots(s, 1 + len(draft))
    s.num_computed_tokens += 1 + len(draft)


def test_truncate_returns_draft_blocks_and_forgets_hashes_of_draft_tokens():
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=True)
    s = seq([1, 2, 3, 4, 5, 6], 6)
    bm.allocate(s, 6)
    s.num_computed_tokens = 6
    s.token_ids.append(7)  # sampled; its K/V comes with the next step
    draft_step(bm, s, [8, 9, 10, 11])  # positions 6..10: block 1 fills up (hashed), block 2 opens
    assert len(s.block_table) == 3 and bm.num_filled_slots == 11
    block1 = bm.blocks[s.block_table[1]]
    assert block1.hash is not None and block1.token_ids == (5, 6, 7, 8)
    # Only the first draft token is kept: K/V valid for 8 tokens (1..8); 9 is the model's own next token.
    del s.token_ids[-4:]
    s.token_ids += [8, 99]
    bm.truncate(s, 8)
    assert len(s.block_table) == 2 and bm.num_used_blocks == 2 and bm.num_filled_slots == 8
    assert block1.hash is not None  # tokens 5..8 were right: still findable
    bm.check_invariants([s])
    draft_step(bm, s, [])  # decode 99 at position 8: a fresh third block
    # Rejecting inside a full block: it loses its hash (made from draft tokens) and its filled count.
    s.token_ids.append(100)
    draft_step(bm, s, [101, 102, 103])  # positions 9..12
    block2 = bm.blocks[s.block_table[2]]
    assert block2.hash is not None and block2.token_ids == (99, 100, 101, 102)
    cached_before = dict(bm.cached_block_ids)
    del s.token_ids[-3:]
    s.token_ids.append(55)
    bm.truncate(s, 10)  # kept 1..100 (10 tokens); 55 is next
    assert block2.hash is None and block2.num_filled == 2 and block2.block_id not in bm.cached_block_ids.values()
    assert len(cached_before) == len(bm.cached_block_ids) + 1
    assert bm.num_filled_slots == 10
    bm.check_invariants([s])


def test_truncate_leaves_a_shared_block_to_copy_on_write():
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=True)
    s = seq([1, 2, 3], 3)
    bm.allocate(s, 3)
    s.num_computed_tokens = 3
    s.token_ids.append(4)
    draft_step(bm, s, [5, 6, 7, 8])  # block 1 = (5, 6, 7, 8), hashed, K/V of those tokens
    other = seq([1, 2, 3, 4, 5, 6, 7, 8, 9], 9)  # admitted in the same step: hits both full blocks
    assert bm.num_cached_tokens(other) == 8
    bm.allocate(other, 1)
    shared = bm.blocks[s.block_table[1]]
    assert shared.ref_count == 2
    del s.token_ids[-4:]
    s.token_ids += [5, 42]
    bm.truncate(s, 5)  # s keeps 1..5 and will write 42 at position 5, inside the shared block
    assert shared.hash is not None and shared.num_filled == 4  # still right for `other`
    s.token_ids.append(43)
    copies = bm.append_slots(s, 1)
    assert copies and copies[0][0] == shared.block_id and s.block_table[1] != shared.block_id
    bm.check_invariants([s, other])


def test_truncate_keeps_a_contiguous_reservation():
    bm = BlockManager(num_blocks=8, block_size=4, reserve_tokens=16)
    s = seq([1, 2, 3], 3)
    bm.allocate(s, 3)
    s.num_computed_tokens = 3
    s.token_ids.append(4)
    draft_step(bm, s, [5, 6])
    bm.truncate(s, 4)
    assert len(s.block_table) == 4 and bm.num_filled_slots == 4
    bm.check_invariants([s])


# -- on the model ---------------------------------------------------------------------------------------------

BLOCK_BYTES = 2 * 30 * 16 * 3 * 64 * 4


def spec_engine(model_dir, **options):
    from reference_engine import LLMEngine

    return LLMEngine(model_dir, kv_cache_bytes=64 * BLOCK_BYTES, max_model_len=256, speculative="ngram", **options)


def run_checked(eng, prompts, params) -> list:
    """generate(), checking the block accounting after every step."""
    ids = [f"q{i}" for i in range(len(prompts))]
    for request_id, prompt, p in zip(ids, prompts, params):
        eng.add_request(request_id, prompt, p)
    final = {}
    while eng.has_unfinished_requests():
        for out in eng.step():
            if out.finished:
                final[out.request_id] = out
        eng.block_manager.check_invariants(eng.scheduler.running)
    assert eng.block_manager.num_used_blocks == 0
    return [final[i] for i in ids]


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"attention_backend": "torch", "block_size": 4},
        {"num_speculative_tokens": 6, "max_num_batched_tokens": 40},
        {"enable_prefix_caching": False, "prompt_lookup_min": 2},
    ],
)
def test_speculative_greedy_tokens_identical_to_hf_in_fewer_steps(model_dir, prompt_ids, hf_greedy, options):
    eng = spec_engine(model_dir, **options)
    outs = run_checked(eng, prompt_ids, [greedy()] * len(prompt_ids))
    assert [o.token_ids for o in outs] == hf_greedy
    summary = eng.stats_summary()
    assert summary["num_generated_tokens"] == NUM_TOKENS * len(prompt_ids)
    drafted, accepted = summary["spec_decode_num_draft_tokens"], summary["spec_decode_num_accepted_tokens"]
    assert 0 < accepted <= drafted
    assert summary["spec_decode_acceptance_rate"] == accepted / drafted
    steps = eng.stats.steps
    assert sum(s.num_accepted_tokens for s in steps) == accepted
    assert sum(s.num_draft_tokens for s in steps) == drafted
    # Every step's tokens: prefill + decode rows, each decoding sequence one row plus its draft.
    assert all(s.num_decode_tokens == s.num_decode_seqs + s.num_draft_tokens for s in steps)
    # Decoding one token at a time takes a sequence-step per token after the first; kept drafts save steps.
    assert sum(s.num_decode_seqs for s in steps) < len(prompt_ids) * (NUM_TOKENS - 1)
    eng.close()


@pytest.mark.slow
def test_speculative_keeps_logprobs_stops_limits_and_sampled_rows(model_dir, prompt_ids, hf_greedy):
    from reference_engine import LLMEngine

    plain = LLMEngine(model_dir, kv_cache_bytes=64 * BLOCK_BYTES, max_model_len=256)
    eng = spec_engine(model_dir)
    repetitive = prompt_ids[6]  # "the cat sat on the mat." three times: long drafts, nearly all kept
    rng = random.Random(0)
    params = [SamplingParams(temperature=0, max_tokens=m, logprobs=2) for m in (1, 2, 3, 5, 17)]
    # A stop token met inside an accepted draft ends the output on it, as without drafts.
    stop_at = next(k for k in range(4, NUM_TOKENS) if hf_greedy[6][k] not in hf_greedy[6][:k])
    params.append(SamplingParams(temperature=0, max_tokens=40, stop_token_ids=[hf_greedy[6][stop_at]]))
    # Sampled rows get no draft; with their own seeds their tokens do not depend on the rest of the batch.
    params += [SamplingParams(temperature=0.9, top_p=0.95, seed=rng.randrange(1000), max_tokens=12) for _ in range(2)]
    prompts = [repetitive] * len(params)
    expected = plain.generate(prompts, params)
    got = run_checked(eng, prompts, params)
    assert [o.token_ids for o in got] == [o.token_ids for o in expected]
    assert [len(o.token_ids) for o in got[:5]] == [1, 2, 3, 5, 17]
    assert got[5].token_ids == hf_greedy[6][: stop_at + 1] and got[5].finish_reason == "stop"
    for g, e in zip(got[:5], expected[:5]):
        for lg, le in zip(g.outputs[0].logprobs, e.outputs[0].logprobs):
            assert lg.keys() == le.keys()
            assert all(abs(lg[t] - le[t]) < 1e-4 for t in lg)
    assert [o.text for o in got] == [o.text for o in expected]
    assert eng.stats_summary()["spec_decode_num_accepted_tokens"] > 0
    assert eng.info()["speculative"] == "ngram" and plain.info()["speculative"] == "off"
    plain.close()
    eng.close()


@pytest.mark.slow
def test_speculative_under_preemption(model_dir, prompt_ids, hf_greedy):
    from reference_engine import LLMEngine

    eng = LLMEngine(
        model_dir,
        kv_cache_bytes=12 * BLOCK_BYTES,
        max_model_len=256,
        max_num_batched_tokens=32,
        speculative="ngram",
        num_speculative_tokens=5,
    )
    outs = run_checked(eng, prompt_ids, [greedy()] * len(prompt_ids))
    assert [o.token_ids for o in outs] == hf_greedy
    summary = eng.stats_summary()
    assert summary["num_preemptions"] > 0 and summary["spec_decode_num_accepted_tokens"] > 0
    eng.close()
