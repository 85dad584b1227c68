"""Turns a scheduled batch into flat tensors, owns the KV cache, and runs the model once per step."""

from __future__ import annotations

import torch

from reference_engine.attention import AttentionMetadata, AttentionOps, PrefillSpan
from reference_engine.config import EngineConfig, ModelConfig
from reference_engine.model import LlamaForCausalLM
from reference_engine.scheduler import SchedulerOutput
from reference_engine.sequence import Sequence


def kv_bytes_per_block(cfg: ModelConfig, block_size: int, dtype: torch.dtype) -> int:
    """K and V of every layer for one block."""
    return 2 * cfg.num_layers * block_size * cfg.num_kv_heads * cfg.head_dim * torch.finfo(dtype).bits // 8


def resolve_gemm(requested: str, device: torch.device, dtype: torch.dtype) -> str:
    """The projection GEMM: "auto" -> "packed" where the CPU kernels run (a CPU float32 model), else "onednn" where
    oneDNN's prepacked linear does, else "torch"; a choice that cannot run here is a ValueError."""
    from reference_engine.model.llama import onednn_linear_available

    cpu_fp32 = device.type == "cpu" and dtype == torch.float32
    if requested == "auto":
        if cpu_fp32 and _cpu_kernels_reason() is None:
            return "packed"
        return "onednn" if onednn_linear_available(device, dtype) else "torch"
    if requested == "onednn" and not onednn_linear_available(device, dtype):
        raise ValueError(
            f"gemm='onednn' needs a CPU float32 model and a torch built with mkldnn "
            f"(device={device.type}, dtype={str(dtype).removeprefix('torch.')})"
        )
    if requested == "packed":
        if not cpu_fp32:
            raise ValueError(
                f"gemm='packed' needs a CPU float32 model "
                f"(device={device.type}, dtype={str(dtype).removeprefix('torch.')})"
            )
        if (reason := _cpu_kernels_reason()) is not None:
            raise ValueError(f"gemm='packed' needs the CPU kernels: {reason}")
    return requested


def _cpu_kernels_reason() -> str | None:
    """None when the CPU kernels load here (built on first call), else why not."""
    from reference_engine.kernels import load_ops

    try:
        load_ops("cpu")
    except RuntimeError as e:
        return str(e)
    return None


