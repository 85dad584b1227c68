"""exllamav2 (0.3.2): its dynamic generator (paged KV cache, continuous batching), offline. CUDA only.

Every request becomes one `ExLlamaV2DynamicJob` with exact length (`min_new_tokens = max_new_tokens`, no stop
conditions) and greedy settings; all jobs are enqueued at t=0 and `generator.iterate()` runs until none remain.
Each iteration's streamed tokens are timestamped when `iterate()` returns (a chunk may hold several tokens).
The request -> job mapping and the result parsing are plain functions, unit-tested without a GPU.
"""

from __future__ import annotations

from backends._common import convert, managed_env, record, versions
from benchctl.backend import Backend, Capabilities

BACKEND = Backend(
    name="exllamav2",
    description="exllamav2 dynamic generator: paged KV cache, continuous batching (needs CUDA)",
    worker="backends.exllamav2:ExLlamaV2Worker",
    requirements=("exllamav2",),
    extra="exllama",
    managed_env="exllamav2",
    capabilities=Capabilities(offline=True, per_token_times=True, batch_size=True, needs_cuda=True, engine_stats=True),
    engine_args={
        "max_seq_len": "longest sequence (prompt + output) the model accepts (default: the model's)",
        "cache_tokens": "total KV cache size in tokens, shared by all jobs (default max_seq_len * batch size)",
        "cache": "fp16 (default), q8, q6 or q4 KV cache",
        "max_chunk_size": "prefill tokens per iteration (default 2048)",
        "max_q_size": "tokens evaluated per sequence per iteration (default 8)",
        "paged": "true (default; flash-attn paged cache) or false",
    },
)
_CACHES = {"fp16": "ExLlamaV2Cache", "q8": "ExLlamaV2Cache_Q8", "q6": "ExLlamaV2Cache_Q6", "q4": "ExLlamaV2Cache_Q4"}


def job_kwargs(request: dict) -> dict:
    """ExLlamaV2DynamicJob arguments (except input_ids and gen_settings) for one workload request."""
    n = request["output_len"]
    # No stop conditions and min == max: exactly the workload's output length (ignore EOS).
    return {
        "max_new_tokens": n,
        "min_new_tokens": n,
        "stop_conditions": None,
        "identifier": request["request_id"],
        "decode_special_tokens": True,
    }


def _token_count(token_ids) -> int:
    """Tokens in a result's `token_ids` (a torch tensor of shape (1, n), or nested lists in tests)."""
    if token_ids is None:
        return 0
    shape = getattr(token_ids, "shape", None)
    return int(shape[-1]) if shape is not None else len(token_ids[0])


class ResultCollector:
    """Turns the generator's result dicts into benchctl records, one per finished job."""

    def __init__(self, requests: list[dict]):
        self.by_id = {r["request_id"]: r for r in requests}
        self.start_s: dict[str, float] = {}
        self.chunks: dict[str, list[tuple[float, int]]] = {rid: [] for rid in self.by_id}
        self.finished = 0

    def started(self, request_id: str, now_s: float) -> None:
        self.start_s[request_id] = now_s

    def feed(self, results: list[dict], now_s: float) -> list[dict]:
        """Records for the jobs that finished in this iteration; every result's tokens are stamped now_s."""
        done = []
        for result in results:
            if result.get("stage") != "streaming":
                continue  # "started" / "prefill" progress carries no tokens
            rid = result.get("identifier", getattr(result.get("job"), "identifier", None))
            if rid not in self.by_id:
                raise RuntimeError(f"exllamav2 returned a result for an unknown job {rid!r}")
            n = _token_count(result.get("token_ids"))
            if n:
                self.chunks[rid].append((now_s, n))
            if result.get("eos"):
                done.append(self._record(rid, result, now_s))
        self.finished += len(done)
        return done

    def _record(self, rid: str, result: dict, now_s: float) -> dict:
        request, chunks = self.by_id[rid], self.chunks[rid]
        times = [t for t, _ in chunks]
        counts = [n for _, n in chunks]
        produced = sum(counts)
        reason = result.get("eos_reason")
        error = None
        if produced != request["output_len"]:
            error = f"exllamav2 produced {produced} tokens, expected {request['output_len']} (eos_reason={reason})"
        return record(
            request,
            output_tokens=produced,
            start_s=self.start_s.get(rid, 0.0),
            first_token_s=times[0] if times else None,
            finish_s=times[-1] if times else now_s,
            token_times_s=times or None,
            chunk_tokens=counts if any(n != 1 for n in counts) else None,
            error=error,
            extra={
                "eos_reason": reason,
                "engine_new_tokens": result.get("new_tokens"),
                "cached_tokens": result.get("cached_tokens"),
                # the engine's own durations (time.time based), kept beside ours
                "engine_time_prefill_s": result.get("time_prefill"),
                "engine_time_generate_s": result.get("time_generate"),
            },
        )


