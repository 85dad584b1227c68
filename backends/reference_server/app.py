"""The reference engine behind an OpenAI-compatible HTTP API (`python -m backends.reference_server`).

FastAPI + uvicorn on one asyncio loop; the engine steps on its own thread (reference_engine.StreamingEngine)
and hands each request's outputs to that request's asyncio queue. Routes: POST /v1/completions and
/v1/chat/completions (SSE streaming with usage, or one JSON body), GET /v1/models, /health, /metrics
(Prometheus text). A client that disconnects aborts its request, which frees its KV blocks.

Any single request is survived: every field is checked at the API (400 with a JSON error), a request the engine
fails while running is a 500 for that request alone, bodies above max_body_bytes get 413, and the API key is
compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import secrets
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from backends.reference_server.openai_api import (
    InvalidRequest,
    ParsedRequest,
    error_body,
    final_body,
    parse_json,
    parse_request,
    stream_chunk,
    usage,
)
from benchctl.workload.chat import ChatTemplate
from reference_engine.streaming import RequestFailed

SAMPLING_ENGINE_ARGS = ("temperature", "top_p", "top_k")  # --engine-arg defaults for requests that omit them
# A request body beyond this is refused unread (413): the longest prompt this engine takes (a few thousand
# tokens, as ids or chat messages) is well under 1 MiB.
DEFAULT_MAX_BODY_BYTES = 8 << 20


class _BodyTooLarge(Exception):
    pass


class _SSEResponse(StreamingResponse):
    """Closes its generator however the response ends, so the generator's `finally` (abort) always runs."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


