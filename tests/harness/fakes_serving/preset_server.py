"""A stand-in for TGI, lmdeploy and SGLang servers: their health, model-name, metrics and streaming shapes.

The shapes are written from each project's source (see backends/tgi.py, lmdeploy.py, sglang.py):
- tgi: /health 200 once up; a chat stream carries usage on its last token chunk (with finish_reason), a
  completions stream always ends with usage; keep-alive ":" comment lines between events; `data:` without a
  space; metrics tgi_batch_current_size / tgi_queue_size.
- lmdeploy (older releases): usage is cumulative on every chunk; the request's model must be the served name
  (404 otherwise); /health answers JSON; metrics lmdeploy:*.
- sglang: /health is 503 until warm-up is done; a final `choices: []` chunk carries usage; metrics sglang:*.

Run: python tests/harness/fakes_serving/preset_server.py FLAVOR PORT   (prints "listening on PORT")
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web

SERVED = {"tgi": "/models/tiny", "lmdeploy": "served-tiny", "sglang": "tiny"}
WARMUP_S = 1.0  # sglang answers 503 on /health this long after start


def metrics_text(flavor: str, running: int) -> str:
    if flavor == "tgi":
        lines = [
            "# TYPE tgi_batch_current_size gauge",
            f"tgi_batch_current_size {running}",
            "# TYPE tgi_queue_size gauge",
            "tgi_queue_size 0",
            'tgi_request_duration_bucket{le="0.5"} 3',
        ]
    elif flavor == "lmdeploy":
        lines = [
            f'lmdeploy:num_requests_running{{model_name="served-tiny",engine="turbomind"}} {running}',
            'lmdeploy:num_requests_waiting{model_name="served-tiny",engine="turbomind"} 0',
            'lmdeploy:gpu_cache_usage_perc{model_name="served-tiny",engine="turbomind"} 0.25',
        ]
    else:
        lines = [
            f'sglang:num_running_reqs{{model_name="tiny"}} {running}',
            'sglang:num_queue_reqs{model_name="tiny"} 0',
            'sglang:token_usage{model_name="tiny"} 0.125',
            'sglang:cache_hit_rate{model_name="tiny"} 0.5',
            'sglang:num_retracted_reqs{model_name="tiny"} 0',
        ]
    return "\n".join(lines) + "\n"


class PresetServer:
    def __init__(self, flavor: str):
        self.flavor = flavor
        self.started = time.monotonic()
        self.running = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_post("/v1/chat/completions", self.generate)
        return app

    async def health(self, request: web.Request) -> web.Response:
        if self.flavor == "sglang" and time.monotonic() - self.started < WARMUP_S:
            return web.Response(status=503, text="starting")
        if self.flavor == "lmdeploy":
            return web.json_response({"status": "healthy", "message": None})
        return web.Response(text="")

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=metrics_text(self.flavor, self.running), content_type="text/plain")

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": SERVED[self.flavor], "object": "model"}]})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        chat = request.path.endswith("/chat/completions")
        if self.flavor == "lmdeploy" and body.get("model") != SERVED["lmdeploy"]:
            return web.json_response(
                {"error": {"message": f"The model {body.get('model')!r} does not exist."}}, status=404
            )
        n = int(body.get("max_tokens") or 16)
        usage_asked = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        self.running += 1
        try:
            for i in range(n):
                last = i == n - 1
                choice = (
                    {"index": 0, "delta": {"role": "assistant", "content": " hi"}}
                    if chat
                    else {"index": 0, "text": " hi"}
                )
                choice["finish_reason"] = "length" if last else None
                chunk: dict = {
                    "id": "",
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": 0,
                    "model": SERVED[self.flavor],
                    "choices": [choice],
                }
                usage = {"prompt_tokens": 3, "completion_tokens": i + 1, "total_tokens": i + 4}
                if self.flavor == "lmdeploy" and usage_asked:
                    chunk["usage"] = usage  # cumulative on every chunk (older lmdeploy)
                elif self.flavor == "tgi" and last and (usage_asked or not chat):
                    chunk["usage"] = usage  # on the last token chunk
                if self.flavor == "tgi":
                    await resp.write(b":\n\n")  # axum keep-alive comment
                    await resp.write(b"data:" + json.dumps(chunk).encode() + b"\n\n")
                else:
                    await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                await asyncio.sleep(0.002)
            if self.flavor == "sglang" and usage_asked:
                final = {
                    "id": "x",
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "choices": [],
                    "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3},
                }
                await resp.write(b"data: " + json.dumps(final).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        finally:
            self.running -= 1
        return resp


def main() -> None:
    flavor, port = sys.argv[1], int(sys.argv[2])

    async def serve() -> None:
        runner = web.AppRunner(PresetServer(flavor).app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        print(f"listening on {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
