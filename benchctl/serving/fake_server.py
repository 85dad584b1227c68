"""A deterministic OpenAI-compatible server for measuring the measurer (tests and `benchctl bench-client`).

Every streamed request gets its first chunk `ttft_ms` after it arrived, then one chunk every `itl_ms`, each chunk
carrying `tokens_per_chunk` tokens (" hello", one token each under SmolLM2's tokenizer), then a usage chunk and
`data: [DONE]`. Send times follow an absolute schedule (no drift); `spin_us` busy-waits the last microseconds
before each send for sub-millisecond precision. The actual monotonic send time of every chunk is kept per
X-Request-Id and served at GET /debug/timings, so a client's timestamps can be compared with the truth.

Prompts that start with a command misbehave on purpose: `!status:CODE`, `!malformed`, `!truncate` (close
mid-stream), `!hang` (never answer), `!nousage` (no usage chunk).

Run: python -m benchctl.serving.fake_server --port 0 --ttft-ms 50 --itl-ms 20   (prints "listening on PORT")
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from typing import cast

from aiohttp import web

TOKEN_TEXT = " hello"


class FakeServer:
    def __init__(
        self,
        ttft_ms: float = 0.0,
        itl_ms: float = 0.0,
        tokens_per_chunk: int = 1,
        spin_us: float = 0.0,
        keep_timings: bool = True,
        model_name: str = "fake-model",
        jitter: float = 0.0,
        drift_per_min: float = 0.0,
        seed: int = 0,
        engine_dies_after_s: float | None = None,
    ):
        self.ttft_s, self.itl_s = ttft_ms / 1000, itl_ms / 1000
        # a noisy machine on demand: each request's TTFT and ITL times a factor uniform in 1 +- jitter, and a
        # slowdown growing by drift_per_min (a fraction) every minute since the server started (benchctl ab's tests)
        self.jitter, self.drift_per_min, self.rng = jitter, drift_per_min, random.Random(seed)
        self.t_start = time.monotonic()
        # a server whose engine died while its HTTP front end lives on: /health 503, requests never answered
        self.engine_dies_after_s = engine_dies_after_s
        self.tokens_per_chunk = tokens_per_chunk
        self.spin_s = spin_us / 1e6
        self.keep_timings = keep_timings
        self.model_name = model_name
        self.timings: dict[str, dict] = {}  # request id -> {"recv": t, "chunks": [t, ...]} (time.monotonic)
        self.running = 0
        self.finished = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/debug/timings", self.debug_timings)
        return app

    def engine_dead(self) -> bool:
        return self.engine_dies_after_s is not None and time.monotonic() - self.t_start > self.engine_dies_after_s

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="engine dead", status=503) if self.engine_dead() else web.Response(text="ok")

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model_name, "object": "model"}]})

    async def metrics(self, request: web.Request) -> web.Response:
        label = f'{{model_name="{self.model_name}"}}'
        usage = min(self.running / 64, 1.0)
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {self.running}",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{label} {usage}",
            "# TYPE vllm:request_success_total counter",
            f"vllm:request_success_total {self.finished}",
            "# TYPE unrelated_metric gauge",
            "unrelated_metric 1",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def debug_timings(self, request: web.Request) -> web.Response:
        return web.json_response(self.timings)

    async def _until(self, t: float) -> None:
        delay = t - time.monotonic()
        if delay > self.spin_s:
            await asyncio.sleep(delay - self.spin_s)
        while time.monotonic() < t:  # busy-wait the last spin_s: asyncio's timers are ~1 ms coarse
            pass

    async def completions(self, request: web.Request) -> web.StreamResponse:
        t_recv = time.monotonic()
        if self.engine_dead():
            await asyncio.Event().wait()  # accepted, never answered
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response(
                {"error": {"message": "invalid JSON", "type": "invalid_request_error"}}, status=400
            )
        chat = request.path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
        max_tokens = int(body.get("max_tokens") or 16)
        if prompt.startswith("!status:"):
            code = int(prompt.split(":")[1].split()[0])
            return web.json_response({"error": {"message": f"fake failure {code}"}}, status=code)
        if prompt.startswith("!hang"):
            await asyncio.sleep(3600)
        if not body.get("stream"):
            return web.json_response(self._final(body, chat, max_tokens))
        rid = request.headers.get("X-Request-Id", f"anon-{len(self.timings)}")
        chunks: list[float] = []
        if self.keep_timings:
            self.timings[rid] = {
                "recv": t_recv,
                "chunks": chunks,
                "messages": [m.get("role") for m in body.get("messages", [])] if chat else None,
                "contents": [m.get("content") for m in body.get("messages", [])] if chat else None,
                "prompt": None if chat else prompt,
            }
        options = body.get("stream_options") or {}
        per_chunk_usage = bool(options.get("continuous_usage_stats")) and not prompt.startswith("!nousage")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        slow = self._slowdown(t_recv)
        self.running += 1
        try:
            sent = 0
            k = 0
            while sent < max_tokens:
                n = min(self.tokens_per_chunk, max_tokens - sent)
                sent += n
                if prompt.startswith("!malformed") and k == 1:
                    await resp.write(b"data: {not json\n\n")
                    return resp
                if prompt.startswith("!truncate") and k == 1 and request.transport is not None:
                    request.transport.close()
                    return resp
                line = self._chunk(
                    chat, TOKEN_TEXT * n, sent if per_chunk_usage else None, "length" if sent == max_tokens else None
                )
                if self.ttft_s or self.itl_s:
                    await self._until(t_recv + (self.ttft_s + k * self.itl_s) * slow)
                chunks.append(time.monotonic())
                await resp.write(line)
                k += 1
            tail = b""
            if options.get("include_usage") and not prompt.startswith("!nousage"):
                usage = {"prompt_tokens": 1, "completion_tokens": sent, "total_tokens": sent + 1}
                tail += b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n"
            await resp.write(tail + b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        except ConnectionResetError:  # the client hung up (timeout, Ctrl-C): its business, not a server error
            return resp
        finally:
            self.running -= 1
            self.finished += 1

    def _slowdown(self, t: float) -> float:
        return (1 + self.drift_per_min * (t - self.t_start) / 60) * self.rng.uniform(1 - self.jitter, 1 + self.jitter)

    def _chunk(self, chat: bool, text: str, cumulative: int | None, finish: str | None) -> bytes:
        choice = (
            {"index": 0, "delta": {"content": text}, "finish_reason": finish}
            if chat
            else {"index": 0, "text": text, "finish_reason": finish}
        )
        chunk: dict = {"object": "chat.completion.chunk" if chat else "text_completion", "choices": [choice]}
        if cumulative is not None:
            chunk["usage"] = {"prompt_tokens": 1, "completion_tokens": cumulative, "total_tokens": cumulative + 1}
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    def _final(self, body: dict, chat: bool, max_tokens: int) -> dict:
        text = TOKEN_TEXT * max_tokens
        choice = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
            if chat
            else {"index": 0, "text": text, "finish_reason": "length"}
        )
        return {
            "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": max_tokens, "total_tokens": max_tokens + 1},
        }


class InstantProtocol(asyncio.Protocol):
    """`--raw`: the cheapest server that is still honest HTTP/1.1 + SSE, so a throughput benchmark measures the
    client, not the server. Every POST gets its whole stream (max_tokens chunks, usage, [DONE]) in one write."""

    _MAX_TOKENS = re.compile(rb'"max_tokens":\s*(\d+)')
    _CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = self._CONTENT_LENGTH.search(head)
            end = head_end + 4 + (int(length.group(1)) if length else 0)
            if len(self.buffer) < end:
                return
            body, self.buffer = self.buffer[head_end + 4 : end], self.buffer[end:]
            self.transport.write(self._response(head, body))

    def _response(self, head: bytes, body: bytes) -> bytes:
        if head.startswith(b"get /v1/models"):
            payload = b'{"object":"list","data":[{"id":"fake-model","object":"model"}]}'
            return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                len(payload),
                payload,
            )
        if not head.startswith(b"post"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        m = self._MAX_TOKENS.search(body)
        n = int(m.group(1)) if m else 16
        events = [b'data: {"choices":[{"index":0,"text":" hello","finish_reason":null}]}\n\n'] * n
        events.append(b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":%d}}\n\n' % n)
        events.append(b"data: [DONE]\n\n")
        stream = b"".join(events)
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(stream) + stream
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=0.0)
    parser.add_argument("--tokens-per-chunk", type=int, default=1)
    parser.add_argument("--spin-us", type=float, default=0.0)
    parser.add_argument("--jitter", type=float, default=0.0, help="per-request timing factor uniform in 1 +- this")
    parser.add_argument("--drift-per-min", type=float, default=0.0, help="slowdown added per minute (a fraction)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the jitter")
    parser.add_argument("--no-timings", action="store_true", help="keep no per-chunk send times (long runs)")
    parser.add_argument("--raw", action="store_true", help="instant canned streams from a bare asyncio protocol")
    parser.add_argument(
        "--engine-dies-after-s",
        type=float,
        default=None,
        help="then /health answers 503 and requests hang, the HTTP process alive",
    )
    args = parser.parse_args(argv)
    server = FakeServer(
        args.ttft_ms,
        args.itl_ms,
        args.tokens_per_chunk,
        args.spin_us,
        not args.no_timings,
        jitter=args.jitter,
        drift_per_min=args.drift_per_min,
        seed=args.seed,
        engine_dies_after_s=args.engine_dies_after_s,
    )

    async def serve_raw() -> None:
        srv = await asyncio.get_running_loop().create_server(InstantProtocol, args.host, args.port, backlog=4096)
        print(f"listening on {srv.sockets[0].getsockname()[1]}", flush=True)
        await srv.serve_forever()

    async def serve() -> None:
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port, backlog=4096)
        await site.start()
        port = runner.addresses[0][1]
        print(f"listening on {port}", flush=True)
        await asyncio.Event().wait()

    try:
        _run(serve_raw() if args.raw else serve())
    except KeyboardInterrupt:
        pass


def _run(coro) -> None:
    """asyncio.run, on uvloop when it is installed (a faster loop for a server meant to be trivial)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


if __name__ == "__main__":
    main()
