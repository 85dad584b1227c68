"""The reference engine on the bundled model: exact against HF, and its KV accounting under pressure."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
from engine_fixtures import NUM_TOKENS, greedy

from reference_engine import LLMEngine, SamplingParams, StreamingEngine

pytestmark = pytest.mark.slow

BLOCK_BYTES = 2 * 30 * 16 * 3 * 64 * 4  # one 16-token block of K and V, all layers, fp32
MAX_LEN = 256


@pytest.fixture(scope="module")
def engine(model_dir):
    eng = LLMEngine(model_dir, kv_cache_bytes=64 * BLOCK_BYTES, max_model_len=MAX_LEN)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def small_engine(model_dir):
    """12 blocks (192 slots) and a 32-token step budget: the 8 prompts need ~40 blocks, so it must preempt,
    and every prefill is chunked."""
    eng = LLMEngine(model_dir, kv_cache_bytes=12 * BLOCK_BYTES, max_model_len=MAX_LEN, max_num_batched_tokens=32)
    yield eng
    eng.close()


def random_ids(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(100, 49000) for _ in range(n)]  # ids below 100 include the special tokens


def assert_all_blocks_free(eng: LLMEngine) -> None:
    bm = eng.block_manager
    assert bm.num_used_blocks == 0
    assert bm.num_free_blocks == bm.num_total_blocks
    assert not eng.scheduler.running and not eng.scheduler.waiting
    bm.check_invariants()


def test_greedy_matches_hf_batch_size_1(engine, prompt_ids, hf_greedy):
    for ids, expected in zip(prompt_ids, hf_greedy):
        engine.reset_stats()
        [out] = engine.generate([ids], greedy())
        assert out.token_ids == expected
        assert out.finish_reason == "length" and out.finished
        assert engine.stats_summary()["peak_batch_size"] == 1
    assert_all_blocks_free(engine)


def test_greedy_matches_hf_all_in_one_batch(engine, prompt_ids, hf_greedy):
    engine.reset_stats()
    outs = engine.generate(prompt_ids, greedy())
    assert [o.token_ids for o in outs] == hf_greedy
    summary = engine.stats_summary()
    assert summary["peak_batch_size"] == 8
    assert summary["num_preemptions"] == 0
    assert summary["num_generated_tokens"] == 8 * NUM_TOKENS
    # The text is the detokenized tokens (the deltas are checked in test_detokenizer.py).
    assert outs[0].text == engine.tokenizer.decode(hf_greedy[0])
    assert_all_blocks_free(engine)


@pytest.mark.parametrize(
    "options", [{"gemm": "torch"}, {"gemm": "onednn"}, {"gemm": "packed"}, {"attention_backend": "torch"}]
)
def test_fast_paths_keep_greedy_tokens_identical_to_hf(model_dir, prompt_ids, hf_greedy, options):
    # each fast path (oneDNN's prepacked GEMM, the C++ attention; "auto" picks both on CPU) and the plain ones
    other = LLMEngine(model_dir, kv_cache_bytes=64 * BLOCK_BYTES, max_model_len=MAX_LEN, **options)
    outs = other.generate(prompt_ids, greedy())
    assert [o.token_ids for o in outs] == hf_greedy
    for key, value in options.items():
        assert other.stats_summary()[key] == value
    other.close()


def test_preemption_keeps_tokens_identical_and_frees_every_block(small_engine, prompt_ids, hf_greedy):
    small_engine.reset_stats()
    outs = small_engine.generate(prompt_ids, greedy())
    assert [o.token_ids for o in outs] == hf_greedy
    summary = small_engine.stats_summary()
    assert summary["num_preemptions"] > 0
    assert summary["peak_kv_blocks_used"] <= 12
    steps = small_engine.stats.steps
    assert max(s.num_prefill_tokens + s.num_decode_tokens for s in steps) <= 32
    assert any(s.num_prefill_tokens and s.num_decode_tokens for s in steps), "no step mixed prefill and decode"
    assert_all_blocks_free(small_engine)


def test_abort_half_mid_run_leaves_no_used_blocks(engine, prompt_ids, hf_greedy):
    ids = [f"abort-{i}" for i in range(8)]
    for request_id, prompt in zip(ids, prompt_ids):
        engine.add_request(request_id, prompt, greedy())
    for _ in range(5):
        engine.step()
    assert engine.block_manager.num_used_blocks > 0
    for request_id in ids[::2]:
        engine.abort(request_id)
    final = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    assert sorted(final) == sorted(ids)
    for i, request_id in enumerate(ids):
        out = final[request_id]
        if i % 2 == 0:
            assert out.finish_reason == "abort"
            assert len(out.token_ids) < NUM_TOKENS
            assert out.token_ids == hf_greedy[i][: len(out.token_ids)]
        else:
            assert out.finish_reason == "length" and out.token_ids == hf_greedy[i]
    assert_all_blocks_free(engine)


def test_parallel_sampling_shares_prompt_blocks_and_copies_on_write(engine):
    bm = engine.block_manager
    prompt = random_ids(20, seed=1)  # one full block + 4 tokens in a partial one
    cow_before = bm.num_cow_copies
    engine.add_request("n4", prompt, SamplingParams(n=4, temperature=1.0, seed=7, max_tokens=8))
    [out] = engine.step()  # prefill, fork, first token of each sample
    assert len(out.outputs) == 4 and all(len(c.token_ids) == 1 for c in out.outputs)
    seqs = engine.requests["n4"].seqs
    assert bm.num_used_blocks == 2  # one copy of the prompt's two blocks
    assert all(s.block_table == seqs[0].block_table for s in seqs)
    assert [bm.blocks[b].ref_count for b in seqs[0].block_table] == [4, 4]
    assert bm.num_cow_copies == cow_before
    engine.step()  # each sample writes its own first token into the shared partial block
    assert bm.num_cow_copies == cow_before + 3  # the last writer owns the original
    assert bm.num_used_blocks == 1 + 4
    assert len({s.block_table[0] for s in seqs}) == 1 and bm.blocks[seqs[0].block_table[0]].ref_count == 4
    assert len({s.block_table[1] for s in seqs}) == 4
    bm.check_invariants(seqs)
    while engine.has_unfinished_requests():
        for o in engine.step():
            out = o
    assert out.finished and [len(c.token_ids) for c in out.outputs] == [8] * 4
    assert len({tuple(c.token_ids) for c in out.outputs}) > 1
    assert bm.num_cow_copies == cow_before + 3
    # Same seed, same samples.
    [again] = engine.generate([prompt], SamplingParams(n=4, temperature=1.0, seed=7, max_tokens=8))
    assert [c.token_ids for c in again.outputs] == [c.token_ids for c in out.outputs]
    assert_all_blocks_free(engine)


def test_prefix_caching_reuses_full_blocks_with_identical_output(engine, model_dir):
    prefix = random_ids(64, seed=2)
    a, b, c = prefix + random_ids(10, seed=3), prefix + random_ids(7, seed=4), prefix + random_ids(5, seed=5)
    params = greedy(16)
    hits_before = engine.block_manager.num_prefix_hits
    engine.add_request("a", a, params)
    engine.step()  # a's prompt is in the cache from here on
    engine.add_request("b", b, params)
    final = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    assert final["a"].num_cached_tokens == 0
    assert final["b"].num_cached_tokens == 64  # shared with a running request
    assert engine.block_manager.num_prefix_hits == hits_before + 4
    [out_c] = engine.generate([c], params)  # a and b are gone: their blocks are free but still cached
    assert out_c.num_cached_tokens == 64
    assert_all_blocks_free(engine)

    plain = LLMEngine(model_dir, kv_cache_bytes=64 * BLOCK_BYTES, max_model_len=MAX_LEN, enable_prefix_caching=False)
    expected = plain.generate([a, b, c], params)
    assert [o.num_cached_tokens for o in expected] == [0, 0, 0]
    assert [final["a"].token_ids, final["b"].token_ids, out_c.token_ids] == [o.token_ids for o in expected]


def test_oversize_requests_fail_alone(small_engine, prompt_ids, hf_greedy):
    small_engine.add_request("ok-0", prompt_ids[0], greedy())
    small_engine.add_request("too-long", random_ids(MAX_LEN + 1, seed=6), greedy())
    small_engine.add_request("too-big", random_ids(13 * 16, seed=7), greedy())  # 13 blocks, the cache has 12
    small_engine.add_request("ok-1", prompt_ids[1], greedy())
    final = {}
    while small_engine.has_unfinished_requests():
        for out in small_engine.step():
            if out.finished:
                final[out.request_id] = out
    assert final["too-long"].finish_reason == "error" and "max_model_len" in final["too-long"].error
    assert final["too-big"].finish_reason == "error" and "KV blocks" in final["too-big"].error
    assert final["too-long"].token_ids == [] and final["too-big"].token_ids == []
    assert final["ok-0"].token_ids == hf_greedy[0] and final["ok-1"].token_ids == hf_greedy[1]
    assert final["ok-0"].error is None
    # Fits at first, outgrows the whole cache while decoding: fails once it runs alone, keeps its tokens.
    [grown] = small_engine.generate([random_ids(180, seed=8)], greedy(60))
    assert grown.finish_reason == "error" and "KV blocks" in grown.error
    assert len(grown.token_ids) == 12 * 16 - 180 + 1  # every slot computed, plus the token sampled from the last
    assert_all_blocks_free(small_engine)


def test_contiguous_layout_same_tokens_more_waste_smaller_batches(engine, model_dir, prompt_ids, hf_greedy):
    contiguous = LLMEngine(model_dir, kv_cache_bytes=64 * BLOCK_BYTES, max_model_len=MAX_LEN, kv_layout="contiguous")
    outs = contiguous.generate(prompt_ids, greedy(16))
    assert [o.token_ids for o in outs] == [h[:16] for h in hf_greedy]
    c = contiguous.stats_summary()
    assert c["kv_layout"] == "contiguous"
    assert c["peak_batch_size"] == 64 // (MAX_LEN // 16)  # each sequence holds max_model_len slots
    assert c["kv_waste_pct"] > 50
    engine.reset_stats()
    engine.generate(prompt_ids, greedy(16))
    p = engine.stats_summary()
    # Paged waste is at most the last partial block per sequence; contiguous waste is the unused reservation.
    assert p["peak_batch_size"] == 8 and p["kv_waste_pct"] < c["kv_waste_pct"] / 2
    assert contiguous.block_manager.num_used_blocks == 0


def test_streaming_engine_threads_and_asyncio(engine, prompt_ids, hf_greedy):
    results: dict[str, tuple[list, str, str]] = {}

    def consume(stream):
        deltas, last = [], None
        for out in stream:
            assert out.new_token_ids == out.token_ids[len(out.token_ids) - len(out.new_token_ids) :]
            deltas.append(out.outputs[0].text_delta)
            last = out
        results[stream.request_id] = (last.token_ids, "".join(deltas), last.text, last.finish_reason)

    with StreamingEngine(engine) as se:
        streams = [se.submit(f"s{i}", prompt_ids[i], greedy(16)) for i in range(3)]
        long = se.submit("to-abort", prompt_ids[3], greedy(200))
        threads = [threading.Thread(target=consume, args=(s,)) for s in streams + [long]]
        for t in threads:
            t.start()
        while engine.requests.get("to-abort") is None or not engine.requests["to-abort"].seqs[0].output_token_ids:
            threading.Event().wait(0.01)
        se.abort("to-abort")
        for t in threads:
            t.join(timeout=300)

        async def agen():
            return [out async for out in se.generate("async", prompt_ids[4], greedy(16))]

        async_outs = asyncio.run(agen())
    for i in range(3):
        tokens, joined, text, reason = results[f"s{i}"]
        assert tokens == hf_greedy[i][:16] and joined == text and reason == "length"
    assert results["to-abort"][3] == "abort"
    assert async_outs[-1].token_ids == hf_greedy[4][:16] and async_outs[-1].finished
    assert sum(len(o.new_token_ids) for o in async_outs) == 16
    assert_all_blocks_free(engine)


@pytest.mark.parametrize(
    "options",
    [
        {"sampler": "per_seq", "host_transfer": "per_seq", "detokenize": "thread"},
        {"detokenize": "off", "attention_backend": "torch"},
    ],
)
def test_ablation_options_change_nothing_but_speed(engine, model_dir, prompt_ids, options):
    other = LLMEngine(model_dir, kv_cache_bytes=64 * BLOCK_BYTES, max_model_len=MAX_LEN, **options)
    params = [
        SamplingParams(temperature=0.8, top_p=0.9, top_k=50, seed=i, max_tokens=12, logprobs=2) for i in range(4)
    ] + [greedy(12)]
    prompts = prompt_ids[:5]
    expected = engine.generate(prompts, params)
    got = other.generate(prompts, params)
    assert [o.token_ids for o in got] == [o.token_ids for o in expected]
    lp_got, lp_exp = got[0].outputs[0].logprobs, expected[0].outputs[0].logprobs
    assert [sorted(d) for d in lp_got] == [sorted(d) for d in lp_exp]
    if options.get("detokenize") == "off":
        assert all(o.text == "" for o in got)
    else:
        assert [o.text for o in got] == [o.text for o in expected]
    assert other.stats_summary()["attention_backend"] == options.get("attention_backend", engine.attention_backend)
    other.close()


def test_sampling_features_on_the_model(engine, prompt_ids, hf_greedy):
    # logprobs: the greedy token is the most likely one, and the top-k dict holds k (+ the chosen) entries.
    [out] = engine.generate([prompt_ids[0]], SamplingParams(temperature=0, max_tokens=6, logprobs=3))
    for token, lp in zip(out.token_ids, out.outputs[0].logprobs):
        assert max(lp, key=lp.get) == token and len(lp) == 3 and all(v <= 0 for v in lp.values())
    # A stop token ends the output on it; a stop string cuts the text before it.
    k = next(k for k in range(3, NUM_TOKENS) if hf_greedy[0][k] not in hf_greedy[0][:k])
    stop_token = hf_greedy[0][k]
    [out] = engine.generate([prompt_ids[0]], SamplingParams(temperature=0, max_tokens=48, stop_token_ids=[stop_token]))
    assert out.token_ids == hf_greedy[0][: k + 1] and out.finish_reason == "stop"
    assert out.outputs[0].stop_reason == stop_token
    full = engine.tokenizer.decode(hf_greedy[0])
    needle = full[10:14]
    [out] = engine.generate([prompt_ids[0]], SamplingParams(temperature=0, max_tokens=48, stop=[needle]))
    assert out.finish_reason == "stop" and out.outputs[0].stop_reason == needle
    assert out.text == full[: full.index(needle)]
    # Per-request seeds do not depend on what else is in the batch.
    seeded = SamplingParams(temperature=1.0, seed=123, max_tokens=10)
    [alone] = engine.generate([prompt_ids[2]], seeded)
    batch = engine.generate(
        prompt_ids[:4], [SamplingParams(temperature=1.0, max_tokens=10)] * 2 + [seeded] + [greedy(10)]
    )
    assert batch[2].token_ids == alone.token_ids
    assert batch[3].token_ids == hf_greedy[3][:10]
    assert_all_blocks_free(engine)