class ServerState:
    """The engine, the served name, and the counters /metrics reports beside the engine's own."""

    def __init__(
        self,
        streaming_engine,
        model_name: str,
        model_dir: Path,
        defaults: dict,
        api_key: str | None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ):
        self.se = streaming_engine
        self.engine = streaming_engine.engine
        self.model_name = model_name
        self.defaults = defaults
        # the Authorization header a client must send, as bytes: compared with hmac.compare_digest
        self.expected_auth = f"Bearer {api_key}".encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.chat_template = ChatTemplate(model_dir)
        self.ids = itertools.count()
        self.prefix = secrets.token_hex(4)
        self.num_prompt_tokens = 0
        self.num_finished = 0
        self.num_aborted = 0
        self.num_failed = 0

    def authorized(self, header: str | None) -> bool:
        if self.expected_auth is None:
            return True
        # Starlette decodes header bytes as latin-1: encoding back gives the bytes the client sent
        return hmac.compare_digest((header or "").encode("latin-1"), self.expected_auth)

    def new_id(self, chat: bool) -> str:
        return f"{'chatcmpl' if chat else 'cmpl'}-{self.prefix}-{next(self.ids)}"

    def metrics_text(self) -> str:
        """Prometheus exposition; read from the event loop while the engine thread runs (gauges may be one step
        old)."""
        bm, sched, stats = self.engine.block_manager, self.engine.scheduler, self.engine.stats
        used, total = bm.num_used_blocks, bm.num_total_blocks
        rows = [
            ("kv_blocks_used", "gauge", "KV cache blocks held by sequences", used),
            ("kv_blocks_total", "gauge", "KV cache blocks in the pool", total),
            (
                "kv_cache_usage_perc",
                "gauge",
                "fraction of KV cache blocks in use (0-1)",
                used / total if total else 0.0,
            ),
            ("num_requests_running", "gauge", "sequences in the running batch", len(sched.running)),
            ("num_requests_waiting", "gauge", "sequences waiting for admission", len(sched.waiting)),
            ("num_preemptions_total", "counter", "sequences preempted (recompute)", stats.num_preemptions),
            ("prompt_tokens_total", "counter", "prompt tokens of admitted requests", self.num_prompt_tokens),
            ("generation_tokens_total", "counter", "tokens generated", stats.num_generated_tokens),
            ("request_success_total", "counter", "requests that finished", self.num_finished),
            ("request_aborted_total", "counter", "requests aborted (client disconnects)", self.num_aborted),
            ("request_failed_total", "counter", "requests the engine failed while running them", self.num_failed),
            (
                "num_failed_steps_total",
                "counter",
                "engine steps that raised (their requests failed, the engine went on)",
                self.se.num_failed_steps,
            ),
            ("num_steps_total", "counter", "engine steps", stats.num_steps),
            # vLLM's definition: prompt tokens looked up in the prefix cache, and those found there
            (
                "prefix_cache_queries_total",
                "counter",
                "prompt tokens looked up in the prefix cache",
                bm.num_prefix_query_tokens,
            ),
            (
                "prefix_cache_hits_total",
                "counter",
                "prompt tokens found in the prefix cache",
                bm.num_prefix_hits * bm.block_size,
            ),
            # vLLM's spec-decode counters (zero unless speculative=ngram)
            ("spec_decode_num_drafts_total", "counter", "sequence-steps that had a draft", stats.num_drafts),
            ("spec_decode_num_draft_tokens_total", "counter", "draft tokens checked", stats.num_draft_tokens),
            ("spec_decode_num_accepted_tokens_total", "counter", "draft tokens kept", stats.num_accepted_tokens),
        ]
        lines = []
        for name, kind, help_text, value in rows:
            full = f"reference_engine:{name}"
            lines += [
                f"# HELP {full} {help_text}",
                f"# TYPE {full} {kind}",
                f'{full}{{model_name="{self.model_name}"}} {value}',
            ]
        return "\n".join(lines) + "\n"


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(title="benchctl reference server", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def check_api_key(request: Request, call_next):
        if request.url.path.startswith("/v1/") and not state.authorized(request.headers.get("authorization")):
            return JSONResponse(
                error_body("invalid or missing API key", "authentication_error", code=401), status_code=401
            )
        return await call_next(request)

    @app.get("/health")
    async def health():
        if not state.se._thread.is_alive():
            return JSONResponse({"status": "engine loop stopped"}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics_text(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [
                {
                    "id": state.model_name,
                    "object": "model",
                    "owned_by": "benchctl",
                    "max_model_len": state.engine.config.max_model_len,
                }
            ],
        }

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _generate(state, request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _generate(state, request, chat=True)

    return app


def _bad_request(e: InvalidRequest | ValueError) -> JSONResponse:
    return JSONResponse(error_body(str(e), param=getattr(e, "param", None)), status_code=400)


def _server_error(message: str, status: int = 500) -> JSONResponse:
    return JSONResponse(error_body(message, "server_error", code=status), status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or _BodyTooLarge as soon as it (or its declared Content-Length) is past `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _generate(state: ServerState, request: Request, chat: bool):
    from reference_engine import SamplingParams

    try:
        raw = await _read_body(request, state.max_body_bytes)
    except _BodyTooLarge:
        return JSONResponse(
            error_body(f"the request body is larger than {state.max_body_bytes} bytes", code=413), status_code=413
        )
    try:
        req = parse_request(parse_json(raw), chat)
        if req.model is not None and req.model != state.model_name:
            return JSONResponse(
                error_body(
                    f"model {req.model!r} does not exist; this server serves {state.model_name!r}",
                    "not_found_error",
                    "model",
                    404,
                ),
                status_code=404,
            )
        prompt_ids = _prompt_ids(state, req)
        limit = state.engine.config.max_model_len
        max_tokens = req.max_tokens if req.max_tokens is not None else limit - len(prompt_ids)
        if len(prompt_ids) + max_tokens > limit:
            raise InvalidRequest(
                f"this model's maximum context length is {limit} tokens; the request has "
                f"{len(prompt_ids)} prompt tokens and asks for {max_tokens} more",
                "max_tokens",
            )
        params = SamplingParams(max_tokens=max_tokens, **{**state.defaults, **req.sampling})
    except (InvalidRequest, ValueError, TypeError) as e:
        return _bad_request(e)
    request_id = state.new_id(chat)
    try:
        stream = state.se.submit(request_id, prompt_ids, params, asyncio.get_running_loop())
    except RuntimeError as e:  # the engine loop has stopped (a bug in the loop itself): /health says so too
        return _server_error(str(e), 503)
    state.num_prompt_tokens += len(prompt_ids)
    if req.stream:
        return _SSEResponse(
            _sse(state, stream, req, request_id, len(prompt_ids)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Request-Id": request_id},
        )
    return await _complete(state, request, stream, req, request_id, len(prompt_ids))


def _prompt_ids(state: ServerState, req: ParsedRequest) -> list[int]:
    if req.chat:
        text = state.chat_template.render(req.messages)
    elif isinstance(req.prompt, list):
        vocab = state.engine.model_config.vocab_size
        if any(not 0 <= t < vocab for t in req.prompt):
            raise InvalidRequest(f"token ids must be in [0, {vocab})", "prompt")
        return list(req.prompt)
    else:
        text = req.prompt
    ids = state.engine.tokenizer.encode(text).ids  # as LLMEngine.add_request tokenizes a text prompt
    if not ids:
        raise InvalidRequest("the prompt is empty after tokenization", "prompt")
    return ids


async def _sse(state: ServerState, stream, req: ParsedRequest, request_id: str, num_prompt: int):
    created = int(time.time())
    finished = False
    first = True
    try:
        async for out in stream:
            if out.error is not None and out.finish_reason != "abort":
                yield b"data: " + json.dumps(error_body(out.error, "server_error", code=500)).encode() + b"\n\n"
                finished = True
                break
            completion = out.outputs[0] if out.outputs else None
            text = completion.text_delta if completion else ""
            n_out = len(out.token_ids)
            if out.new_token_ids or out.finished:
                yield stream_chunk(
                    request_id,
                    state.model_name,
                    req.chat,
                    text,
                    out.finish_reason if out.finished else None,
                    created,
                    usage(num_prompt, n_out, out.num_cached_tokens) if req.continuous_usage else None,
                    role=req.chat and first,
                )
                first = False
            if out.finished and out.finish_reason == "abort":  # aborted by the server (shutting down)
                finished = True
                state.num_aborted += 1
                break
            if out.finished:
                finished = True
                state.num_finished += 1
                if req.include_usage:
                    yield stream_chunk(
                        request_id,
                        state.model_name,
                        req.chat,
                        None,
                        None,
                        created,
                        usage(num_prompt, n_out, out.num_cached_tokens),
                    )
                yield b"data: [DONE]\n\n"
    except ValueError as e:  # the engine refused the request (raised on the stream)
        yield b"data: " + json.dumps(error_body(str(e))).encode() + b"\n\n"
        finished = True
    except RequestFailed as e:  # the engine failed while running it; the others go on
        state.num_failed += 1
        yield b"data: " + json.dumps(error_body(str(e), "server_error", code=500)).encode() + b"\n\n"
        finished = True
    finally:
        if not finished:  # the client went away (or the server is stopping): free the request's blocks
            state.se.abort(request_id)
            state.num_aborted += 1


async def _complete(state: ServerState, request: Request, stream, req: ParsedRequest, request_id: str, num_prompt: int):
    client_left = asyncio.Event()

    async def watch_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        client_left.set()
        state.se.abort(request_id)

    watcher = asyncio.create_task(watch_disconnect())
    final = None
    try:
        async for out in stream:
            final = out
    except ValueError as e:
        return _bad_request(e)
    except RequestFailed as e:
        state.num_failed += 1
        return _server_error(str(e))
    finally:
        watcher.cancel()
    # One count per request: a success only when it finished on its own (a client leaving at its very end still
    # got it), else aborted (the client left) or failed.
    if final is not None and final.finished and final.error is None and final.finish_reason != "abort":
        state.num_finished += 1
        return final_body(
            request_id,
            state.model_name,
            req.chat,
            final.text,
            final.finish_reason,
            usage(num_prompt, len(final.token_ids), final.num_cached_tokens),
        )
    if client_left.is_set() or (final is not None and final.finish_reason == "abort"):
        state.num_aborted += 1
        return _server_error("the request was aborted")
    state.num_failed += 1
    return _server_error(final.error if final is not None and final.error else "the engine ended it without output")
