"""lmdeploy's api_server with the TurboMind engine, reached through its own server (serving mode only).

Launch (a CUDA host with lmdeploy installed): `lmdeploy serve api_server DIR --server-name H --server-port P
--model-name NAME --session-len LEN --backend turbomind`, plus `--engine-arg key=value` as `--key value`
(tp, max_batch_size, cache_max_entry_count, max_prefill_token_num); `enable_prefix_caching=true` adds the flag
(off by default in lmdeploy), `enable_metrics=true` the metrics flag of the releases that need it. Or attach:
`--backend lmdeploy --base-url URL`.

What the client meets: `GET /health` 200 when ready (newer releases answer JSON with a status, 503 while
initializing); the request's model must be the served name (the client takes it from /v1/models); older releases
put cumulative usage on every chunk when include_usage is set, newer ones send a final `choices: []` usage chunk;
both end with `data: [DONE]`. Prometheus /metrics: lmdeploy:num_requests_running, lmdeploy:num_requests_waiting,
lmdeploy:gpu_cache_usage_perc (0-1); its prefix-cache hit rate is logged, not exported.
"""

from __future__ import annotations

from benchctl.backend import ServerSpec, server_backend

BACKEND = server_backend(
    "lmdeploy",
    "lmdeploy api_server (TurboMind: persistent batch, blocked KV cache), launched or attached (serving)",
    needs_cuda=True,
    engine_args={
        "tp": "tensor-parallel GPUs",
        "max_batch_size": "sequences per step",
        "cache_max_entry_count": "fraction of free GPU memory for the KV cache (default 0.8)",
        "max_prefill_token_num": "tokens per prefill step",
        "enable_prefix_caching": "true/false (off)",
        "enable_metrics": "true on releases where /metrics is opt-in",
        "quant_policy": "KV quantization 0/4/8",
    },
    server=ServerSpec(
        argv=(
            "lmdeploy",
            "serve",
            "api_server",
            "{model_dir}",
            "--server-name",
            "{host}",
            "--server-port",
            "{port}",
            "--model-name",
            "{model_name}",
            "--session-len",
            "{max_model_len}",
            "--backend",
            "turbomind",
        ),
        engine_bool=("--{flag}", ""),
        health_route="/health",
        metrics_route="/metrics",
        startup_timeout_s=1800.0,
    ),
    executables=("lmdeploy",),
    install_hint="pip install lmdeploy on a CUDA host; TurboMind has no CPU backend",
)