def free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class ModelRunner:
    def __init__(
        self,
        config: EngineConfig,
        model_config: ModelConfig,
        device: torch.device,
        dtype: torch.dtype,
        ops: AttentionOps,
    ):
        self.config, self.model_config = config, model_config
        self.device, self.dtype, self.ops = device, dtype, ops
        self.block_size = config.block_size
        self.gemm = resolve_gemm(config.gemm, device, dtype)
        self.model = LlamaForCausalLM(
            model_config, config.model_dir, device, dtype, config.max_model_len, self.gemm, config.gguf_file
        )
        budget = config.kv_cache_bytes
        if budget is None:
            fraction = config.kv_cache_memory_fraction or (0.8 if device.type == "cuda" else 0.05)
            budget = int(free_memory_bytes(device) * fraction)
        self.num_blocks = budget // kv_bytes_per_block(model_config, self.block_size, dtype)
        if self.num_blocks < 1:
            raise ValueError(
                f"kv_cache_bytes={budget} holds no block of {self.block_size} tokens "
                f"({kv_bytes_per_block(model_config, self.block_size, dtype)} bytes each)"
            )
        # (2, layers, num_blocks, block_size, num_kv_heads, head_dim). Zeroed, not empty: masked-out slots are
        # still multiplied by a zero weight, and 0 * NaN from stale memory would poison the output.
        self.kv_cache = torch.zeros(
            2,
            model_config.num_layers,
            self.num_blocks,
            self.block_size,
            model_config.num_kv_heads,
            model_config.head_dim,
            device=device,
            dtype=dtype,
        )
        self.kv_caches = [(self.kv_cache[0, i], self.kv_cache[1, i]) for i in range(model_config.num_layers)]
        self.kv_cache_bytes = self.kv_cache.numel() * self.kv_cache.element_size()

    def copy_blocks(self, blocks_to_copy: list[tuple[int, int]]) -> None:
        """Copy-on-write: block src -> dst in every layer, K and V."""
        src = torch.tensor([s for s, _ in blocks_to_copy], device=self.device)
        dst = torch.tensor([d for _, d in blocks_to_copy], device=self.device)
        self.kv_cache[:, :, dst] = self.kv_cache[:, :, src]

    def execute(self, out: SchedulerOutput) -> tuple[torch.Tensor, list[Sequence]]:
        """Run the scheduled batch. Returns logits (num_sampled, vocab) fp32 and the sequence of each row (a
        sequence with a draft of d tokens has d + 1 consecutive rows)."""
        if out.blocks_to_copy:
            self.copy_blocks(out.blocks_to_copy)
        input_ids, positions, meta, logits_indices, sampled = self.prepare(out)
        logits = self.model.forward(input_ids, positions, logits_indices, self.kv_caches, meta, self.ops)
        return logits, sampled

    def prepare(self, out: SchedulerOutput):
        """Flat inputs for the batch: decode tokens first (they share one batched attention call), then each
        prefill chunk. Returns input_ids, positions (num_tokens,), metadata, logits_indices, sampled sequences."""
        bs = self.block_size
        decodes = [s for s in out.scheduled if s.num_new_tokens == 1]
        prefills = [s for s in out.scheduled if s.num_new_tokens > 1]
        query_rows = self.ops.prefill_with_decode_kernel  # prefill tokens become decode-kernel rows too
        # One token each: a plain Python gather is cheaper than building tensors per sequence.
        input_ids = [s.seq.token_ids[s.start] for s in decodes]
        positions = [s.start for s in decodes]
        slots = [s.seq.block_table[s.start // bs] * bs + s.start % bs for s in decodes]
        max_blocks = max((len(s.seq.block_table) for s in (out.scheduled if query_rows else decodes)), default=0)
        tables = [s.seq.block_table + [-1] * (max_blocks - len(s.seq.block_table)) for s in decodes]
        context_lens = [s.start + 1 for s in decodes]
        # A one-token chunk that is not the prompt's last token also lands here, and needs no logits.
        logits_indices = [i for i, s in enumerate(decodes) if s.needs_sample]
        sampled = [s.seq for s in decodes if s.needs_sample]
        spans = []
        row = len(decodes)
        for s in prefills:
            end = s.start + s.num_new_tokens
            input_ids += s.seq.token_ids[s.start : end]
            positions += range(s.start, end)
            table = s.seq.block_table
            slots += [table[p // bs] * bs + p % bs for p in range(s.start, end)]
            if query_rows:  # token i of the chunk sees positions 0..start+i, all in the cache by then
                tables += [table + [-1] * (max_blocks - len(table))] * s.num_new_tokens
                context_lens += range(s.start + 1, end + 1)
            else:
                spans.append(
                    PrefillSpan(
                        row,
                        s.num_new_tokens,
                        s.start,
                        torch.tensor(table, dtype=torch.long, device=self.device) if s.start > 0 else None,
                    )
                )
            row += s.num_new_tokens
            if s.needs_sample:  # the last token's logits, and with a draft those of every draft token too
                logits_indices += range(row - 1 - s.num_draft, row)
                sampled += [s.seq] * (1 + s.num_draft)
        dev = self.device
        meta = AttentionMetadata(
            slot_mapping=torch.tensor(slots, dtype=torch.long, device=dev),
            num_decode_tokens=len(tables),
            block_tables=torch.tensor(tables, dtype=torch.int32, device=dev).view(len(tables), max_blocks),
            context_lens=torch.tensor(context_lens, dtype=torch.int32, device=dev),
            prefills=spans,
        )
        return (
            torch.tensor(input_ids, dtype=torch.long, device=dev),
            torch.tensor(positions, dtype=torch.long, device=dev),
            meta,
            torch.tensor(logits_indices, dtype=torch.long, device=dev),
            sampled,
        )
