"""An OpenAI-compatible server that misbehaves on request: the prompt (or the chat's last message) names the fault.

Modes (the prompt starts with `mode:NAME`; anything else is a well-formed 4-chunk answer):
- usage_list / usage_string: the final usage chunk's `usage` is a list / a string
- text_number: the token chunks' `text` (chat: `delta.content`) is a number
- empty: only `data: [DONE]` (usage says 0 completion tokens)
- over: max_tokens + 3 tokens, and usage says so
- stall: two chunks, then nothing until the client closes the connection (noted at GET /debug/events)
- long_line: `data: ` and then bytes without a newline, until the client closes (up to 64 MiB)
- status_500: HTTP 500 with a JSON error
- reset: two chunks, then the connection is reset (TCP RST)
- non_json: one chunk, then `data: {oops`
- slow: a well-formed answer whose first chunk comes after 1.5 s

Run: python tests/harness/fakes_serving/misbehaving_server.py PORT   (prints "listening on PORT")
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys

from aiohttp import web

LONG_LINE_LIMIT_BYTES = 64 << 20


def chunk(chat: bool, text, usage=None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
    body: dict = {"choices": [choice]}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def usage_chunk(usage) -> bytes:
    return b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n"


class Misbehaving:
    def __init__(self) -> None:
        self.events: list[dict] = []  # {"request": id, "event": "closed_by_client", ...}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/debug/events", self.debug_events)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def debug_events(self, request: web.Request) -> web.Response:
        return web.json_response(self.events)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        chat = request.path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
        mode = prompt.split()[0].removeprefix("mode:") if prompt.startswith("mode:") else "ok"
        rid = request.headers.get("X-Request-Id", "?")
        max_tokens = int(body.get("max_tokens") or 4)
        if mode == "status_500":
            return web.json_response({"error": {"message": "internal failure"}}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if mode == "slow":
            await asyncio.sleep(1.5)
        n = {"over": max_tokens + 3, "empty": 0}.get(mode, max_tokens)
        text = 7 if mode == "text_number" else " hello"
        for k in range(n):
            if mode == "non_json" and k == 1:
                await resp.write(b"data: {oops\n\n")
                return resp
            if mode in ("stall", "reset") and k == 2:
                await (self._stall(request, rid) if mode == "stall" else self._reset(request))
                return resp
            await resp.write(chunk(chat, text))
        if mode == "long_line":
            await self._long_line(request, resp, rid)
            return resp
        usage = {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}
        usage = {"usage_list": [1, n], "usage_string": "n tokens"}.get(mode, usage)
        await resp.write(usage_chunk(usage) + b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _stall(self, request: web.Request, rid: str) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.02)
        self.events.append({"request": rid, "event": "closed_by_client", "after_s": loop.time() - t0})

    async def _reset(self, request: web.Request) -> None:
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() sends RST
        request.transport.abort()

    async def _long_line(self, request: web.Request, resp: web.StreamResponse, rid: str) -> None:
        piece = b"x" * 65536
        sent = 0
        try:
            await resp.write(b"data: ")
            while sent < LONG_LINE_LIMIT_BYTES and request.transport is not None:
                await resp.write(piece)
                sent += len(piece)
        except (ConnectionError, RuntimeError):
            pass
        self.events.append({"request": rid, "event": "long_line_ended", "sent_bytes": sent})


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0

    async def serve() -> None:
        runner = web.AppRunner(Misbehaving().app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        print(f"listening on {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
