"""vLLM offline: one `LLM.generate` over the whole workload, prompts as token ids, exact output lengths.

Float32 on CPU (bf16 is ~4x slower without AVX-512), `ignore_eos=True` and `max_tokens = output_len` per request,
greedy unless sampling engine args say otherwise. Per-request times come from vLLM's own request metrics
(`RequestOutput.metrics`, a `RequestStateStats`, filled because the worker enables stats): `first_token_ts` and
`last_token_ts` are `time.monotonic()` stamps taken in the engine core when the step's outputs are produced, the
same clock as the run's (system-wide on Linux). vLLM does not keep a time per token, so records carry no
`token_times_s` (ITL is unavailable; TPOT is still defined) and say so in `extra`.

vLLM's CPU platform starts its engine core and workers with multiprocessing `spawn`; the worker runs as
`python -m benchctl.worker`, whose `__main__` multiprocessing does not re-execute in children.
"""

from __future__ import annotations

import os

from backends._common import convert, managed_env, record, versions
from benchctl.backend import Backend, Capabilities, ServerSpec

# --engine-arg keys that become environment variables before vLLM is imported
_ENV_ARGS = {"kv_cache_space": "VLLM_CPU_KVCACHE_SPACE", "cpu_omp_threads_bind": "VLLM_CPU_OMP_THREADS_BIND"}
_SAMPLING_ARGS = ("temperature", "top_p", "top_k")
ENGINE_ARGS = {
    "max_num_seqs": "max sequences per step (vLLM's default depends on the platform)",
    "max_num_batched_tokens": "max tokens per step",
    "max_model_len": "context length (default: the model's)",
    "block_size": "tokens per KV block (a multiple of 32 on CPU)",
    "gpu_memory_utilization": "fraction of GPU memory for weights + KV cache (GPU only)",
    "tensor_parallel_size": "tensor-parallel workers",
    "enable_prefix_caching": "true/false",
    "enable_chunked_prefill": "true/false",
    "enable_prompt_tokens_details": "serving: true = usage.prompt_tokens_details.cached_tokens per request",
    "dtype": "float32 (default on CPU), bfloat16, float16, auto",
    "enforce_eager": "true (default on CPU: no torch.compile, start in seconds) or false",
    "kv_cache_space": "CPU: KV cache size in GiB (sets VLLM_CPU_KVCACHE_SPACE; default on CPU: 4 GiB)",
    "cpu_omp_threads_bind": "CPU: OpenMP thread binding, e.g. auto (default) or 0-1 (VLLM_CPU_OMP_THREADS_BIND)",
    "kv_cache_memory_bytes": "KV cache size in bytes",
    "swap_space": "CPU swap space in GiB for preempted sequences",
    "seed": "engine seed (default: the workload seed)",
    "temperature": "0 = greedy (default)",
    "top_p": "nucleus threshold (default 1.0)",
    "top_k": "top-k (default 0 = off)",
}

DEFAULT_CPU_KV_CACHE_BYTES = 4 << 30
_KV_SIZE_ARGS = ("kv_cache_memory_bytes", "gpu_memory_utilization", "kv_cache_space")


def cpu_kv_cache_default(args: dict, on_cpu: bool) -> dict:
    """vLLM-CPU otherwise reserves 92% of RAM (gpu_memory_utilization) and refuses to start when any other process
    holds memory; a fixed 4 GiB KV cache unless the user sized it (the same rule offline and in serving mode)."""
    if on_cpu and not set(_KV_SIZE_ARGS) & set(args) and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return {**args, "kv_cache_memory_bytes": DEFAULT_CPU_KV_CACHE_BYTES}
    return args


def _server_args(args: dict[str, str]) -> dict[str, str]:
    from benchctl.envinfo import cuda_present

    return {k: str(v) for k, v in cpu_kv_cache_default(args, on_cpu=not cuda_present()).items()}


BACKEND = Backend(
    name="vllm",
    description="vLLM offline LLM.generate (vllm-cpu on a CPU host): paged attention, continuous batching",
    worker="backends.vllm:VLLMWorker",
    requirements=("vllm",),
    extra="vllm",
    managed_env="vllm",
    capabilities=Capabilities(offline=True, serving=True, per_token_times=False, engine_stats=True),
    engine_args=ENGINE_ARGS,
    # serving mode: vLLM's own OpenAI server in the managed environment (`vllm serve` looks up package
    # metadata named `vllm`, which vllm-cpu lacks, so the module is started directly)
    server=ServerSpec(
        argv=(
            "{python}",
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            "{model_dir}",
            "--served-model-name",
            "{model_name}",
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--dtype",
            "float32",
            "--max-model-len",
            "{max_model_len}",
            "--enforce-eager",
        ),
        engine_bool=("--{flag}", "--no-{flag}"),
        env_args=_ENV_ARGS,
        request_args=_SAMPLING_ARGS,
        startup_timeout_s=900.0,
        default_args=_server_args,
    ),
)
NO_TOKEN_TIMES = "not provided: vLLM's RequestOutput.metrics keeps first/last token times only"


