"""StreamingEngine's loop survives any single request: a request whose step raises fails, the others go on.

A scripted engine (tests/scripted_engine.py) shows the rules quickly; the last test runs the real engine
on the bundled model with the request that killed the loop before (top_k = 2**70, sent past any API check)."""

from __future__ import annotations

import asyncio

import pytest
from scripted_engine import BROKEN_ADD, POISON, REFUSED, ScriptedEngine

from reference_engine.sampling_params import SamplingParams
from reference_engine.streaming import RequestFailed, RequestStream, StreamingEngine


def _collect(stream):
    outs = []
    try:
        for out in stream:
            outs.append(out)
    except Exception as exc:  # noqa: BLE001 - the test looks at what the stream raised
        return outs, exc
    return outs, None


def test_a_request_whose_step_raises_fails_and_the_loop_goes_on():
    engine = ScriptedEngine()
    with StreamingEngine(engine) as se:
        outs, exc = _collect(se.submit("bad", POISON, SamplingParams(max_tokens=3)))
        assert outs == [] and isinstance(exc, RequestFailed)
        assert "request bad failed in the engine: ValueError: Overflow when unpacking long long" in str(exc)
        assert engine.aborted == ["bad"] and se.num_failed_steps == 1
        outs, exc = _collect(se.submit("good", [1, 2], SamplingParams(max_tokens=3)))
        assert exc is None and outs[-1].finished and outs[-1].token_ids == [0, 1, 2]
        assert se._thread.is_alive() and se.num_failed_steps == 1


def test_a_stream_bound_to_an_event_loop_refuses_a_blocking_read():
    loop = asyncio.new_event_loop()
    try:
        stream = RequestStream("r1", loop)
        with pytest.raises(TypeError, match="async for"):
            next(iter(stream))  # before: the asyncio queue's get() coroutine came out as an "output"
    finally:
        loop.close()


def test_refused_and_half_added_requests_fail_alone():
    engine = ScriptedEngine()
    with StreamingEngine(engine) as se:
        _, exc = _collect(se.submit("refused", REFUSED, SamplingParams()))
        assert type(exc) is ValueError and str(exc) == "refused"  # the request's own mistake: a ValueError
        _, exc = _collect(se.submit("broken", BROKEN_ADD, SamplingParams()))
        assert isinstance(exc, RequestFailed) and "RuntimeError: add broke half-way" in str(exc)
        assert engine.aborted == ["broken"]  # what was added of it is gone
        outs, exc = _collect(se.submit("next", [5], SamplingParams(max_tokens=2)))
        assert exc is None and outs[-1].token_ids == [0, 1]


@pytest.mark.slow
def test_the_real_engine_survives_a_top_k_it_cannot_hold(model_dir):
    from reference_engine import LLMEngine

    engine = LLMEngine(model_dir, kv_cache_bytes=16 << 20, max_model_len=128)
    with StreamingEngine(engine) as se:
        _, exc = _collect(
            se.submit("huge-k", [1, 2, 3], SamplingParams(temperature=1, top_p=0.5, top_k=2**70, max_tokens=4))
        )
        assert isinstance(exc, RequestFailed) and "Overflow" in str(exc)
        outs, exc = _collect(
            se.submit("after", [1, 2, 3], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
        )
        assert exc is None and len(outs[-1].token_ids) == 4 and outs[-1].finish_reason == "length"
        assert engine.block_manager.num_used_blocks == 0  # the failed request's blocks were freed
