"""llama.cpp through llama-cpp-python's low-level API: batched greedy decoding with continuous refill, offline.

The worker is the scheduler llama.cpp's own server runs: `--batch-size N` slots (one llama.cpp sequence id
each, `n_seq_max = N`); every step builds ONE `llama_batch` holding the next token of every decoding sequence
plus prompt chunks of newly admitted ones (up to `n_batch` tokens), calls `llama_decode` once, and takes the
argmax of `llama_get_logits_ith` for each sequence that produced logits. A finished sequence's KV is cleared
(`llama_memory_seq_rm`) and its slot refilled from the queue. `--batch-size 1` is the sequential path.
Every output token is timestamped after the step that produced it. The GGUF is read directly (no conversion).

Serving mode launches llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`, the package's `server`
extra: fastapi, uvicorn, sse-starlette) on the GGUF, through backends/llamacpp_server.py (which lets it accept the
load client's X-Request-Id headers). That server has no parallel slots: one `Llama` object behind an
asyncio lock decodes one request at a time and the others wait (its settings have no n_parallel; llama.cpp's C++
`llama-server --parallel N` is not part of the package). It has no /metrics and no /health (health: /v1/models).
`--interrupt_requests false`: by default it cuts a streaming request short when another one arrives.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

from backends._common import convert, managed_env, record, versions
from benchctl.backend import Backend, BackendError, Capabilities, ServerSpec

OFFLINE_ONLY_ARGS = ("kv_unified", "extra_bufts")  # llama-cpp-python's server has no setting for these


def _server_args(args: dict[str, str]) -> dict[str, str]:
    """The engine args as llama_cpp.server settings: threads -> n_threads(_batch) (default: the cores this process
    may use; the server's own default is half the machine's), flash_attn on/off -> true/false (auto: its default)."""
    offline = sorted(set(args) & set(OFFLINE_ONLY_ARGS))
    if offline:
        raise BackendError(
            f"--engine-arg {', '.join(offline)}: llama-cpp-python's server has no such setting (offline mode only)"
        )
    out = {k: v for k, v in args.items() if k not in ("threads", "flash_attn")}
    threads = args.get("threads", str(len(os.sched_getaffinity(0))))
    out["n_threads"] = out["n_threads_batch"] = threads
    flash = args.get("flash_attn", "auto")
    if flash not in ("auto", "on", "off"):
        raise BackendError(f"llamacpp: flash_attn must be auto, on or off, got {flash!r}")
    if flash != "auto":
        out["flash_attn"] = "true" if flash == "on" else "false"
    return out


BACKEND = Backend(
    name="llamacpp",
    description="llama.cpp (llama-cpp-python low-level API): N-slot batched decoding with continuous refill, GGUF",
    worker="backends.llamacpp:LlamaCppWorker",
    requirements=("llama_cpp", "numpy"),
    extra="llamacpp",
    managed_env="llamacpp",
    capabilities=Capabilities(offline=True, serving=True, per_token_times=True, batch_size=True, engine_stats=True),
    engine_args={
        "kv_unified": "false (default: each sequence its own KV stream; faster on W) or true (one shared buffer)",
        "max_model_len": "context per sequence in tokens (default min(2048, model's)); KV = slots x this",
        "n_batch": "max tokens per llama_decode call (default 512, llama-cpp-python's default)",
        "n_ubatch": "physical micro-batch (default 512)",
        "threads": "CPU threads (default: the cores this process may use)",
        "flash_attn": "auto (default, llama.cpp's choice), on or off (llama-cpp-python's Llama uses off)",
        "n_gpu_layers": "layers offloaded to a GPU build (default: all when the build supports it, else 0)",
        "extra_bufts": "weight repacking buffers: auto (default: off on AMX CPUs, where it crashes), true, false",
    },
    # serving mode: llama-cpp-python's server in the managed environment, one request decoding at a time
    server=ServerSpec(
        argv=(
            "{python}",
            "-P",
            "-m",
            "backends.llamacpp_server",
            "--model",
            "{gguf_path}",
            "--model_alias",
            "{model_name}",
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--n_ctx",
            "{max_model_len}",
            "--interrupt_requests",
            "false",
            "--logits_all",
            "false",
        ),
        engine_arg=("--{key}", "{value}"),
        health_route="/v1/models",
        metrics_route=None,
        startup_timeout_s=300.0,
        default_args=_server_args,
    ),
)
DEFAULT_SLOTS = 16


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


@dataclass(slots=True)
class _Sequence:
    """One request in a slot. `n_past` = tokens already in its KV; `fed` = prompt tokens submitted."""

    request: dict
    seq_id: int
    slot_start_s: float
    n_past: int = 0
    fed: int = 0
    tokens: list[int] = field(default_factory=list)  # sampled output ids
    times: list[float] = field(default_factory=list)  # one per output token, run clock (s)

    @property
    def prefilled(self) -> bool:
        return self.fed == len(self.request["prompt_token_ids"])


class LlamaCppWorker:
    def load(self, model: dict, options: dict) -> dict:
        import llama_cpp

        if not model.get("gguf_path"):
            raise ValueError("llamacpp reads GGUF files: this model has none (pass --model FILE.gguf or an alias)")
        args = {k: convert(v) for k, v in (options.get("engine_args") or {}).items()}
        self.lc = llama_cpp
        self.slots = int(options.get("batch_size") or DEFAULT_SLOTS)
        if self.slots > llama_cpp.llama_max_parallel_sequences():
            raise ValueError(
                f"llamacpp: --batch-size {self.slots} exceeds llama.cpp's limit of "
                f"{llama_cpp.llama_max_parallel_sequences()} sequences"
            )
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        gpu = llama_cpp.llama_supports_gpu_offload()
        mparams.n_gpu_layers = int(args.get("n_gpu_layers", 999 if gpu else 0))
        extra_bufts = args.get("extra_bufts", "auto")
        if extra_bufts == "auto":
            # llama.cpp's AMX weight repacking (an "extra buffer type") crashes llama_decode with SIGSEGV on the
            # AMX machine benchctl was developed on (llama-cpp-python 0.3.36); elsewhere keep llama.cpp's default.
            extra_bufts = "amx_int8" not in _cpu_flags()
        mparams.use_extra_bufts = bool(extra_bufts)
        self.model = llama_cpp.llama_model_load_from_file(model["gguf_path"].encode(), mparams)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {model['gguf_path']}")
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        n_ctx_train = llama_cpp.llama_model_n_ctx_train(self.model)
        self.ctx_per_seq = int(args.get("max_model_len", min(2048, n_ctx_train)))
        self.n_batch = int(args.get("n_batch", 512))
        threads = int(args.get("threads", len(os.sched_getaffinity(0))))
        flash = {
            "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
            "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }
        flash_attn = str(args.get("flash_attn", "auto"))
        if flash_attn not in flash:
            raise ValueError(f"llamacpp: flash_attn must be auto, on or off, got {flash_attn!r}")
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = self.ctx_per_seq * self.slots
        cparams.n_batch = self.n_batch
        cparams.n_ubatch = min(self.n_batch, int(args.get("n_ubatch", 512)))
        cparams.n_seq_max = self.slots
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.kv_unified = bool(args.get("kv_unified", False))
        cparams.flash_attn_type = flash[flash_attn]
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context (KV cache too large for memory?)")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        # (n_batch,) tokens, each with one sequence id
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        return {
            "engine": "llama.cpp",
            "versions": versions("llama-cpp-python", "numpy"),
            "managed_env": managed_env(),
            "device": "gpu" if gpu and mparams.n_gpu_layers else "cpu",
            "weights": os.path.basename(model["gguf_path"]),
            "precision": self._precision(),
            "slots": self.slots,
            "kv_unified": cparams.kv_unified,
            "n_ctx": llama_cpp.llama_n_ctx(self.ctx),
            "ctx_per_seq": self.ctx_per_seq,
            "n_batch": self.n_batch,
            "n_ubatch": cparams.n_ubatch,
            "threads": threads,
            "flash_attn": flash_attn,
            "extra_bufts": mparams.use_extra_bufts,
            "sampling": {"temperature": 0.0},
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        }

    def _precision(self) -> str:
        """The GGUF's weight type as llama.cpp describes the model, e.g. "Q4_1" from "llama ?B Q4_1"."""
        import ctypes

        buf = ctypes.create_string_buffer(256)
        self.lc.llama_model_desc(self.model, buf, ctypes.sizeof(buf))
        desc = buf.value.decode(errors="replace").split()
        return " ".join(desc[2:]) if len(desc) > 2 else " ".join(desc) or "unknown"

    def run(self, requests: list[dict], ctx) -> dict:
        import numpy as np

        lc = self.lc
        for r in requests:
            need = len(r["prompt_token_ids"]) + r["output_len"]
            if need > self.ctx_per_seq:
                raise ValueError(
                    f"llamacpp: request {r['request_id']} needs {need} tokens of context; the "
                    f"per-sequence context is {self.ctx_per_seq} (--engine-arg max_model_len=N)"
                )
        start_s = ctx.now()  # every request is submitted at once; slots queue them as an engine would
        waiting = deque(requests)
        free = deque(range(self.slots))
        active: list[_Sequence] = []
        steps = peak_active = 0
        self.tokens_fed = {"decode": 0, "prompt": 0}
        decode_s = 0.0
        while waiting or active:
            while free and waiting:
                active.append(_Sequence(waiting.popleft(), free.popleft(), slot_start_s=ctx.now()))
            peak_active = max(peak_active, len(active))
            outputs = self._fill_batch(active)  # [(batch index, sequence)] that produce logits
            n_tokens = self.batch.n_tokens
            t = ctx.now()
            status = lc.llama_decode(self.ctx, self.batch)
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status} at step {steps} ({n_tokens} tokens)")
            now = ctx.now()
            decode_s += now - t
            steps += 1
            for index, seq in outputs:
                logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))
                seq.tokens.append(int(logits.argmax()))
                seq.times.append(now)
            for seq in [s for s in active if len(s.tokens) == s.request["output_len"]]:
                active.remove(seq)
                lc.llama_memory_seq_rm(self.mem, seq.seq_id, -1, -1)
                free.append(seq.seq_id)
                ctx.emit(self._record(seq, start_s))
        fed = self.tokens_fed["decode"] + self.tokens_fed["prompt"]
        return {
            "slots": self.slots,
            "steps": steps,
            "llama_decode_s": decode_s,
            "decode_tokens_fed": self.tokens_fed["decode"],
            "prompt_tokens_fed": self.tokens_fed["prompt"],
            "tokens_per_step_mean": fed / steps if steps else 0.0,
            "peak_active_sequences": peak_active,
        }

    def _fill_batch(self, active: list[_Sequence]) -> list[tuple[int, _Sequence]]:
        """Decoding sequences' next tokens first, then prompt chunks within the n_batch budget."""
        batch, outputs = self.batch, []
        n = 0

        def add(token: int, seq: _Sequence, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = seq.n_past
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.seq_id
            batch.logits[n] = logits
            if logits:
                outputs.append((n, seq))
            seq.n_past += 1
            n += 1

        for seq in active:
            if seq.prefilled and seq.tokens:
                add(seq.tokens[-1], seq, True)
                self.tokens_fed["decode"] += 1
        for seq in active:
            prompt = seq.request["prompt_token_ids"]
            while not seq.prefilled and n < self.n_batch:
                seq.fed += 1
                add(prompt[seq.fed - 1], seq, seq.prefilled)
                self.tokens_fed["prompt"] += 1
        batch.n_tokens = n
        return outputs

    @staticmethod
    def _record(seq: _Sequence, start_s: float) -> dict:
        return record(
            seq.request,
            output_tokens=len(seq.tokens),
            start_s=start_s,
            first_token_s=seq.times[0],
            finish_s=seq.times[-1],
            token_times_s=list(seq.times),
            extra={"slot": seq.seq_id, "slot_start_s": seq.slot_start_s, "output_token_ids": list(seq.tokens)},
        )
