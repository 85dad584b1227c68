"""BlockManager: accounting, copy-on-write, prefix caching and lazy eviction, without a model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reference_engine.block_manager import BlockManager
from reference_engine.sampling_params import SamplingParams
from reference_engine.sequence import Sequence


def seq_of(tokens: list[int]) -> Sequence:
    return Sequence("r", list(tokens), len(tokens), SamplingParams())


def admit(bm: BlockManager, seq: Sequence) -> None:
    """Admit seq and compute its whole prompt, as the scheduler does with an unlimited budget."""
    num_new = seq.num_tokens - bm.num_cached_tokens(seq)
    assert bm.can_allocate(seq, seq.num_tokens)
    bm.allocate(seq, num_new)
    seq.num_computed_tokens += num_new


def decode(bm: BlockManager, seq: Sequence, token: int) -> list[tuple[int, int]]:
    seq.token_ids.append(token)
    copies = bm.append_slots(seq, 1)
    seq.num_computed_tokens += 1
    return copies


def test_allocate_append_free_accounting():
    bm = BlockManager(num_blocks=8, block_size=4)
    seq = seq_of([1, 2, 3, 4, 5])
    admit(bm, seq)
    assert bm.num_used_blocks == 2 and bm.num_free_blocks == 6 and bm.num_filled_slots == 5
    for t in (6, 7, 8):
        assert decode(bm, seq, t) == []
    assert bm.num_used_blocks == 2 and bm.num_filled_slots == 8
    decode(bm, seq, 9)  # 9th token opens a third block
    assert bm.num_used_blocks == 3 and bm.num_filled_slots == 9
    bm.check_invariants([seq])
    bm.free(seq)
    assert bm.num_used_blocks == 0 and bm.num_free_blocks == 8 and bm.num_filled_slots == 0 and seq.block_table == []
    bm.check_invariants()


def test_watermark_holds_back_admissions_not_growth():
    bm = BlockManager(num_blocks=10, block_size=4, watermark=0.2)  # 2 blocks held back from admissions
    a = seq_of(list(range(32)))  # 8 blocks: exactly free - watermark
    assert bm.can_allocate(a, 32)
    admit(bm, a)
    assert not bm.can_allocate(seq_of([1]), 1)
    assert bm.can_append(a, 1)  # a running sequence may dip into the watermark


def test_fork_shares_blocks_then_copy_on_write_per_writer():
    bm = BlockManager(num_blocks=16, block_size=4)
    parent = seq_of([1, 2, 3, 4, 5, 6])  # one full block and a half one
    admit(bm, parent)
    children = [parent.fork(i) for i in (1, 2, 3)]
    for child in children:
        bm.fork(parent, child)
    seqs = [parent, *children]
    assert bm.num_used_blocks == 2
    assert [bm.blocks[b].ref_count for b in parent.block_table] == [4, 4]
    copies = [decode(bm, s, 100 + i) for i, s in enumerate(seqs)]
    # The first three writers copy the shared partial block; the last one owns the original.
    assert [len(c) for c in copies] == [1, 1, 1, 0]
    assert all(src == parent.block_table[0] or src != dst for c in copies for src, dst in c)
    assert bm.num_cow_copies == 3 and bm.num_used_blocks == 1 + 4
    assert bm.blocks[parent.block_table[0]].ref_count == 4
    assert bm.num_filled_slots == 4 + 4 * 3
    bm.check_invariants(seqs)
    for s in seqs:
        bm.free(s)
    assert bm.num_used_blocks == 0
    bm.check_invariants()


def test_fork_on_a_full_last_block_needs_no_copy():
    bm = BlockManager(num_blocks=16, block_size=4)
    parent = seq_of([1, 2, 3, 4])
    admit(bm, parent)
    child = parent.fork(1)
    bm.fork(parent, child)
    assert decode(bm, parent, 5) == [] and decode(bm, child, 6) == []
    assert bm.num_cow_copies == 0 and bm.num_used_blocks == 3


def test_prefix_cache_hits_need_equal_tokens_and_leave_the_last_token():
    bm = BlockManager(num_blocks=16, block_size=4, enable_prefix_caching=True)
    a = seq_of(list(range(10)))
    admit(bm, a)
    b = seq_of(list(range(8)) + [50, 51, 52])
    assert bm.num_cached_tokens(b) == 8
    admit(bm, b)
    assert b.num_cached_tokens == 8 and b.block_table[:2] == a.block_table[:2]
    assert bm.num_prefix_hits == 2 and bm.num_used_blocks == 3 + 1
    # Same second block but a different first block: the chained hash misses from the start.
    assert bm.num_cached_tokens(seq_of([99, 1, 2, 3] + list(range(4, 10)))) == 0
    # A prompt that is exactly the cached blocks still computes its last block (its logits are needed).
    assert bm.num_cached_tokens(seq_of(list(range(8)))) == 4
    bm.check_invariants([a, b])


def test_lazy_eviction_keeps_freed_prefixes_until_their_block_is_needed():
    bm = BlockManager(num_blocks=4, block_size=4, enable_prefix_caching=True)
    a = seq_of(list(range(9)))
    admit(bm, a)
    bm.free(a)
    assert bm.num_free_blocks == 4  # free, yet still findable
    again = seq_of(list(range(9)))
    assert bm.num_cached_tokens(again) == 8
    admit(bm, again)
    assert again.num_cached_tokens == 8 and bm.num_used_blocks == 3
    bm.free(again)
    hog = seq_of([1000 + i for i in range(16)])  # needs all 4 blocks: evicts the cached ones
    admit(bm, hog)
    assert bm.cached_block_ids.keys() == {bm.blocks[b].hash for b in hog.block_table[:4]}
    bm.free(hog)
    assert bm.num_cached_tokens(seq_of(list(range(9)))) == 0
    bm.check_invariants()


def test_contiguous_reserves_max_model_len_up_front():
    bm = BlockManager(num_blocks=10, block_size=4, reserve_tokens=16)
    a = seq_of([1, 2])
    admit(bm, a)
    assert len(a.block_table) == 4 and bm.num_used_blocks == 4 and bm.num_filled_slots == 2
    for t in range(14):
        assert bm.can_append(a, 1)
        decode(bm, a, t)
    assert bm.num_used_blocks == 4 and bm.num_filled_slots == 16
    admit(bm, seq_of([1]))
    assert not bm.can_allocate(seq_of([1]), 1)  # 2 blocks left, a reservation is 4


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["admit", "decode", "fork", "free"]), st.integers(0, 10**6)), max_size=60),
    st.booleans(),
)
def test_random_operations_keep_exact_accounting(ops, prefix_caching):
    bm = BlockManager(num_blocks=12, block_size=4, enable_prefix_caching=prefix_caching)
    live: list[Sequence] = []
    for op, r in ops:
        if op == "admit":
            # Few distinct tokens, so prefixes repeat and the cache gets hits.
            seq = seq_of([r % 3 + k % 2 for k in range(1 + r % 11)])
            num_new = seq.num_tokens - bm.num_cached_tokens(seq)
            if bm.can_allocate(seq, seq.num_tokens):
                bm.allocate(seq, num_new)
                seq.num_computed_tokens += num_new
                assert seq.num_computed_tokens == seq.num_tokens
                live.append(seq)
        elif op == "decode" and live:
            seq = live[r % len(live)]
            seq.token_ids.append(r % 3)
            if bm.can_append(seq, 1):
                free_before = bm.num_free_blocks
                bm.append_slots(seq, 1)
                seq.num_computed_tokens += 1
                assert free_before - bm.num_free_blocks <= 1
            else:
                seq.token_ids.pop()
        elif op == "fork" and live:
            parent = live[r % len(live)]
            child = parent.fork(1)
            bm.fork(parent, child)
            live.append(child)
        elif op == "free" and live:
            bm.free(live.pop(r % len(live)))
        bm.check_invariants(live)
        for seq in live:
            assert len(seq.block_table) == -(-seq.num_computed_tokens // 4)
        # Hashed blocks hold exactly the tokens of the sequences that use them.
        for seq in live:
            for i, block_id in enumerate(seq.block_table):
                block = bm.blocks[block_id]
                if block.hash is not None:
                    assert list(block.token_ids) == seq.token_ids[i * 4 : (i + 1) * 4]
    for seq in live:
        bm.free(seq)
    assert bm.num_used_blocks == 0 and bm.num_filled_slots == 0
    bm.check_invariants()
