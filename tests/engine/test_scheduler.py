"""Scheduler invariants under random add/step/abort sequences, with a fake model that reads a fake KV cache.

The fake cache stores token ids instead of K/V, written and read through the real ModelRunner.prepare()
slot mappings and block tables. If scheduling, preemption, copy-on-write or prefix caching ever pointed a sequence
at the wrong slots, the tokens it reads back would differ from its own.
"""

from __future__ import annotations

import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_engine.block_manager import BlockManager
from reference_engine.config import EngineConfig
from reference_engine.model_runner import ModelRunner
from reference_engine.sampling_params import SamplingParams
from reference_engine.scheduler import Scheduler
from reference_engine.sequence import Sequence, SequenceStatus


class FakeEngine:
    def __init__(self, num_blocks=16, block_size=4, query_rows=False, **options):
        """query_rows: prepare() as for ops whose decode kernel also answers prefill tokens (the CPU kernels)."""
        self.config = EngineConfig("unused", block_size=block_size, **options)
        reserve = self.config.max_model_len if self.config.kv_layout == "contiguous" else None
        self.bm = BlockManager(num_blocks, block_size, self.config.enable_prefix_caching, 0.0, reserve)
        self.scheduler = Scheduler(self.config, self.bm)
        self.cache = torch.full((num_blocks * block_size,), -1, dtype=torch.long)  # token id per slot
        self.runner = types.SimpleNamespace(
            block_size=block_size,
            device=torch.device("cpu"),
            ops=types.SimpleNamespace(prefill_with_decode_kernel=query_rows),
        )
        self.requests: dict[str, list[Sequence]] = {}
        self.arrival: dict[str, int] = {}
        self.finished: dict[str, list[Sequence]] = {}

    def add(self, request_id: str, prompt: list[int], max_tokens: int, n: int = 1) -> None:
        params = SamplingParams(n=n, temperature=1.0 if n > 1 else 0.0, max_tokens=max_tokens)
        seq = Sequence(request_id, list(prompt), len(prompt), params)
        self.requests[request_id] = [seq]
        self.arrival[request_id] = len(self.arrival)
        self.scheduler.add(seq)

    def abort(self, request_id: str) -> None:
        for seq in self.requests.pop(request_id, []):
            if not seq.is_finished:
                self.scheduler.abort(seq)

    def step(self):
        sch, bm, cfg = self.scheduler, self.bm, self.config
        out = sch.schedule()
        assert out.num_batched_tokens <= cfg.max_num_batched_tokens
        assert len(sch.running) <= cfg.max_num_seqs
        assert len({id(s.seq) for s in out.scheduled}) == len(out.scheduled)
        assert all(s.seq.status is SequenceStatus.RUNNING for s in out.scheduled)
        for seq in sch.running:
            assert seq.num_computed_tokens <= seq.num_tokens <= cfg.max_model_len
            if cfg.kv_layout == "paged":
                assert len(seq.block_table) == -(-seq.num_computed_tokens // bm.block_size)
        for seq in sch.waiting:
            assert seq.block_table == [] and seq.num_computed_tokens == 0
        # First come, first served: both queues stay in arrival order.
        for queue in (sch.running, list(sch.waiting)):
            order = [self.arrival[s.request_id] for s in queue]
            assert order == sorted(order)
        bm.check_invariants(sch.running)
        for seq in out.failed:
            assert seq.finish_reason == "error" and seq.error
        if not out.scheduled:
            self._collect_finished()
            return out
        for src, dst in out.blocks_to_copy:
            bs = bm.block_size
            self.cache[dst * bs : (dst + 1) * bs] = self.cache[src * bs : (src + 1) * bs].clone()
        input_ids, positions, meta, logits_indices, sampled = ModelRunner.prepare(self.runner, out)
        self.cache[meta.slot_mapping] = input_ids  # reshape_and_cache
        decodes = [s for s in out.scheduled if s.num_new_tokens == 1]
        prefills = [s for s in out.scheduled if s.num_new_tokens > 1]
        # Rows of the decode kernel: each decode token, and with query rows each prefill token as well.
        rows = [(s, s.start) for s in decodes]
        if self.runner.ops.prefill_with_decode_kernel:
            rows += [(s, pos) for s in prefills for pos in range(s.start, s.start + s.num_new_tokens)]
            assert meta.prefills == [] and len(rows) == len(input_ids)
        else:
            assert len(meta.prefills) == len(prefills)
        assert meta.num_decode_tokens == len(rows)
        # A row reads its whole context, up to and including its own token, through its block table.
        for row, (sched, pos) in enumerate(rows):
            table = meta.block_tables[row]
            slots = (table[table >= 0, None] * bm.block_size + torch.arange(bm.block_size)).flatten()
            assert int(meta.context_lens[row]) == pos + 1 == int(positions[row]) + 1
            assert self.cache[slots[: pos + 1]].tolist() == sched.seq.token_ids[: pos + 1]
        # Prefill chunks after a cached prefix or an earlier chunk read that context from the cache too.
        for span, sched in zip(meta.prefills, prefills):
            assert (span.num_computed_tokens, span.num_tokens) == (sched.start, sched.num_new_tokens)
            assert (span.block_table is None) == (sched.start == 0)
            if span.block_table is not None:
                ctx = sched.start + sched.num_new_tokens
                slots = (span.block_table[:, None] * bm.block_size + torch.arange(bm.block_size)).flatten()
                assert self.cache[slots[:ctx]].tolist() == sched.seq.token_ids[:ctx]
        assert len(logits_indices) == len(sampled) == sum(s.needs_sample for s in out.scheduled)
        # The fake model: the next token depends on the whole context, as a real one does.
        for seq in list(sampled):
            group = self.requests.get(seq.request_id)
            rows = [seq]
            if group is not None and seq.params.n > 1 and len(group) == 1 and seq.num_output_tokens == 0:
                children = [seq.fork(i) for i in range(1, seq.params.n)]
                self.scheduler.fork(seq, children)
                group += children
                rows += children
            for s in rows:
                s.token_ids.append((sum(s.token_ids) * 31 + s.index) % 97)
                if s.num_output_tokens >= s.params.max_tokens or s.num_tokens >= cfg.max_model_len:
                    s.status, s.finish_reason = SequenceStatus.FINISHED, "length"
        sch.free_finished()
        self._collect_finished()
        return out

    def _collect_finished(self) -> None:
        for request_id, seqs in list(self.requests.items()):
            if all(s.is_finished for s in seqs):
                self.finished[request_id] = self.requests.pop(request_id)

    def drain(self, max_steps: int = 2000) -> None:
        for _ in range(max_steps):
            if not self.scheduler.has_unfinished():
                break
            self.step()
        assert not self.scheduler.has_unfinished(), "the scheduler stopped making progress"
        assert self.bm.num_used_blocks == 0
        self.bm.check_invariants()


def expected_tokens(prompt: list[int], max_tokens: int, index: int = 0) -> list[int]:
    tokens = list(prompt)
    for _ in range(max_tokens):
        tokens.append((sum(tokens) * 31 + index) % 97)
    return tokens[len(prompt) :]


@pytest.mark.parametrize("query_rows", [False, True])
def test_preemption_requeues_at_the_front_and_output_is_unchanged(query_rows):
    eng = FakeEngine(num_blocks=8, block_size=4, max_num_seqs=8, max_num_batched_tokens=64, query_rows=query_rows)
    prompts = [[i + 1] * 6 for i in range(4)]
    for i, p in enumerate(prompts):
        eng.add(f"r{i}", p, max_tokens=8)
    eng.drain()
    assert eng.scheduler.num_preemptions > 0
    for i, p in enumerate(prompts):
        [seq] = eng.finished[f"r{i}"]
        assert seq.output_token_ids == expected_tokens(p, 8)
        assert seq.finish_reason == "length"


@pytest.mark.parametrize("query_rows", [False, True])
def test_chunked_prefill_splits_long_prompts_within_the_budget(query_rows):
    eng = FakeEngine(num_blocks=64, block_size=4, max_num_batched_tokens=8, query_rows=query_rows)
    eng.add("long", list(range(1, 30)), max_tokens=3)
    eng.add("short", [5, 6], max_tokens=3)
    out = eng.step()
    assert [(s.seq.request_id, s.num_new_tokens) for s in out.scheduled] == [("long", 8)]
    assert eng.scheduler.running[0].num_computed_tokens == 8 and len(eng.scheduler.running[0].block_table) == 2
    eng.drain()
    assert eng.finished["long"][0].output_token_ids == expected_tokens(list(range(1, 30)), 3)


def test_no_admission_beyond_max_num_seqs_and_fcfs():
    eng = FakeEngine(num_blocks=64, block_size=4, max_num_seqs=2)
    for i in range(4):
        eng.add(f"r{i}", [i + 1, 2, 3], max_tokens=2)
    out = eng.step()
    assert [s.seq.request_id for s in out.scheduled] == ["r0", "r1"]
    eng.drain()
    assert sorted(eng.finished) == ["r0", "r1", "r2", "r3"]


def test_requests_that_cannot_fit_fail_alone():
    eng = FakeEngine(num_blocks=4, block_size=4, max_model_len=32)
    eng.add("ok", [1, 2, 3], max_tokens=4)
    eng.add("too-long", list(range(40)), max_tokens=1)
    eng.add("too-big", list(range(20)), max_tokens=1)  # 5 blocks > 4
    eng.add("outgrows", list(range(10)), max_tokens=20)  # fits, then needs a 5th block
    eng.drain()
    reasons = {r: s[0].finish_reason for r, s in eng.finished.items()}
    assert reasons == {"ok": "length", "too-long": "error", "too-big": "error", "outgrows": "error"}
    assert "max_model_len" in eng.finished["too-long"][0].error
    assert "KV blocks" in eng.finished["too-big"][0].error
    assert eng.finished["outgrows"][0].num_tokens == 16 + 1  # 16 slots computed, the 17th token sampled


def test_contiguous_layout_limits_the_batch_to_whole_reservations():
    eng = FakeEngine(num_blocks=16, block_size=4, max_model_len=16, kv_layout="contiguous")
    for i in range(6):
        eng.add(f"r{i}", [i + 1, 1], max_tokens=4)
    out = eng.step()
    assert len(out.scheduled) == 4 and eng.bm.num_used_blocks == 16
    eng.drain()
    assert eng.scheduler.num_preemptions == 0 and len(eng.finished) == 6


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 30), st.integers(1, 12), st.integers(1, 3), st.integers(0, 5)),
        st.tuples(st.just("step"), st.integers(1, 4)),
        st.tuples(st.just("abort"), st.integers(0, 50)),
    ),
    max_size=30,
)


