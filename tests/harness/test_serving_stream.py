"""SSE chunk accounting: which chunks are tokens, when they arrived, how many tokens each carried."""

from __future__ import annotations

import json

import pytest

from benchctl.serving.stream import MalformedStream, StreamAccumulator


def data(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode()


def completion(text, usage=None, finish=None):
    chunk = {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}
    if usage is not None:
        chunk["usage"] = {"prompt_tokens": 3, "completion_tokens": usage}
    return data(chunk)


def test_completions_stream_times_text_chunks_and_takes_usage_count():
    acc = StreamAccumulator("completions")
    acc.feed(b"", 0.0)
    acc.feed(b": keep-alive", 0.05)
    acc.feed(completion(" a"), 0.1)
    acc.feed(b"", 0.1)
    acc.feed(completion(" b c"), 0.2)
    acc.feed(completion("", finish="length"), 0.25)  # no text, no usage: not a token chunk
    acc.feed(data({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3}}), 0.3)
    assert not acc.done
    acc.feed(b"data: [DONE]", 0.31)
    assert acc.done
    assert acc.token_times_s == [0.1, 0.2]
    assert acc.text == " a b c"
    assert acc.completion_tokens == 3
    assert acc.finish_reason == "length"
    assert acc.chunk_tokens(3) is None  # without per-chunk usage the split is unknown


def test_chat_role_only_delta_is_not_the_first_token():
    acc = StreamAccumulator("chat")
    acc.feed(data({"choices": [{"delta": {"role": "assistant", "content": ""}}]}), 0.01)
    acc.feed(data({"choices": [{"delta": {"content": "Hi"}}]}), 0.08)
    acc.feed(data({"choices": [{"delta": {"content": "!"}, "finish_reason": "stop"}]}), 0.1)
    assert acc.token_times_s == [0.08, 0.1]
    assert acc.text == "Hi!"
    assert acc.completion_tokens is None


def test_per_chunk_usage_reveals_multi_token_chunks_and_empty_text_tokens():
    acc = StreamAccumulator("completions")
    acc.feed(completion("ab", usage=2), 0.1)
    acc.feed(completion("", usage=3), 0.2)  # a token whose text is held back still arrived
    acc.feed(completion("cdef", usage=7), 0.3)
    acc.feed(data({"choices": [], "usage": {"completion_tokens": 7}}), 0.35)  # final usage: not a chunk
    assert acc.token_times_s == [0.1, 0.2, 0.3]
    assert acc.chunk_tokens(7) == [2, 1, 4]
    assert acc.chunk_tokens(8) is None  # disagrees with the final count: unknown, not invented


def test_one_token_per_chunk_is_reported_as_none():
    acc = StreamAccumulator("completions")
    for i in range(3):
        acc.feed(completion("x", usage=i + 1), 0.1 * i)
    assert acc.chunk_tokens(3) is None


@pytest.mark.parametrize(
    "line, message",
    [
        (b"data: {not json", "invalid JSON"),
        (b"data: [1, 2]", "not an object"),
        (b"hello there", "not an SSE data line"),
        (b'data: {"error": {"message": "engine died"}}', "engine died"),
        (b'data: {"choices": "x"}', "choices"),
    ],
)
def test_malformed_streams_raise(line, message):
    with pytest.raises(MalformedStream, match=message):
        StreamAccumulator("completions").feed(line, 0.0)


@pytest.mark.parametrize(
    "endpoint, line, kind, message",
    [
        ("completions", data({"choices": [], "usage": [1, 2]}), "bad_usage", "'usage' is not an object"),
        ("completions", data({"choices": [], "usage": "12 tokens"}), "bad_usage", "'usage' is not an object"),
        ("completions", data({"choices": [], "usage": {"completion_tokens": "5"}}), "bad_usage", "not a count"),
        ("completions", data({"choices": [{"text": 7}]}), "bad_text", "'text' is not a string"),
        ("chat", data({"choices": [{"delta": {"content": ["a"]}}]}), "bad_text", "'delta.content' is not a string"),
        ("chat", data({"choices": [{"delta": "a"}]}), "malformed_stream", "'delta' is not an object"),
        ("completions", data({"error": "engine died"}), "server_error", "engine died"),
    ],
)
def test_fields_of_the_wrong_type_are_malformed_with_a_kind(endpoint, line, kind, message):
    with pytest.raises(MalformedStream, match=message) as raised:
        StreamAccumulator(endpoint).feed(line, 0.0)
    assert raised.value.kind == kind


def test_null_usage_and_null_text_are_not_errors():
    acc = StreamAccumulator("chat")
    acc.feed(data({"choices": [{"delta": {"content": None}}], "usage": None}), 0.1)  # vLLM's chunks
    acc.feed(data({"choices": [{"delta": {"content": "x"}}], "usage": None}), 0.2)
    assert acc.token_times_s == [0.2] and acc.usage is None