class VLLMWorker:
    def load(self, model: dict, options: dict) -> dict:
        args = {k: convert(v) for k, v in (options.get("engine_args") or {}).items()}
        for key, var in _ENV_ARGS.items():
            if key in args:
                os.environ[var] = str(args.pop(key))
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # what vLLM's CPU platform forces anyway
        import torch
        from vllm import LLM
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        self.sampling = {k: args.pop(k) for k in _SAMPLING_ARGS if k in args}
        args.setdefault("dtype", "float32" if on_cpu else "auto")
        args.setdefault("enforce_eager", on_cpu)
        args.setdefault("seed", int(options.get("seed") or 0))
        if os.path.isfile(os.path.join(model["hf_dir"], "benchctl_dummy.json")):  # benchctl.dummy: random weights
            args.setdefault("load_format", "dummy")
        args = cpu_kv_cache_default(args, on_cpu)
        # stats on: RequestOutput.metrics (first/last token times) is only filled when vLLM logs stats
        try:
            self.llm = LLM(model=model["hf_dir"], tokenizer=model["hf_dir"], disable_log_stats=False, **args)
        except RuntimeError as e:  # the engine core's own traceback went to its stderr: the run's worker.log
            raise RuntimeError(f"{e} (vLLM's engine-core error is in worker.log)") from None
        config = self.llm.llm_engine.vllm_config
        dtype, quant = str(config.model_config.dtype).removeprefix("torch."), config.model_config.quantization
        return {
            "engine": "vllm",
            "versions": versions("vllm", "vllm-cpu", "torch", "transformers"),
            "managed_env": managed_env(),
            "device": "cpu" if on_cpu else str(current_platform.device_name),
            "dtype": dtype,
            "precision": f"{quant} (compute {dtype})" if quant else dtype,
            "engine_args": args,
            "max_num_seqs": config.scheduler_config.max_num_seqs,
            "max_model_len": config.model_config.max_model_len,
            "block_size": config.cache_config.block_size,
            "kv_cache_memory_bytes": config.cache_config.kv_cache_memory_bytes,
            "torch_threads": torch.get_num_threads(),
            "sampling": self.sampling or {"temperature": 0.0},
            "token_times": NO_TOKEN_TIMES,
            "env": {v: os.environ[v] for v in (*_ENV_ARGS.values(), "VLLM_WORKER_MULTIPROC_METHOD") if v in os.environ},
        }

    def run(self, requests: list[dict], ctx) -> dict:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=r["prompt_token_ids"]) for r in requests]
        params = [
            SamplingParams(
                max_tokens=r["output_len"], ignore_eos=True, detokenize=False, **{"temperature": 0.0, **self.sampling}
            )
            for r in requests
        ]
        t0 = ctx.t0  # records are seconds since t0 on time.monotonic, the clock of vLLM's engine-core stamps
        start_s = ctx.now()  # all requests submitted at once: vLLM schedules them itself
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        done_s = ctx.now()
        if len(outputs) != len(requests):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} prompts")
        preemptions = 0
        for r, out in zip(requests, outputs):
            if list(out.prompt_token_ids) != list(r["prompt_token_ids"]):
                raise RuntimeError(f"vLLM output order does not match the prompts at {r['request_id']}")
            m, tokens = out.metrics, list(out.outputs[0].token_ids)
            first = m.first_token_ts - t0 if m is not None and m.first_token_ts else None
            last = m.last_token_ts - t0 if m is not None and m.last_token_ts else None
            preemptions += m.num_preemptions if m is not None else 0
            ctx.emit(
                record(
                    r,
                    output_tokens=len(tokens),
                    start_s=start_s,
                    first_token_s=first,
                    finish_s=last if last is not None else done_s,
                    token_times_s=None,
                    error=None if out.finished else "vLLM returned an unfinished request",
                    extra={
                        "token_times_s": NO_TOKEN_TIMES,
                        "output_token_ids": tokens,
                        "times_from": "vllm_metrics" if m is not None else "generate_return (no vLLM metrics)",
                        "finish_reason": out.outputs[0].finish_reason,
                        "num_cached_tokens": out.num_cached_tokens,
                        "engine_queued_s": m.queued_ts - t0 if m is not None and m.queued_ts else None,
                        "engine_scheduled_s": m.scheduled_ts - t0 if m is not None and m.scheduled_ts else None,
                        "num_preemptions": m.num_preemptions if m is not None else None,
                    },
                )
            )
        return {"generate_s": done_s - start_s, "num_preemptions": preemptions}
