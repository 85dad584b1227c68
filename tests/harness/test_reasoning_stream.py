"""Reasoning models' streams (benchctl/serving/stream.py, benchctl/metrics/reasoning.py): reasoning deltas are tokens
for TTFT and TPOT; the first answer token and the reasoning / answer counts are recorded beside them."""

from __future__ import annotations

import json

import pytest

from benchctl import metrics
from benchctl.run.sink import finish_record
from benchctl.serving.stream import MalformedStream, StreamAccumulator, build_record
from benchctl.workload import RequestSpec


def line(delta: dict | None = None, usage: dict | None = None, finish: str | None = None) -> bytes:
    chunk: dict = {
        "object": "chat.completion.chunk",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + json.dumps(chunk).encode()


def stream(field: str, usage: dict | None = None, per_chunk: bool = False) -> StreamAccumulator:
    """Role delta at 0.05 s, three reasoning chunks at 0.1-0.3 s, two answer chunks at 0.4-0.5 s, then usage."""
    acc = StreamAccumulator("chat")
    acc.feed(line({"role": "assistant", "content": ""}), 0.05)
    for k, t in enumerate((0.1, 0.2, 0.3)):
        acc.feed(line({field: f" think{k}"}, {"completion_tokens": k + 1} if per_chunk else None), t)
    for k, t in enumerate((0.4, 0.5)):
        acc.feed(
            line(
                {"content": f" answer{k}"}, {"completion_tokens": 4 + k} if per_chunk else None, "stop" if k else None
            ),
            t,
        )
    if usage is not None:
        acc.feed(line(usage=usage), 0.51)
    acc.feed(b"data: [DONE]", 0.52)
    return acc


def record(acc: StreamAccumulator, tokenizer=None) -> dict:
    spec = RequestSpec("r0", [1, 2, 3], "q", 5)
    return finish_record(build_record(spec, acc, 0.0, 0.52, None, None, 200, tokenizer, None))


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_counts_for_ttft_and_the_answer_is_timed_apart(field):
    r = record(stream(field, usage={"completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 3}}))
    assert r["first_token_s"] == 0.1 and r["ttft_s"] == pytest.approx(0.1)  # was 0.4: only delta.content counted
    assert r["token_times_s"] == [0.1, 0.2, 0.3, 0.4, 0.5] and r["output_tokens"] == 5
    assert r["tpot_s"] == pytest.approx(0.4 / 4)  # over every token, reasoning included
    assert r["extra"]["reasoning"] == {
        "first_answer_token_s": 0.4,
        "reasoning_tokens": 3,
        "answer_tokens": 2,
        "counted_from": "usage",
    }
    assert metrics.time_to_first_answer_s(r) == pytest.approx(0.4)


def test_counts_come_from_per_chunk_usage_the_tokenizer_or_the_chunks(tok):
    per_chunk = record(stream("reasoning_content", per_chunk=True))["extra"]["reasoning"]
    assert (per_chunk["reasoning_tokens"], per_chunk["answer_tokens"], per_chunk["counted_from"]) == (3, 2, "chunks")
    retokenized = record(stream("reasoning_content"), tokenizer=tok)
    expected = len(tok.encode(" think0 think1 think2"))
    assert retokenized["output_tokens"] == expected + len(tok.encode(" answer0 answer1"))
    assert retokenized["extra"]["reasoning"]["reasoning_tokens"] == expected
    assert retokenized["extra"]["reasoning"]["counted_from"] == "retokenized"


def test_an_answer_without_reasoning_has_no_reasoning_record():
    acc = StreamAccumulator("chat")
    acc.feed(line({"content": " hi"}), 0.2)
    acc.feed(b"data: [DONE]", 0.3)
    r = record(acc)
    assert "reasoning" not in r["extra"] and r["first_token_s"] == 0.2
    assert metrics.reasoning_summary([r]) == {} and metrics.time_to_first_answer_s(r) is None


def test_a_run_summarizes_its_reasoning():
    rows = [
        record(
            stream(
                "reasoning_content",
                usage={"completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 3}},
            )
        )
        for _ in range(3)
    ]
    summary = metrics.reasoning_summary(rows)["reasoning"]
    assert summary["requests"] == 3 and summary["ttft_answer_s"]["median"] == pytest.approx(0.4)
    assert summary["reasoning_tokens"]["mean"] == 3 and summary["answer_tokens"]["mean"] == 2


def test_a_reasoning_field_that_is_not_text_makes_the_stream_malformed():
    acc = StreamAccumulator("chat")
    with pytest.raises(MalformedStream) as info:
        acc.feed(line({"reasoning_content": 7}), 0.1)
    assert info.value.kind == "bad_text"
