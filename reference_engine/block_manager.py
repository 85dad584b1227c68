"""KV block allocation: free list, reference counts, copy-on-write, prefix caching, exact accounting.

A block holds `block_size` token slots of K and V in every layer. A sequence's `block_table` lists its blocks in
token order. Blocks with `ref_count == 0` are free; a free block may still hold a cached prefix (its hash stays
registered) until the free list hands it out again: that is the lazy eviction. Free blocks are handed out
oldest-freed first, so recently used prefixes survive longest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from reference_engine.sequence import Sequence


@dataclass(slots=True, eq=False)
class Block:
    block_id: int
    ref_count: int = 0
    num_filled: int = 0  # token slots written (or being written this step)
    hash: int | None = None  # chained hash of this full block and all before it
    token_ids: tuple[int, ...] = ()  # contents of a hashed block, for the equality check


class BlockManager:
    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        enable_prefix_caching: bool = False,
        watermark: float = 0.0,
        reserve_tokens: int | None = None,
    ):
        """`reserve_tokens` set -> contiguous layout: every sequence takes that many slots at admission."""
        if num_blocks < 1:
            raise ValueError(f"the KV cache needs at least one block, got {num_blocks}")
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.reserve_blocks = None if reserve_tokens is None else -(-reserve_tokens // block_size)
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_block_ids: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.cached_block_ids: dict[int, int] = {}  # block hash -> block id
        self.watermark_blocks = int(watermark * num_blocks)
        self.num_filled_slots = 0  # over used blocks only
        # Cumulative counters for stats.
        self.num_prefix_queries = 0  # full prompt blocks looked up
        self.num_prefix_hits = 0  # of which found in the cache
        self.num_prefix_query_tokens = 0  # tokens of the sequences admitted with prefix caching (vLLM's "queries")
        self.num_cow_copies = 0

    @property
    def num_total_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_block_ids)

    @property
    def num_used_blocks(self) -> int:
        return len(self.blocks) - len(self.free_block_ids)

    def blocks_needed(self, num_tokens: int) -> int:
        if self.reserve_blocks is not None:
            return self.reserve_blocks
        return -(-num_tokens // self.block_size)

    # -- admission of a sequence that holds no blocks -------------------------------------------------------

    def _match_prefix(self, seq: Sequence) -> list[Block]:
        """Cached blocks equal to seq's leading full blocks; the last token is never served from the cache,
        because its logits are needed."""
        if not self.enable_prefix_caching:
            return []
        hits: list[Block] = []
        prev_hash = None
        for i in range((seq.num_tokens - 1) // self.block_size):
            tokens = tuple(seq.token_ids[i * self.block_size : (i + 1) * self.block_size])
            prev_hash = hash((prev_hash, tokens))
            block_id = self.cached_block_ids.get(prev_hash)
            if block_id is None or self.blocks[block_id].token_ids != tokens:
                break
            hits.append(self.blocks[block_id])
        return hits

    def num_cached_tokens(self, seq: Sequence) -> int:
        return len(self._match_prefix(seq)) * self.block_size

    def can_allocate(self, seq: Sequence, num_tokens: int) -> bool:
        """Can seq get blocks for its first `num_tokens` tokens (cached prefix included), above the watermark?"""
        hits = self._match_prefix(seq)
        revived = sum(1 for b in hits if b.ref_count == 0)  # cached but free: reviving takes a free block
        needed = self.blocks_needed(num_tokens) - len(hits) + revived
        return self.num_free_blocks - needed >= self.watermark_blocks

    def allocate(self, seq: Sequence, num_new_tokens: int) -> None:
        """Give seq its cached prefix plus blocks for `num_new_tokens` more; sets num_computed_tokens to the
        cached length (the scheduler advances it)."""
        assert not seq.block_table, "allocate() is for sequences without blocks"
        hits = self._match_prefix(seq)
        full_blocks = (seq.num_tokens - 1) // self.block_size if self.enable_prefix_caching else 0
        self.num_prefix_queries += full_blocks
        self.num_prefix_hits += len(hits)
        self.num_prefix_query_tokens += seq.num_tokens if self.enable_prefix_caching else 0
        for block in hits:
            if block.ref_count == 0:
                del self.free_block_ids[block.block_id]
                self.num_filled_slots += block.num_filled
            block.ref_count += 1
            seq.block_table.append(block.block_id)
        num_cached = len(hits) * self.block_size
        seq.num_computed_tokens = seq.num_cached_tokens = num_cached
        for _ in range(self.blocks_needed(num_cached + num_new_tokens) - len(hits)):
            seq.block_table.append(self._take_free_block().block_id)
        self._fill(seq, num_cached, num_cached + num_new_tokens)

    # -- growth of a running sequence -----------------------------------------------------------------------

    def _needs_cow(self, seq: Sequence) -> bool:
        if seq.num_computed_tokens % self.block_size == 0 or not seq.block_table:
            return False
        return self.blocks[seq.block_table[seq.num_computed_tokens // self.block_size]].ref_count > 1

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        end = seq.num_computed_tokens + num_new_tokens
        needed = max(self.blocks_needed(end) - len(seq.block_table), 0) + self._needs_cow(seq)
        return needed <= self.num_free_blocks

    def append_slots(self, seq: Sequence, num_new_tokens: int) -> list[tuple[int, int]]:
        """Make room for `num_new_tokens` more tokens of seq; returns (src, dst) block copies to do first."""
        copies = []
        if self._needs_cow(seq):
            # The partial block is shared with a sibling (parallel sampling): write into a private copy.
            index = seq.num_computed_tokens // self.block_size
            old = self.blocks[seq.block_table[index]]
            new = self._take_free_block()
            new.num_filled = old.num_filled
            self.num_filled_slots += new.num_filled
            old.ref_count -= 1
            seq.block_table[index] = new.block_id
            copies.append((old.block_id, new.block_id))
            self.num_cow_copies += 1
        end = seq.num_computed_tokens + num_new_tokens
        for _ in range(self.blocks_needed(end) - len(seq.block_table)):
            seq.block_table.append(self._take_free_block().block_id)
        self._fill(seq, seq.num_computed_tokens, end)
        return copies

    def truncate(self, seq: Sequence, num_tokens: int) -> None:
        """Speculative decoding's rollback: seq keeps the K/V of its first `num_tokens` tokens only (the slots of
        rejected draft tokens will be written again). Blocks past them go back; a kept block that now holds fewer
        tokens forgets a prefix hash made from draft tokens. A block shared with another sequence is left as it is
        (its content is right for the tokens it was hashed with); seq's next write into it copies it first."""
        bs = self.block_size
        keep = self.blocks_needed(num_tokens)  # the contiguous layout keeps its whole reservation
        for block_id in reversed(seq.block_table[keep:]):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self._unhash(block)
                self.num_filled_slots -= block.num_filled
                block.num_filled = 0
                self.free_block_ids[block_id] = None
        del seq.block_table[keep:]
        for index in range(num_tokens // bs, len(seq.block_table)):
            block = self.blocks[seq.block_table[index]]
            filled = max(min(num_tokens - index * bs, bs), 0)
            if block.ref_count == 1 and block.num_filled > filled:
                self._unhash(block)
                self.num_filled_slots -= block.num_filled - filled
                block.num_filled = filled
        seq.num_computed_tokens = min(seq.num_computed_tokens, num_tokens)

    def fork(self, parent: Sequence, child: Sequence) -> None:
        """Child shares every block of parent (paged layout only)."""
        assert self.reserve_blocks is None, "the contiguous layout does not share blocks"
        for block_id in parent.block_table:
            self.blocks[block_id].ref_count += 1
        child.block_table = list(parent.block_table)

    def free(self, seq: Sequence) -> None:
        # Tail first: the free list hands out the oldest entries first, so a prefix's head outlives its tail.
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.num_filled_slots -= block.num_filled
                self.free_block_ids[block_id] = None
        seq.block_table = []

    # -- internals -------------------------------------------------------------------------------------------

    def _take_free_block(self) -> Block:
        block_id, _ = self.free_block_ids.popitem(last=False)
        block = self.blocks[block_id]
        self._unhash(block)
        block.ref_count, block.num_filled = 1, 0
        return block

    def _unhash(self, block: Block) -> None:
        if block.hash is not None:
            if self.cached_block_ids.get(block.hash) == block.block_id:
                del self.cached_block_ids[block.hash]
            block.hash, block.token_ids = None, ()

    def _fill(self, seq: Sequence, start: int, end: int) -> None:
        """Tokens [start, end) of seq get slots this step; full blocks become findable by the prefix cache."""
        bs = self.block_size
        for index in range(start // bs, -(-end // bs)):
            block = self.blocks[seq.block_table[index]]
            filled = min(end - index * bs, bs)
            if filled > block.num_filled:
                self.num_filled_slots += filled - block.num_filled
                block.num_filled = filled
            if self.enable_prefix_caching and filled == bs and block.hash is None:
                prev_hash = self.blocks[seq.block_table[index - 1]].hash if index else None
                block.token_ids = tuple(seq.token_ids[index * bs : (index + 1) * bs])
                block.hash = hash((prev_hash, block.token_ids))
                self.cached_block_ids.setdefault(block.hash, block.block_id)

    def check_invariants(self, live_seqs: Iterable[Sequence] = ()) -> None:
        """Raise AssertionError if the accounting is inconsistent (for tests)."""
        assert self.num_free_blocks + self.num_used_blocks == self.num_total_blocks
        refs = [0] * len(self.blocks)
        for seq in live_seqs:
            assert len(set(seq.block_table)) == len(seq.block_table), "a block appears twice in one table"
            for block_id in seq.block_table:
                refs[block_id] += 1
        for block in self.blocks:
            assert block.ref_count == refs[block.block_id], f"block {block.block_id}: ref count {block.ref_count}"
            assert (block.ref_count == 0) == (block.block_id in self.free_block_ids)
        assert self.num_filled_slots == sum(b.num_filled for b in self.blocks if b.ref_count > 0)
        for h, block_id in self.cached_block_ids.items():
            assert self.blocks[block_id].hash == h
