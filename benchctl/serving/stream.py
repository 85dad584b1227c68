"""One streamed OpenAI response, chunk by chunk: what arrived when, and how many tokens it carried.

consume() reads the body as it arrives and stamps each read once (lines that arrived together get the same
time, and no per-line reads cost CPU); feed() takes one line and its time and looks at no clock. A chunk is
*token-bearing* when it carries text (completions `text`, chat `delta.content`) or, with per-chunk usage (vLLM's
`continuous_usage_stats`), when the completion token count grew. Chat's role-only first delta and the usage-only
last chunk are not tokens, so they never count towards TTFT or ITL.
Fields of the wrong type (`usage` not an object, `text`/`content` not a string) make the stream malformed, with
a kind the record keeps (extra.error_kind), rather than an exception somewhere later.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchctl.workload import RequestSpec, Tokenizer

try:  # optional (benchctl[serving]): ~5x faster than json on the client's hot path
    from orjson import loads as _loads
except ImportError:
    _loads = json.loads  # type: ignore[assignment]


# An SSE line longer than this fails the request (a server streaming without newlines would fill the memory);
# the cap is checked once per read, so a line may pass it by at most one read (64 KiB) before it is refused.
MAX_SSE_LINE_BYTES = 1 << 20


class MalformedStream(ValueError):
    """The server sent something that is not an OpenAI SSE stream; `kind` is the record's extra.error_kind."""

    def __init__(self, message: str, kind: str = "malformed_stream"):
        super().__init__(message)
        self.kind = kind


