"""The OpenAI wire format as the reference server speaks it: request validation, chat templates, response bodies.

Pure functions over dicts (no HTTP, no engine), so every rule here is testable on its own. Field names and
defaults follow OpenAI; `min_tokens`, `ignore_eos`, `top_k` and `stream_options.continuous_usage_stats` are
vLLM's extensions, accepted because benchmark clients send them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field


class InvalidRequest(ValueError):
    """A request the client got wrong: HTTP 400 with an OpenAI-style error body."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None, code: int = 400) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(slots=True)
class ParsedRequest:
    chat: bool
    model: str | None
    prompt: str | list[int] | None = None  # completions: text or token ids
    messages: list[dict] | None = None  # chat
    max_tokens: int | None = None  # None: up to the context limit (chat) / 16 (completions, as OpenAI)
    sampling: dict = field(default_factory=dict)  # SamplingParams keyword arguments given by the client
    stream: bool = False
    include_usage: bool = False
    continuous_usage: bool = False


_NUMBER = (int, float)
_INT32_MAX = 2**31 - 1
# temperature, top_p: OpenAI's ranges (below 1e-5 a temperature is 0, greedy, as vLLM treats it); top_k, seed,
# min_tokens: what the engine holds (torch takes them as int64: top_k = 2**70 overflowed in the middle of a step).
MIN_TEMPERATURE = 1e-5
_INTEGER_BOUNDS = {"top_k": (-1, _INT32_MAX), "seed": (-(2**63), 2**63 - 1), "min_tokens": (0, _INT32_MAX)}


def parse_json(raw: bytes) -> object:
    """The request body as JSON; InvalidRequest when it is not JSON, or holds NaN, Infinity or a number beyond
    float range (Python's json accepts all three; a client may not send them)."""

    def refuse(constant: str):
        raise InvalidRequest(f"malformed JSON: {constant} is not a JSON number")

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise InvalidRequest(f"malformed JSON: {text[:40]} is out of range for a number")
        return value

    try:
        return json.loads(raw, parse_constant=refuse, parse_float=finite)
    except InvalidRequest:
        raise
    except ValueError as e:  # JSONDecodeError, invalid UTF-8, an integer of more than 4300 digits
        raise InvalidRequest(f"malformed JSON: {e}") from None


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number_in(body: dict, key: str, low: float, high: float, low_open: bool = False) -> float | None:
    value = _get(body, key, _NUMBER)
    if value is None:
        return None
    if (
        (isinstance(value, float) and not math.isfinite(value))
        or not (low < value if low_open else low <= value)
        or value > high
    ):
        raise InvalidRequest(
            f"'{key}' must be a number in {'(' if low_open else '['}{low:g}, {high:g}], got {_shown(value)}", key
        )
    return value


def _integer_in(body: dict, key: str, low: int, high: int) -> int | None:
    value = _get(body, key, (int,))
    if value is not None and not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be an integer in [{low}, {high}], got {_shown(value)}", key)
    return value


def parse_sampling(body: dict) -> dict:
    """The sampling fields of a request (or the server's --engine-arg defaults), each checked against its bounds:
    SamplingParams keyword arguments. Booleans are not numbers; NaN and infinities are refused."""
    sampling: dict = {}
    temperature = _number_in(body, "temperature", 0.0, 2.0)
    if temperature is not None:
        if 0 < temperature < MIN_TEMPERATURE:
            raise InvalidRequest(
                f"'temperature' must be 0 (greedy) or in [{MIN_TEMPERATURE:g}, 2], got {_shown(temperature)}",
                "temperature",
            )
        sampling["temperature"] = temperature
    top_p = _number_in(body, "top_p", 0.0, 1.0, low_open=True)
    if top_p is not None:
        sampling["top_p"] = top_p
    for key, (low, high) in _INTEGER_BOUNDS.items():
        value = _integer_in(body, key, low, high)
        if value is not None:
            sampling[key] = value
    ignore_eos = _get(body, "ignore_eos", (bool,))
    if ignore_eos is not None:
        sampling["ignore_eos"] = ignore_eos
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidRequest("'stop' must be a string or a list of strings", "stop")
        sampling["stop"] = stop
    return sampling


