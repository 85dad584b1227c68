"""Hugging Face Text Generation Inference, reached through its own server (serving mode only).

Launch (a CUDA host with TGI installed): `text-generation-launcher --model-id DIR --hostname H --port P`, plus each
`--engine-arg key=value` as `--key value` (e.g. max_total_tokens, max_input_tokens, num_shard,
max_batch_total_tokens). `--engine-arg prefix_caching=0` sets TGI 3.x's PREFIX_CACHING variable. Or attach to a
running server: `--backend tgi --base-url URL`.

What the client meets: `GET /health` answers 200 once the shards are up (connection refused before); the OpenAI
routes are /v1/completions and /v1/chat/completions; a chat stream with include_usage carries usage on its last
token chunk (no separate usage chunk), completions streams always end with usage; keep-alive `:` comments
between events. Prometheus /metrics is always on: tgi_batch_current_size (running), tgi_queue_size (waiting);
TGI exports no KV-cache fraction, prefix-cache hit rate or preemption count.
"""

from __future__ import annotations

from benchctl.backend import ServerSpec, server_backend

BACKEND = server_backend(
    "tgi",
    "Hugging Face TGI's own server (text-generation-launcher), launched or attached (serving mode)",
    needs_cuda=True,
    engine_args={
        "max_total_tokens": "input + output tokens per request",
        "max_input_tokens": "prompt tokens",
        "max_batch_total_tokens": "KV budget of a batch, in tokens",
        "num_shard": "tensor-parallel shards",
        "max_concurrent_requests": "admission limit (default 128)",
        "prefix_caching": "0/1 (TGI 3.x PREFIX_CACHING; on by default)",
        "dtype": "float16, bfloat16",
    },
    server=ServerSpec(
        argv=("text-generation-launcher", "--model-id", "{model_dir}", "--hostname", "{host}", "--port", "{port}"),
        env_args={"prefix_caching": "PREFIX_CACHING"},
        health_route="/health",
        metrics_route="/metrics",
        startup_timeout_s=1800.0,
    ),
    executables=("text-generation-launcher",),
    install_hint="TGI runs from its CUDA container or a source install; CPU-only hosts need its Intel CPU image",
)
