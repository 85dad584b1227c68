"""Random paged-KV inputs for checking kernels against reference.py (used by the tests, CPU or GPU)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Per-dtype tolerances (atol = rtol) of a kernel output against reference.py, both computing in fp32: fp32 differs
# only by summation order; fp16 and bf16 by about one rounding of the output (10 and 7 mantissa bits).
TOLERANCES: dict[torch.dtype, float] = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@dataclass(slots=True)
class PagedDecodeCase:
    query: torch.Tensor  # (S, H, D)
    k_cache: torch.Tensor  # (N, B, Hkv, D)
    v_cache: torch.Tensor  # (N, B, Hkv, D)
    block_tables: torch.Tensor  # (S, M) int32, padded with -1
    context_lens: torch.Tensor  # (S,) int32
    scale: float


def random_paged_decode_case(
    context_lens: list[int],
    *,
    num_kv_heads: int,
    queries_per_kv: int,
    head_dim: int,
    block_size: int,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    spare_blocks: int = 3,
) -> PagedDecodeCase:
    """A decode batch whose sequences own randomly shuffled physical blocks.

    Unowned blocks and the unused tail of each last block are filled with NaN, so a kernel that reads past a
    sequence's context, or through a -1 block-table entry, produces NaN instead of passing by luck.
    """
    gen = torch.Generator().manual_seed(seed)
    blocks_per_seq = [(n + block_size - 1) // block_size for n in context_lens]
    num_blocks = sum(blocks_per_seq) + spare_blocks
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    k_cache = torch.full(shape, float("nan"))  # (N, B, Hkv, D)
    v_cache = torch.full(shape, float("nan"))  # (N, B, Hkv, D)
    physical = torch.randperm(num_blocks, generator=gen)  # (N,)
    block_tables = torch.full((len(context_lens), max(blocks_per_seq)), -1, dtype=torch.int32)  # (S, M)
    used = 0
    for seq, (n_tokens, n_blocks) in enumerate(zip(context_lens, blocks_per_seq)):
        block_tables[seq, :n_blocks] = physical[used : used + n_blocks].to(torch.int32)
        for i in range(n_blocks):
            rows = min(block_size, n_tokens - i * block_size)
            block = int(physical[used + i])
            k_cache[block, :rows] = torch.randn(rows, num_kv_heads, head_dim, generator=gen)
            v_cache[block, :rows] = torch.randn(rows, num_kv_heads, head_dim, generator=gen)
        used += n_blocks
    query = torch.randn(len(context_lens), num_kv_heads * queries_per_kv, head_dim, generator=gen)  # (S, H, D)
    return PagedDecodeCase(
        query=query.to(device=device, dtype=dtype),
        k_cache=k_cache.to(device=device, dtype=dtype),
        v_cache=v_cache.to(device=device, dtype=dtype),
        block_tables=block_tables.to(device),
        context_lens=torch.tensor(context_lens, dtype=torch.int32, device=device),
        scale=head_dim**-0.5,
    )