def _get(body: dict, key: str, kinds: tuple, default=None):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in kinds:
        raise InvalidRequest(f"'{key}' must be {' or '.join(k.__name__ for k in kinds)}, got a boolean", key)
    if not isinstance(value, kinds):
        raise InvalidRequest(
            f"'{key}' must be {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}", key
        )
    return value


def parse_request(body: object, chat: bool) -> ParsedRequest:
    """Validate a /v1/completions or /v1/chat/completions body; raises InvalidRequest."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    req = ParsedRequest(chat=chat, model=_get(body, "model", (str,)))
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("'messages' must be a non-empty list", "messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise InvalidRequest(f"messages[{i}] needs a string 'role'", "messages")
            content = m.get("content")
            if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
                if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                    raise InvalidRequest(f"messages[{i}]: only text content is supported", "messages")
                m = {**m, "content": "".join(p.get("text", "") for p in content)}
            elif not isinstance(content, str):
                raise InvalidRequest(f"messages[{i}] needs string 'content'", "messages")
            messages[i] = m
        req.messages = messages
        req.max_tokens = _get(body, "max_completion_tokens", (int,)) or _get(body, "max_tokens", (int,))
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, list):
            if not prompt or not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
                raise InvalidRequest(
                    "'prompt' must be a string or a list of token ids (one prompt per request)", "prompt"
                )
        elif not isinstance(prompt, str) or not prompt:
            raise InvalidRequest("'prompt' must be a non-empty string or a list of token ids", "prompt")
        req.prompt = prompt
        req.max_tokens = _get(body, "max_tokens", (int,), 16)
        if body.get("echo"):
            raise InvalidRequest("'echo' is not supported", "echo")
    if req.max_tokens is not None and req.max_tokens < 1:
        raise InvalidRequest(f"'max_tokens' must be >= 1, got {req.max_tokens}", "max_tokens")
    for key in ("n", "best_of"):
        if _get(body, key, (int,), 1) != 1:
            raise InvalidRequest(f"'{key}' other than 1 is not supported", key)
    if body.get("logprobs") not in (None, False) or body.get("top_logprobs") is not None:
        raise InvalidRequest("logprobs are not supported", "logprobs")
    req.sampling = parse_sampling(body)
    req.stream = _get(body, "stream", (bool,), False)
    options = _get(body, "stream_options", (dict,), {})
    if options and not req.stream:
        raise InvalidRequest("'stream_options' needs 'stream': true", "stream_options")
    req.include_usage = bool(_get(options, "include_usage", (bool,), False))
    req.continuous_usage = bool(_get(options, "continuous_usage_stats", (bool,), False))
    return req


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> dict:
    """OpenAI's usage object; `prompt_tokens_details.cached_tokens` = prompt tokens served from the prefix cache."""
    body = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        body["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return body


def stream_chunk(
    request_id: str,
    model: str,
    chat: bool,
    text: str | None,
    finish_reason: str | None,
    created: int,
    usage_now: dict | None = None,
    role: bool = False,
) -> bytes:
    """One `data: {...}` SSE event; text None with usage_now gives the usage-only final chunk."""
    if text is None:
        choices: list = []
    elif chat:
        delta = {"role": "assistant", "content": text} if role else {"content": text}
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    else:
        choices = [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]
    chunk = {
        "id": request_id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage_now is not None:
        chunk["usage"] = usage_now
    return b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def final_body(request_id: str, model: str, chat: bool, text: str, finish_reason: str | None, usage_now: dict) -> dict:
    if chat:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return {
        "id": request_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage_now,
    }
