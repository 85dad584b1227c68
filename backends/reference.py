"""benchctl's own reference engine (reference_engine/), driven step by step inside the worker.

The worker owns the arrival clock: requests enter the engine when their precomputed arrival time is
reached (and a --max-concurrency slot is free), and every engine step's new tokens are timestamped.
"""

from __future__ import annotations

import dataclasses

from backends._common import convert, record, torch_threads, versions, wait_until
from benchctl.backend import Backend, BackendError, Capabilities, ServerSpec

ENGINE_ARGS = {
    "max_num_seqs": "max sequences per step (default 64)",
    "max_num_batched_tokens": "max tokens per step (default 512)",
    "max_model_len": "context limit per sequence (default 2048)",
    "kv_cache_memory_fraction": "KV budget as a fraction of free memory when kv_cache_bytes is unset",
    "watermark": "fraction of blocks kept free when admitting prefills (default 0.01)",
    "block_size": "tokens per KV block (default 16)",
    "kv_cache_bytes": "KV cache memory budget in bytes",
    "kv_layout": "paged (default) or contiguous (each sequence reserves max_model_len slots)",
    "enable_prefix_caching": "true/false",
    "enable_chunked_prefill": "true/false",
    "attention_backend": "auto (default: cpu C++ kernels on CPU when they build, else torch), torch, cpu, triton "
    "or cuda",
    "gemm": "auto (default: packed on CPU float32), torch (x @ W), onednn (oneDNN's prepacked linear) or packed "
    "(a kernel over weights packed once in column panels, every step)",
    "gguf_file": "auto (default: the GGUF the model was converted from), none, or a path: decode steps of <= 16 "
    "rows stream its Q4_1/Q8_0 blocks, expanded in the kernel to the same float32 weights",
    "sampler": "batched (default) or per_seq",
    "host_transfer": "coalesced (default) or per_seq",
    "detokenize": "inline (default), thread or off",
    "speculative": "off (default) or ngram (prompt-lookup drafts for greedy sequences, checked in one forward: "
    "same tokens)",
    "num_speculative_tokens": "most draft tokens per sequence and step with speculative=ngram (default 3)",
    "speculative_overhead_rows": "a step's cost apart from its rows, in rows, against which draft rows are weighed "
    "(default 24, this 2-core CPU; a GPU: hundreds)",
    "prompt_lookup_min": "shortest n-gram looked up for a draft (default 1)",
    "prompt_lookup_max": "longest n-gram looked up for a draft (default 3)",
    "dtype": "auto (default: float32 on CPU), float32, float16, bfloat16",
    "temperature": "0 = greedy (default)",
    "top_p": "nucleus threshold (default 1.0)",
    "top_k": "top-k (default 0 = off)",
}


def check_args(engine_args: dict[str, str]) -> None:
    """The engine's options are checked by the engine's own EngineConfig before any process starts: a value outside
    its choices, not a number where one is needed, or refused by its checks (a count below 1, ...) is a user error.
    reference_engine.config imports only the standard library; without options there is nothing to check (and the
    harness imports nothing of the engine)."""
    if not engine_args:
        return
    from reference_engine import config

    for key, value in engine_args.items():
        if key in config._CHOICES and value not in config._CHOICES[key]:
            raise BackendError(f"reference: {key} must be one of {', '.join(config._CHOICES[key])}, got {value!r}")
    kinds = {f.name: str(f.type) for f in dataclasses.fields(config.EngineConfig)}
    options = {}
    for key, value in engine_args.items():
        kind, converted = kinds.get(key, ""), convert(value)
        if kind == "bool" and not isinstance(converted, bool):
            raise BackendError(f"reference: {key} must be true or false, got {value!r}")
        if ("int" in kind or "float" in kind) and (
            isinstance(converted, (str, bool)) or ("float" not in kind and isinstance(converted, float))
        ):
            raise BackendError(
                f"reference: {key} must be {'a number' if 'float' in kind else 'an integer'}, got {value!r}"
            )
        if key in kinds and key != "model_dir":
            options[key] = converted if key not in config._CHOICES else value
    try:
        config.EngineConfig("model", **options)
    except ValueError as exc:
        raise BackendError(f"reference: {exc}") from None


BACKEND = Backend(
    name="reference",
    description="benchctl's paged-attention engine: block KV cache, continuous batching, batched sampler",
    worker="backends.reference:ReferenceWorker",
    requirements=("torch", "safetensors", "tokenizers"),
    extra="reference",
    capabilities=Capabilities(offline=True, serving=True, per_token_times=True, arrivals=True, engine_stats=True),
    engine_args=ENGINE_ARGS,
    check_args=check_args,
    # serving mode (and `benchctl serve`): backends/reference_server in the engine's interpreter
    server=ServerSpec(
        argv=(
            "{python}",
            "-P",
            "-m",
            "backends.reference_server",
            "--model-dir",
            "{model_dir}",
            "--model-name",
            "{model_name}",
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--exit-with-parent",
        ),
        engine_arg=("--engine-arg", "{key}={value}"),
    ),
)
_SAMPLING_KEYS = ("temperature", "top_p", "top_k")