class StreamAccumulator:
    def __init__(self, endpoint: str):
        self.chat = endpoint == "chat"
        self.token_times_s: list[float] = []
        self._cumulative: list[int | None] = []  # per token-bearing chunk: completion tokens so far (per-chunk usage)
        self._texts: list[str] = []
        # Reasoning models (chat): delta.reasoning_content (vLLM, DeepSeek) or delta.reasoning, before the answer.
        # A reasoning chunk is a token like any other (TTFT, ITL, TPOT count it); the answer's first is kept apart.
        self._reasoning: list[str] = []  # per token-bearing chunk, like _texts
        self.first_answer_s: float | None = None
        self.usage: dict | None = None
        self.finish_reason: str | None = None
        self.done = False  # saw `data: [DONE]`
        self._last_cumulative = 0

    async def consume(self, content, t0: float) -> None:
        """Feed the SSE body (aiohttp's StreamReader) until `data: [DONE]` or its end; times are since t0."""
        pending = b""
        while data := await content.readany():
            t_s = time.monotonic() - t0
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                if line and line != b"\r":  # blank lines only separate events
                    self.feed(line, t_s)
            if self.done:
                return
            if len(pending) > MAX_SSE_LINE_BYTES:
                raise MalformedStream(
                    f"an SSE line longer than {MAX_SSE_LINE_BYTES} bytes ({len(pending)} bytes without a newline)",
                    "line_too_long",
                )
        if pending:
            self.feed(pending, time.monotonic() - t0)

    def feed(self, line: bytes, t_s: float) -> None:
        """One line of the SSE body (blank lines included), read at run time t_s. Hot path: keep it lean."""
        if not line.startswith(b"data:"):
            line = line.strip()
            if not line or line.startswith((b":", b"event:", b"id:", b"retry:")):  # separator, comment, fields
                return
            raise MalformedStream(f"not an SSE data line: {line[:120]!r}")
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = _loads(payload)
        except ValueError:
            raise MalformedStream(f"invalid JSON in stream: {payload[:120]!r}") from None
        if type(chunk) is not dict:
            raise MalformedStream(f"stream chunk is not an object: {payload[:120]!r}")
        if "error" in chunk:  # vLLM reports mid-stream failures as a data line with an error object
            error = chunk["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise MalformedStream(f"server error in stream: {message}", "server_error")
        choices = chunk.get("choices")
        text, reasoning = self._choice_text(choices) if choices else ("", "")
        usage = chunk.get("usage")
        cumulative = None
        if usage is not None:  # vLLM sends "usage": null on chunks without usage
            if type(usage) is not dict:
                raise MalformedStream(f"'usage' is not an object: {str(usage)[:120]}", "bad_usage")
            count = usage.get("completion_tokens")
            if count is not None and (type(count) is not int or count < 0):
                raise MalformedStream(f"'usage.completion_tokens' is not a count: {str(count)[:120]}", "bad_usage")
            if usage:
                self.usage = usage
                if choices:  # per-chunk usage (continuous_usage_stats); the final usage-only chunk carries no tokens
                    cumulative = count
        if text or reasoning or (cumulative is not None and cumulative > self._last_cumulative):
            self.token_times_s.append(t_s)
            self._texts.append(text)
            self._reasoning.append(reasoning)
            if text and self.first_answer_s is None:
                self.first_answer_s = t_s
            self._cumulative.append(cumulative)
            if cumulative is not None:
                self._last_cumulative = cumulative

    def _choice_text(self, choices) -> tuple[str, str]:
        """(answer text, reasoning text) of the chunk's first choice."""
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise MalformedStream(f"'choices' is not a list of objects: {str(choices)[:120]}")
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        if self.chat:
            delta = choice.get("delta")
            if delta is None:
                return "", ""
            if type(delta) is not dict:
                raise MalformedStream(f"'delta' is not an object: {str(delta)[:120]}")
            text = delta.get("content")
            reasoning = delta.get("reasoning_content")
            if reasoning is None:
                reasoning = delta.get("reasoning")
            if reasoning is not None and type(reasoning) is not str:
                raise MalformedStream(f"'delta.reasoning_content' is not a string: {str(reasoning)[:120]}", "bad_text")
        else:
            text, reasoning = choice.get("text"), None
        if text is not None and type(text) is not str:
            field = "delta.content" if self.chat else "text"
            raise MalformedStream(f"'{field}' is not a string: {str(text)[:120]}", "bad_text")
        return text or "", reasoning or ""

    @property
    def text(self) -> str:
        return "".join(self._texts)

    @property
    def completion_tokens(self) -> int | None:
        """The server's count (usage), or None when it sent none."""
        if isinstance(self.usage, dict) and isinstance(self.usage.get("completion_tokens"), int):
            return self.usage["completion_tokens"]
        return None

    @property
    def reasoning_text(self) -> str:
        return "".join(self._reasoning)

    def reasoning_counts(self, output_tokens: int, source: str, tokenizer: Tokenizer | None) -> dict:
        """extra.reasoning: when the answer began and how many of the output tokens were reasoning, from the server's
        usage.completion_tokens_details.reasoning_tokens, else per-chunk usage, the tokenizer or one per chunk."""
        details = (self.usage or {}).get("completion_tokens_details")
        counts = self.chunk_tokens(output_tokens)
        if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
            reasoning, counted = details["reasoning_tokens"], "usage"
        elif counts is not None:
            reasoning, counted = sum(n for n, r in zip(counts, self._reasoning) if r), "per-chunk usage"
        elif source == "retokenized" and tokenizer is not None:
            reasoning, counted = len(tokenizer.encode(self.reasoning_text)), "retokenized"
        else:
            reasoning, counted = sum(1 for r in self._reasoning if r), "chunks"
        return {
            "first_answer_token_s": self.first_answer_s,
            "reasoning_tokens": reasoning,
            "answer_tokens": max(output_tokens - reasoning, 0),
            "counted_from": counted,
        }

    def chunk_tokens(self, output_tokens: int) -> list[int] | None:
        """Tokens per token-bearing chunk when per-chunk usage reveals them (None = one per chunk or unknown)."""
        known = [c for c in self._cumulative if c is not None]
        if not known or len(known) < len(self._cumulative):
            return None
        counts = [b - a for a, b in zip([0, *known], known)]
        if sum(counts) != output_tokens or all(n == 1 for n in counts):
            return None
        return counts


def build_record(
    spec: RequestSpec,
    acc: StreamAccumulator,
    start_s: float | None,
    end_s: float,
    error: str | None,
    kind: str | None,
    status: int | None,
    tokenizer: Tokenizer | None,
    server_url: str | None,
) -> dict:
    """The request's record (times relative to t0): a failed one has `error` and extra.error_kind; without the
    server's usage count the output is the tokenizer's count of the text (or the token chunks, without one)."""
    output_tokens, source = acc.completion_tokens, "usage"
    if output_tokens is None:
        if error is None and tokenizer is not None:
            output_tokens, source = (
                len(tokenizer.encode(acc.reasoning_text)) + len(tokenizer.encode(acc.text)),
                "retokenized",
            )
        else:
            output_tokens, source = len(acc.token_times_s), "retokenized" if error is None else "usage"
    times = acc.token_times_s
    extra: dict = {"http_status": status, **(spec.labels or {})}  # a load shape's phase and stage (metrics.windows)
    if error is not None:
        extra["error_kind"] = kind or "client_error"
    if server_url is not None:
        extra["server"] = server_url
    if acc.finish_reason is not None:
        extra["finish_reason"] = acc.finish_reason
    if acc.reasoning_text:  # time to the first answer token: benchctl.metrics.reasoning
        extra["reasoning"] = acc.reasoning_counts(output_tokens, source, tokenizer)
    if error is None and output_tokens > spec.output_len:  # still completed; the summary counts these
        extra["output_tokens_over"] = output_tokens - spec.output_len
    if acc.usage and isinstance(acc.usage.get("prompt_tokens"), int):
        extra["server_prompt_tokens"] = acc.usage["prompt_tokens"]
    if acc.usage and isinstance(acc.usage.get("prompt_tokens_details"), dict):
        cached = acc.usage["prompt_tokens_details"].get("cached_tokens")
        if isinstance(cached, int):  # servers that report prefix-cache hits per request (vLLM, OpenAI)
            extra["num_cached_tokens"] = cached
    prompt_tokens = spec.prompt_len
    if spec.suffix_text is not None and "server_prompt_tokens" in extra:  # the generated answer, tokenized there
        prompt_tokens = extra["server_prompt_tokens"]
    return {
        "request_id": spec.request_id,
        "prompt_tokens": prompt_tokens,
        "conversation_id": spec.conversation_id,
        "turn": spec.turn,
        "expected_output_tokens": spec.output_len,
        "output_tokens": output_tokens,
        "arrival_s": spec.arrival_s,
        "start_s": start_s,
        "first_token_s": times[0] if times else None,
        "finish_s": times[-1] if times and error is None else end_s,
        "token_times_s": list(times) or None,
        "chunk_tokens": acc.chunk_tokens(output_tokens) if error is None else None,
        "error": error,
        "output_tokens_source": source,
        "extra": extra,
    }
