"""SGLang's server (RadixAttention prefix cache), reached through its own server (serving mode only).

Launch (where sglang is importable): `python -m sglang.launch_server --model-path DIR --host H --port P
--served-model-name NAME --context-length LEN --enable-metrics`, plus `--engine-arg key=value` as `--key value`
(tp_size, mem_fraction_static, max_running_requests, chunked_prefill_size); `disable_radix_cache=true` turns the
prefix cache off. Or attach: `--backend sglang --base-url URL`.

What the client meets: `/health` answers 503 until warm-up is done, then 200; include_usage adds a final
`choices: []` usage chunk before `data: [DONE]`. Prometheus /metrics (with --enable-metrics):
sglang:num_running_reqs, sglang:num_queue_reqs, sglang:token_usage (KV fraction), sglang:cache_hit_rate,
sglang:num_retracted_reqs (SGLang's preemptions).
"""

from __future__ import annotations

from benchctl.backend import ServerSpec, server_backend

BACKEND = server_backend(
    "sglang",
    "SGLang's server (python -m sglang.launch_server), launched or attached (serving mode)",
    requirements=("sglang",),
    engine_args={
        "tp_size": "tensor-parallel GPUs",
        "mem_fraction_static": "fraction of memory for weights + KV",
        "max_running_requests": "sequences in flight",
        "chunked_prefill_size": "tokens per prefill chunk",
        "disable_radix_cache": "true turns prefix caching off",
        "device": "cuda (default) or cpu",
        "dtype": "auto, float16, bfloat16",
    },
    server=ServerSpec(
        argv=(
            "{python}",
            "-m",
            "sglang.launch_server",
            "--model-path",
            "{model_dir}",
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--served-model-name",
            "{model_name}",
            "--context-length",
            "{max_model_len}",
            "--enable-metrics",
        ),
        engine_bool=("--{flag}", ""),
        health_route="/health",
        metrics_route="/metrics",
        startup_timeout_s=1800.0,
    ),
    install_hint="pip install sglang on a CUDA host; its CPU engine (Xeon with AMX) is a source build with "
    "SGLANG_USE_CPU_ENGINE=1",
)