class ReferenceWorker:
    def load(self, model: dict, options: dict) -> dict:
        import torch

        from reference_engine import LLMEngine

        torch.set_num_threads(torch_threads())
        args = {k: convert(v) for k, v in (options.get("engine_args") or {}).items()}
        # greedy unless asked, as every other backend (SamplingParams' own default is vLLM's temperature 1.0)
        self.sampling = {"temperature": 0.0, **{k: args.pop(k) for k in _SAMPLING_KEYS if k in args}}
        self.seed = int(options.get("seed") or 0)
        self.engine = LLMEngine(model["hf_dir"], **args)
        info = {
            "engine": "reference",
            "versions": versions("benchctl", "torch"),
            "threads": torch.get_num_threads(),
            "sampling": self.sampling,
        }
        info.update(self.engine.info() if hasattr(self.engine, "info") else {})
        info.setdefault("precision", info.get("dtype"))  # unquantized: the weights are the compute dtype
        return info

    def run(self, requests: list[dict], ctx) -> dict:
        from reference_engine import SamplingParams
        from reference_engine.profiling import annotate

        engine, admission = self.engine, ctx.admission
        engine.reset_stats()
        self._preemptions = 0
        by_id = {r["request_id"]: r for r in requests}
        starts: dict[str, float] = {}
        chunks: dict[str, list[tuple[float, int]]] = {}
        while admission.pending() or engine.has_unfinished_requests():
            with annotate("worker.admit"):
                for r in admission.due(ctx.now()):
                    params = SamplingParams(
                        max_tokens=r["output_len"], ignore_eos=True, seed=self.seed + len(starts), **self.sampling
                    )
                    engine.add_request(r["request_id"], r["prompt_token_ids"], params)
                    starts[r["request_id"]] = ctx.now()
                    chunks[r["request_id"]] = []
            if not engine.has_unfinished_requests():
                next_arrival = admission.next_arrival_s()
                if next_arrival is not None:
                    wait_until(ctx, next_arrival)
                continue
            outputs = engine.step()
            now = ctx.now()
            with annotate("worker.emit"):
                self._emit_step(ctx, now)
                for out in outputs:
                    new = len(out.new_token_ids) if out.new_token_ids is not None else 0
                    if new:
                        chunks[out.request_id].append((now, new))
                    if out.finished:
                        admission.finished(out.request_id, now, out.token_ids)
                        ctx.emit(self._record(by_id[out.request_id], out, starts, chunks, now))
        return engine.stats_summary()

    def _emit_step(self, ctx, now: float) -> None:
        """The engine's last step in steps.jsonl's layout (preemptions cumulative, times in seconds)."""
        s = self.engine.stats.steps[-1] if self.engine.stats.steps else None
        if s is None:
            return
        self._preemptions += s.num_preemptions
        ctx.emit_step(
            {
                "t_s": now,
                "step": s.step,
                "num_running": s.num_running,
                "num_waiting": s.num_waiting,
                "num_batched_tokens": s.num_decode_tokens + s.num_prefill_tokens,
                "num_decode_seqs": s.num_decode_seqs,
                "num_prefill_tokens": s.num_prefill_tokens,
                "num_scheduled_seqs": s.num_scheduled_seqs,
                "num_prefill_seqs": s.num_scheduled_seqs - s.num_decode_seqs,
                "num_draft_tokens": s.num_draft_tokens,
                "num_accepted_tokens": s.num_accepted_tokens,
                "kv_blocks_used": s.num_kv_blocks_used,
                "kv_blocks_total": s.num_kv_blocks_total,
                "kv_slots_filled": s.num_token_slots_filled,
                "kv_slots_allocated": s.num_token_slots_allocated,
                "preemptions": self._preemptions,
                "prefix_hit_blocks": s.num_prefix_hit_blocks,
                "schedule_s": s.schedule_s,
                "forward_s": s.forward_s,
                "sample_s": s.sample_s,
                "detokenize_s": s.detokenize_s,
            }
        )

    @staticmethod
    def _record(request: dict, out, starts: dict, chunks: dict, now: float) -> dict:
        times = [t for t, _ in chunks[out.request_id]]
        counts = [n for _, n in chunks[out.request_id]]
        return record(
            request,
            output_tokens=len(out.token_ids),
            start_s=starts[out.request_id],
            first_token_s=times[0] if times else None,
            finish_s=times[-1] if times else now,
            token_times_s=times or None,
            chunk_tokens=counts if any(n != 1 for n in counts) else None,
            error=out.error,
            extra={"num_cached_tokens": getattr(out, "num_cached_tokens", None), "finish_reason": out.finish_reason},
        )