class ExLlamaV2Worker:
    def load(self, model: dict, options: dict) -> dict:
        try:  # compiles CUDA extensions at import; without CUDA it raises OSError (CUDA_HOME not set)
            import exllamav2
            import torch
            from exllamav2.generator import ExLlamaV2DynamicGenerator, ExLlamaV2DynamicJob, ExLlamaV2Sampler
        except Exception as e:  # noqa: BLE001 - any import failure means "cannot run here"
            raise RuntimeError(f"exllamav2 cannot start on this machine: {type(e).__name__}: {e}") from None
        args = {k: convert(v) for k, v in (options.get("engine_args") or {}).items()}
        batch_size = int(options.get("batch_size") or 16)
        config = exllamav2.ExLlamaV2Config(model["hf_dir"])
        if "max_seq_len" in args:
            config.max_seq_len = int(args["max_seq_len"])
        cache_kind = str(args.get("cache", "fp16"))
        if cache_kind not in _CACHES:
            raise ValueError(f"exllamav2: cache must be one of {', '.join(_CACHES)}, got {cache_kind!r}")
        self.model = exllamav2.ExLlamaV2(config)
        cache_tokens = int(args.get("cache_tokens", config.max_seq_len * batch_size))
        cache = getattr(exllamav2, _CACHES[cache_kind])(self.model, max_seq_len=cache_tokens, lazy=True)
        self.model.load_autosplit(cache)
        tokenizer = exllamav2.ExLlamaV2Tokenizer(config)
        self.generator = ExLlamaV2DynamicGenerator(
            model=self.model,
            cache=cache,
            tokenizer=tokenizer,
            max_batch_size=batch_size,
            max_chunk_size=int(args.get("max_chunk_size", 2048)),
            max_q_size=int(args.get("max_q_size", 8)),
            paged=bool(args.get("paged", True)),
        )
        self.job_cls, self.settings = ExLlamaV2DynamicJob, ExLlamaV2Sampler.Settings.greedy()
        self.torch = torch
        return {
            "engine": "exllamav2",
            "versions": versions("exllamav2", "torch", "flash-attn"),
            "managed_env": managed_env(),
            "device": torch.cuda.get_device_name(0),
            "dtype": "float16",
            "batch_size": batch_size,
            "cache": cache_kind,
            "cache_tokens": cache_tokens,
            "max_seq_len": config.max_seq_len,
            "sampling": {"temperature": 0.0},
        }

    def run(self, requests: list[dict], ctx) -> dict:
        collector = ResultCollector(requests)
        for r in requests:  # all at t=0: this backend does not take arrivals
            ids = self.torch.tensor([r["prompt_token_ids"]], dtype=self.torch.long)
            self.generator.enqueue(self.job_cls(input_ids=ids, gen_settings=self.settings, **job_kwargs(r)))
            collector.started(r["request_id"], ctx.now())
        iterations = 0
        while self.generator.num_remaining_jobs():
            results = self.generator.iterate()
            iterations += 1
            for rec in collector.feed(results, ctx.now()):
                ctx.emit(rec)
        if collector.finished != len(requests):
            raise RuntimeError(f"exllamav2 finished {collector.finished} of {len(requests)} jobs")
        return {"iterations": iterations}
