"""HF transformers: the classic baseline (static batching with left padding), and its own continuous batching.

Static mode runs `generate` on batches of `--batch-size` prompts in workload order. Every request gets
exactly its workload output length: the batch runs to its longest request with EOS suppressed
(`min_new_tokens`), and a request's tokens are timed at the step that produced them, so its latency
is what a streaming user would see. Tokens computed past a request's length (and pad tokens) are the
waste that static batching costs; `engine_stats` reports them.
"""

from __future__ import annotations

import importlib.util
import time

from backends._common import record, torch_threads, versions
from benchctl.backend import Backend, BackendError, Capabilities
from benchctl.envinfo import cuda_present

QUANTIZATIONS = ("none", "bnb-4bit", "bnb-8bit")


def check_args(engine_args: dict[str, str]) -> None:
    """bitsandbytes' 4/8-bit kernels are CUDA kernels: refuse them here rather than fail inside the worker."""
    quant = engine_args.get("quantization", "none")
    if quant not in QUANTIZATIONS:
        raise BackendError(f"hf: quantization must be one of {', '.join(QUANTIZATIONS)}, got {quant!r}")
    if quant == "none":
        return
    if not cuda_present():
        raise BackendError(
            f"hf: --quantization {quant} runs bitsandbytes' CUDA kernels; this machine has no "
            f"NVIDIA GPU (GGUF quantizations run on CPU through --backend llamacpp)"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise BackendError(f"hf: --quantization {quant} needs bitsandbytes: pip install bitsandbytes")


def quantization_config(quant: str, compute_dtype):
    """transformers' BitsAndBytesConfig for bnb-4bit (NF4, double quantization) or bnb-8bit (LLM.int8)."""
    from transformers import BitsAndBytesConfig

    if quant == "bnb-4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def precision_of(model, dtype_name: str) -> str:
    """What the weights really are: the dtype, or the checkpoint's / bitsandbytes' quantization."""
    qc = getattr(model.config, "quantization_config", None)
    if qc is None:
        return dtype_name
    qc = qc if isinstance(qc, dict) else qc.to_dict()
    method = qc.get("quant_method", "quantized")
    if qc.get("load_in_4bit"):
        return f"bnb-4bit {qc.get('bnb_4bit_quant_type', '')} (compute {dtype_name})".replace("  ", " ")
    if qc.get("load_in_8bit"):
        return f"bnb-8bit (compute {dtype_name})"
    bits = qc.get("bits") or qc.get("w_bit")
    return f"{method}-{bits}bit (compute {dtype_name})" if bits else f"{method} (compute {dtype_name})"


BACKEND = Backend(
    name="hf",
    description="HF transformers generate(): static batching (left padding) or transformers' continuous batching",
    worker="backends.hf:HFWorker",
    requirements=("torch", "transformers"),
    extra="hf",
    capabilities=Capabilities(offline=True, per_token_times=True, batch_size=True, engine_stats=True),
    engine_args={
        "mode": "static (default) or continuous (transformers' paged continuous batching)",
        "dtype": "float32 (default on CPU), float16 or bfloat16",
        "temperature": "0 = greedy (default); > 0 samples",
        "top_p": "nucleus sampling threshold (default 1.0)",
        "top_k": "top-k sampling (default 0 = off)",
        "attn_implementation": "sdpa (default) or eager",
        "quantization": "none (default), bnb-4bit or bnb-8bit (bitsandbytes; CUDA only). Pre-quantized GPTQ/AWQ "
        "checkpoints load as they are (their quantization_config)",
        "max_requests_per_batch": "continuous mode: requests per step (default 32)",
        "num_blocks": "continuous mode: KV pages (default 512)",
        "page_size": "continuous mode: tokens per KV page (default 64)",
        "max_batch_tokens": "continuous mode: tokens per step (default 256)",
        "max_model_len": "context length limit used to validate the workload",
    },
    check_args=check_args,
)


def dummy_seed(hf_dir: str) -> int | None:
    """The seed of a dummy model folder (benchctl.dummy's marker), None for real weights."""
    from benchctl.dummy import read_marker

    marker = read_marker(hf_dir)
    return None if marker is None else int(marker.get("seed", 0))


class _StepClock:
    """A StoppingCriteria that never stops: it timestamps every decoding step of `generate`."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.times: list[float] = []

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self.times.append(self.ctx.now())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class HFWorker:
    def load(self, model: dict, options: dict) -> dict:
        import torch
        from transformers import AutoModelForCausalLM

        args = dict(options.get("engine_args") or {})
        self.mode = args.pop("mode", "static")
        if self.mode not in ("static", "continuous"):
            raise ValueError(f"hf: mode must be static or continuous, got {self.mode!r}")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype_name = args.pop("dtype", "float32" if self.device == "cpu" else "bfloat16")
        torch.set_num_threads(torch_threads())
        torch.manual_seed(int(options.get("seed") or 0))
        self.temperature = float(args.pop("temperature", 0.0))
        self.top_p = float(args.pop("top_p", 1.0))
        self.top_k = int(args.pop("top_k", 0))
        args.pop("max_model_len", None)
        attn = args.pop("attn_implementation", "sdpa")
        quant = args.pop("quantization", "none")
        self.cb_options = {k: int(v) for k, v in args.items()}
        self.batch_size = int(options.get("batch_size") or 16)
        seed = dummy_seed(model["hf_dir"])
        if seed is not None:  # a dummy model: the architecture from config.json, seeded random weights
            from transformers import AutoConfig

            torch.manual_seed(seed)
            with torch.device(self.device):  # made where they run: a 7B model is not copied over from the host
                self.model = AutoModelForCausalLM.from_config(
                    AutoConfig.from_pretrained(model["hf_dir"]),
                    dtype=getattr(torch, dtype_name),
                    attn_implementation=attn,
                ).eval()
        elif quant == "none":
            self.model = (
                AutoModelForCausalLM.from_pretrained(
                    model["hf_dir"], dtype=getattr(torch, dtype_name), attn_implementation=attn
                )
                .to(self.device)
                .eval()
            )
        else:  # bitsandbytes places the quantized weights itself
            self.model = AutoModelForCausalLM.from_pretrained(
                model["hf_dir"],
                dtype=getattr(torch, dtype_name),
                attn_implementation=attn,
                device_map={"": 0},
                quantization_config=quantization_config(quant, getattr(torch, dtype_name)),
            ).eval()
        self.pad_id = self.model.config.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.model.generation_config.pad_token_id or 0
        return {
            "engine": "hf-transformers",
            "versions": versions("transformers", "torch", "accelerate"),
            "device": self.device,
            "dtype": dtype_name,
            "precision": precision_of(self.model, dtype_name),
            "threads": torch.get_num_threads(),
            "mode": self.mode,
            "batch_size": self.batch_size if self.mode == "static" else None,
            "attn_implementation": attn,
            "sampling": self._sampling_desc(),
            **({"weights": "random (dummy)", "weights_seed": seed} if seed is not None else {}),
        }

    def _sampling_desc(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}

    def _generation_config(self, max_new_tokens: int):
        from transformers import GenerationConfig

        sample = self.temperature > 0
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=self.top_p if sample else None,
            top_k=self.top_k if sample else None,
            pad_token_id=self.pad_id,
            eos_token_id=self.model.generation_config.eos_token_id,
        )

    def run(self, requests: list[dict], ctx) -> dict:
        if self.mode == "continuous":
            return self._run_continuous(requests, ctx)
        return self._run_static(requests, ctx)

    def _run_static(self, requests: list[dict], ctx) -> dict:
        import torch

        computed = useful = 0
        for i in range(0, len(requests), self.batch_size):
            batch = requests[i : i + self.batch_size]
            start = ctx.now()
            longest_prompt = max(len(r["prompt_token_ids"]) for r in batch)
            max_new = max(r["output_len"] for r in batch)
            # (batch, longest_prompt) left-padded so every sequence ends at the same position
            ids = torch.full((len(batch), longest_prompt), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, r in enumerate(batch):
                n = len(r["prompt_token_ids"])
                ids[row, longest_prompt - n :] = torch.tensor(r["prompt_token_ids"])
                mask[row, longest_prompt - n :] = 1
            clock = _StepClock(ctx)
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    generation_config=self._generation_config(max_new),
                    stopping_criteria=[clock],
                )
            generated = out[:, longest_prompt:].shape[1]
            if generated != max_new or len(clock.times) != max_new:
                raise RuntimeError(
                    f"hf generate produced {generated} tokens ({len(clock.times)} steps), expected {max_new}"
                )
            computed += len(batch) * (longest_prompt + max_new)
            for r in batch:
                n_out = r["output_len"]
                useful += len(r["prompt_token_ids"]) + n_out
                times = clock.times[:n_out]
                ctx.emit(
                    record(
                        r,
                        output_tokens=n_out,
                        start_s=start,
                        first_token_s=times[0],
                        finish_s=times[-1],
                        token_times_s=times,
                        extra={"batch_index": i // self.batch_size},
                    )
                )
        return {
            "mode": "static",
            "batch_size": self.batch_size,
            "num_batches": -(-len(requests) // self.batch_size),
            "token_slots_computed": computed,
            "token_slots_useful": useful,
            "padding_waste_pct": 100.0 * (1 - useful / computed) if computed else 0.0,
        }

    def _run_continuous(self, requests: list[dict], ctx) -> dict:
        from transformers import ContinuousBatchingConfig

        defaults = {"page_size": 64, "num_blocks": 512, "max_batch_tokens": 256, "max_requests_per_batch": 32}
        cb = {**defaults, **self.cb_options}
        config = ContinuousBatchingConfig(use_cuda_graph=False, **cb)
        manager = self.model.init_continuous_batching(
            generation_config=self._generation_config(1), continuous_batching_config=config
        )
        # transformers stamps tokens with time.perf_counter; map them onto the run clock.
        offset = time.perf_counter() - ctx.now()
        by_id = {r["request_id"]: r for r in requests}
        starts = {}
        manager.start()
        try:
            for r in requests:  # all at t=0: this backend does not take arrivals
                starts[r["request_id"]] = ctx.now()
                manager.add_request(
                    r["prompt_token_ids"],
                    request_id=r["request_id"],
                    max_new_tokens=r["output_len"],
                    eos_token_id=-1,
                    record_timestamps=True,
                )
            remaining = set(by_id)
            while remaining:
                result = manager.get_result(timeout=1.0)
                if result is None:
                    if manager.background_thread_status.fatal_error is not None:
                        raise RuntimeError(
                            f"transformers continuous batching failed: {manager.background_thread_status.fatal_error}"
                        )
                    continue
                if not result.is_finished() or result.request_id not in remaining:
                    continue
                remaining.discard(result.request_id)
                r = by_id[result.request_id]
                times = [t - offset for t in (result.timestamps or [])]
                n_out = len(result.generated_tokens)
                ctx.emit(
                    record(
                        r,
                        output_tokens=n_out,
                        start_s=starts[r["request_id"]],
                        first_token_s=times[0] if times else None,
                        finish_s=times[-1] if times else ctx.now(),
                        token_times_s=times or None,
                        error=result.error,
                    )
                )
        finally:
            manager.stop(block=True)
        return {"mode": "continuous", **cb}