@settings(max_examples=50, deadline=None)
@given(
    OPS,
    st.sampled_from(
        [
            dict(num_blocks=10, max_num_batched_tokens=16, enable_prefix_caching=True),
            dict(num_blocks=10, max_num_batched_tokens=16, enable_prefix_caching=False),
            dict(num_blocks=24, max_num_batched_tokens=7, enable_prefix_caching=True, max_num_seqs=3),
            dict(num_blocks=24, max_num_batched_tokens=64, kv_layout="contiguous", max_model_len=24),
            dict(num_blocks=10, max_num_batched_tokens=16, enable_prefix_caching=True, query_rows=True),
        ]
    ),
)
def test_random_add_step_abort_keeps_invariants(ops, options):
    eng = FakeEngine(block_size=4, **{"max_model_len": 64, **options})
    n_added = 0
    for op in ops:
        if op[0] == "add":
            _, prompt_len, max_tokens, n, family = op
            # Prompts of a family share a prefix, so prefix caching gets hits.
            prompt = [family + 1] * min(prompt_len, 12) + list(range(prompt_len - min(prompt_len, 12)))
            if eng.config.kv_layout == "contiguous":
                n = 1  # forks share blocks: the paged layout only
            eng.add(f"r{n_added}", prompt, max_tokens, n)
            n_added += 1
        elif op[0] == "step":
            for _ in range(op[1]):
                eng.step()
        else:
            live = sorted(eng.requests)
            if live:
                eng.abort(live[op[1] % len(live)])
    eng.drain()
    for seqs in eng.finished.values():
        for seq in seqs:
            if seq.finish_reason == "length":
                prompt = seq.token_ids[: seq.num_prompt_tokens]
                assert seq.output_token_ids == expected_tokens(prompt, seq.num_output_tokens, seq.index)


@pytest.mark.parametrize("n", [2, 4])
def test_forked_samples_all_finish_and_free_everything(n):
    eng = FakeEngine(num_blocks=12, block_size=4, max_num_seqs=8)
    eng.add("p", [1, 2, 3, 4, 5, 6], max_tokens=10, n=n)
    eng.drain()
    seqs = eng.finished["p"]
    assert len(seqs) == n and all(s.num_output_tokens == 10 for s in seqs)
    assert sorted(s.index for s in seqs) == list(range(n))
    for s in seqs:
        assert s.output_token_ids == expected_tokens([1, 2, 3, 4, 5, 6], 10, s.index)
    # Two blocks of prompt shared by all; each sample's partial block was copied on its first write.
    assert eng.bm.num_cow_copies == n - 1
