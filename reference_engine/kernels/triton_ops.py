"""Triton kernels: paged decode attention (v1 single pass, v2 partitioned + reduce), cache write, fused ops.

Runs on any device with an active Triton driver, and on CPU tensors under TRITON_INTERPRET=1 (set before triton
is imported; for verification only). Every load is cast to fp32 at once: the interpreter's bf16 arithmetic is wrong.
Shapes as in reference.py: S seqs, T tokens, H heads, Hkv KV heads, D head_dim, N blocks, B block size, M blocks
per sequence.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton import knobs

from . import launch

INTERPRETED: bool = bool(knobs.runtime.interpret)  # read once: @triton.jit decided it when this module loaded
NAME = "triton"


@triton.jit
def _paged_attention_kernel(
    out_ptr,  # v1: (S, H, D) in the query dtype; v2: (S, H, P, D) fp32, each partition normalised on its own
    max_logits_ptr,  # v2: (S, H, P) fp32
    exp_sums_ptr,  # v2: (S, H, P) fp32
    q_ptr,  # (S, H, D)
    k_cache_ptr,  # (N, B, Hkv, D)
    v_cache_ptr,  # (N, B, Hkv, D)
    block_tables_ptr,  # (S, M) int32
    context_lens_ptr,  # (S,) int32
    scale,
    stride_q_seq,
    stride_q_head,
    stride_cache_block,
    stride_cache_token,
    stride_cache_head,
    stride_bt_seq,
    num_partitions_max,
    QUERIES_PER_KV: tl.constexpr,  # H // Hkv
    GROUP_PADDED: tl.constexpr,  # next power of two of QUERIES_PER_KV
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PADDED: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    PARTITION_SIZE: tl.constexpr,  # 0 = v1 (whole context in one program)
):
    # One program per (sequence, KV head, partition): it serves all QUERIES_PER_KV query heads of that KV head,
    # so each K/V block is loaded once per group (the GQA analogue of sharing the query across a thread block).
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    partition = tl.program_id(2)
    context_len = tl.load(context_lens_ptr + seq)
    num_blocks = tl.cdiv(context_len, BLOCK_SIZE)
    if PARTITION_SIZE > 0:
        blocks_per_partition: tl.constexpr = PARTITION_SIZE // BLOCK_SIZE
        first_block = partition * blocks_per_partition
        last_block = tl.minimum(first_block + blocks_per_partition, num_blocks)
    else:
        first_block = 0
        last_block = num_blocks

    group = tl.arange(0, GROUP_PADDED)  # (G,)
    dims = tl.arange(0, HEAD_DIM_PADDED)  # (Dp,)
    offsets = tl.arange(0, BLOCK_SIZE)  # (B,)
    heads = kv_head * QUERIES_PER_KV + group  # (G,)
    group_mask = group < QUERIES_PER_KV
    dim_mask = dims < HEAD_DIM
    q = tl.load(
        q_ptr + seq * stride_q_seq + heads[:, None] * stride_q_head + dims[None, :],
        mask=group_mask[:, None] & dim_mask[None, :],
        other=0.0,
    ).to(tl.float32)  # (G, Dp)

    m_i = tl.full([GROUP_PADDED], float("-inf"), tl.float32)  # running max logit
    l_i = tl.zeros([GROUP_PADDED], tl.float32)  # running sum of exp(logit - m_i)
    acc = tl.zeros([GROUP_PADDED, HEAD_DIM_PADDED], tl.float32)  # running sum of exp(logit - m_i) * v
    for logical_block in range(first_block, last_block):
        physical_block = tl.load(block_tables_ptr + seq * stride_bt_seq + logical_block).to(tl.int64)
        tokens = logical_block * BLOCK_SIZE + offsets  # (B,)
        token_mask = tokens < context_len
        kv_offsets = (
            physical_block * stride_cache_block
            + offsets[:, None] * stride_cache_token
            + kv_head * stride_cache_head
            + dims[None, :]
        )  # (B, Dp)
        kv_mask = token_mask[:, None] & dim_mask[None, :]
        k = tl.load(k_cache_ptr + kv_offsets, mask=kv_mask, other=0.0).to(tl.float32)  # (B, Dp)
        v = tl.load(v_cache_ptr + kv_offsets, mask=kv_mask, other=0.0).to(tl.float32)  # (B, Dp)
        logits = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale  # (G, B)
        logits = tl.where(token_mask[None, :], logits, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(logits, axis=1))  # finite: every block has a valid token
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(logits - m_new[:, None])  # (G, B)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
        m_i = m_new

    out_mask = group_mask[:, None] & dim_mask[None, :]
    if PARTITION_SIZE > 0:
        # A partition past the end of this sequence has l_i == 0; the reduce kernel never reads it.
        row = (seq * (QUERIES_PER_KV * tl.num_programs(1)) + heads) * num_partitions_max + partition  # (G,)
        tl.store(max_logits_ptr + row, m_i, mask=group_mask)
        tl.store(exp_sums_ptr + row, l_i, mask=group_mask)
        partial = acc / tl.maximum(l_i, 1e-30)[:, None]
        tl.store(out_ptr + row[:, None] * HEAD_DIM + dims[None, :], partial, mask=out_mask)
    else:
        out = acc / l_i[:, None]
        row = seq * (QUERIES_PER_KV * tl.num_programs(1)) + heads  # (G,) rows of the contiguous (S*H, D) output
        tl.store(out_ptr + row[:, None] * HEAD_DIM + dims[None, :], out.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _paged_attention_reduce_kernel(
    out_ptr,  # (S, H, D) in the query dtype, contiguous
    partial_out_ptr,  # (S, H, P, D) fp32
    max_logits_ptr,  # (S, H, P) fp32
    exp_sums_ptr,  # (S, H, P) fp32
    context_lens_ptr,  # (S,) int32
    num_partitions_max,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PADDED: tl.constexpr,
    PARTITIONS_PADDED: tl.constexpr,
    PARTITION_SIZE: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    row = seq * tl.num_programs(1) + head
    num_partitions = tl.cdiv(tl.load(context_lens_ptr + seq), PARTITION_SIZE)
    parts = tl.arange(0, PARTITIONS_PADDED)  # (P,)
    dims = tl.arange(0, HEAD_DIM_PADDED)  # (Dp,)
    part_mask = parts < num_partitions
    m = tl.load(max_logits_ptr + row * num_partitions_max + parts, mask=part_mask, other=float("-inf"))
    global_max = tl.max(m, axis=0)
    # Rescale each partition's exp-sum from its own max to the global one; absent partitions weigh 0.
    weights = tl.where(
        part_mask,
        tl.load(exp_sums_ptr + row * num_partitions_max + parts, mask=part_mask, other=0.0) * tl.exp(m - global_max),
        0.0,
    )  # (P,)
    partial = tl.load(
        partial_out_ptr + (row * num_partitions_max + parts[:, None]) * HEAD_DIM + dims[None, :],
        mask=part_mask[:, None] & (dims[None, :] < HEAD_DIM),
        other=0.0,
    )  # (P, Dp)
    out = tl.sum(partial * weights[:, None], axis=0) / tl.sum(weights, axis=0)  # (Dp,)
    tl.store(out_ptr + row * HEAD_DIM + dims, out.to(out_ptr.dtype.element_ty), mask=dims < HEAD_DIM)


def paged_decode_attention(
    query: torch.Tensor,  # (S, H, D)
    k_cache: torch.Tensor,  # (N, B, Hkv, D)
    v_cache: torch.Tensor,  # (N, B, Hkv, D)
    block_tables: torch.Tensor,  # (S, M) int32, padded with -1
    context_lens: torch.Tensor,  # (S,) int32
    scale: float,
    *,
    version: int | None = None,  # None = launch.choose_version
    max_context_len: int | None = None,  # upper bound of context_lens; None = M * B (no device sync)
    partition_size: int = launch.PARTITION_SIZE,
) -> torch.Tensor:  # (S, H, D) in query's dtype
    num_seqs, num_heads, head_dim = query.shape
    block_size, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    if max_context_len is None:
        max_context_len = block_tables.shape[1] * block_size
    if version is None:
        version = launch.choose_version(num_seqs, num_heads, max_context_len)
    if partition_size % block_size != 0:
        raise ValueError(f"partition_size {partition_size} is not a multiple of block_size {block_size}")
    if k_cache.stride(3) != 1 or query.stride(2) != 1:
        raise ValueError("the head dimension of query and caches must be contiguous")
    queries_per_kv = num_heads // num_kv_heads
    out = torch.empty(num_seqs, num_heads, head_dim, dtype=query.dtype, device=query.device)  # (S, H, D)
    if version == 1:
        num_parts, part_size = 1, 0
        partial_out, max_logits, exp_sums = out, out, out  # unused by v1
    elif version == 2:
        num_parts, part_size = launch.num_partitions(max_context_len, partition_size), partition_size
        f32 = dict(dtype=torch.float32, device=query.device)
        partial_out = torch.empty(num_seqs, num_heads, num_parts, head_dim, **f32)  # (S, H, P, D)
        max_logits = torch.empty(num_seqs, num_heads, num_parts, **f32)  # (S, H, P)
        exp_sums = torch.empty(num_seqs, num_heads, num_parts, **f32)  # (S, H, P)
    else:
        raise ValueError(f"paged attention version must be 1 or 2, not {version}")
    _paged_attention_kernel[(num_seqs, num_kv_heads, num_parts)](
        partial_out if version == 2 else out, max_logits, exp_sums,
        query, k_cache, v_cache, block_tables, context_lens, scale,
        query.stride(0), query.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        block_tables.stride(0), num_parts,
        QUERIES_PER_KV=queries_per_kv,
        GROUP_PADDED=triton.next_power_of_2(queries_per_kv),
        HEAD_DIM=head_dim,
        HEAD_DIM_PADDED=triton.next_power_of_2(head_dim),
        BLOCK_SIZE=block_size,
        PARTITION_SIZE=part_size,
    )  # fmt: skip
    if version == 2:
        _paged_attention_reduce_kernel[(num_seqs, num_heads)](
            out, partial_out, max_logits, exp_sums, context_lens, num_parts,
            HEAD_DIM=head_dim,
            HEAD_DIM_PADDED=triton.next_power_of_2(head_dim),
            PARTITIONS_PADDED=triton.next_power_of_2(num_parts),
            PARTITION_SIZE=part_size,
        )  # fmt: skip
    return out


def paged_decode_attention_v1(query, k_cache, v_cache, block_tables, context_lens, scale, **kwargs) -> torch.Tensor:
    return paged_decode_attention(query, k_cache, v_cache, block_tables, context_lens, scale, version=1, **kwargs)


def paged_decode_attention_v2(query, k_cache, v_cache, block_tables, context_lens, scale, **kwargs) -> torch.Tensor:
    return paged_decode_attention(query, k_cache, v_cache, block_tables, context_lens, scale, version=2, **kwargs)


@triton.jit
def _reshape_and_cache_kernel(
    key_ptr,  # (T, Hkv, D)
    value_ptr,  # (T, Hkv, D)
    k_cache_ptr,  # (N, B, Hkv, D)
    v_cache_ptr,  # (N, B, Hkv, D)
    slot_mapping_ptr,  # (T,) int64
    stride_key_token,
    stride_value_token,
    ROW: tl.constexpr,  # Hkv * D: one token's K (or V) row, contiguous in the cache
    ROW_PADDED: tl.constexpr,
):
    token = tl.program_id(0)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    cols = tl.arange(0, ROW_PADDED)
    mask = cols < tl.where(slot >= 0, ROW, 0)  # slot -1 is padding: nothing is written
    # The cache is contiguous (N, B, Hkv, D), so slot = block * B + offset starts row slot * ROW.
    dst = slot * ROW + cols
    k = tl.load(key_ptr + token * stride_key_token + cols, mask=mask)
    v = tl.load(value_ptr + token * stride_value_token + cols, mask=mask)
    tl.store(k_cache_ptr + dst, k.to(k_cache_ptr.dtype.element_ty), mask=mask)
    tl.store(v_cache_ptr + dst, v.to(v_cache_ptr.dtype.element_ty), mask=mask)


def reshape_and_cache(
    key: torch.Tensor,  # (T, Hkv, D)
    value: torch.Tensor,  # (T, Hkv, D)
    k_cache: torch.Tensor,  # (N, B, Hkv, D), contiguous, written in place
    v_cache: torch.Tensor,  # (N, B, Hkv, D), contiguous, written in place
    slot_mapping: torch.Tensor,  # (T,) int64, -1 = skip
) -> None:
    num_tokens, num_kv_heads, head_dim = key.shape
    if num_tokens == 0:
        return
    if not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError("reshape_and_cache needs contiguous caches")
    key = key if key.stride(1) == head_dim and key.stride(2) == 1 else key.contiguous()
    value = value if value.stride(1) == head_dim and value.stride(2) == 1 else value.contiguous()
    row = num_kv_heads * head_dim
    _reshape_and_cache_kernel[(num_tokens,)](
        key, value, k_cache, v_cache, slot_mapping, key.stride(0), value.stride(0),
        ROW=row, ROW_PADDED=triton.next_power_of_2(row),
    )  # fmt: skip


@triton.jit
def _silu_and_mul_kernel(x_ptr, y_ptr, stride_x_row, D: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < D
    gate = tl.load(x_ptr + row * stride_x_row + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x_row + D + cols, mask=mask, other=0.0).to(tl.float32)
    y = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(y_ptr + row * D + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:  # x (..., 2*d) -> (..., d)
    d = x.shape[-1] // 2
    x2 = x.reshape(-1, 2 * d)  # (rows, 2*d)
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    y = torch.empty(x2.shape[0], d, dtype=x.dtype, device=x.device)  # (rows, d)
    if y.numel() > 0:
        block = min(triton.next_power_of_2(d), 1024)
        _silu_and_mul_kernel[(x2.shape[0], triton.cdiv(d, block))](x2, y, x2.stride(0), D=d, BLOCK=block)
    return y.reshape(*x.shape[:-1], d)


@triton.jit
def _rms_norm_kernel(x_ptr, weight_ptr, y_ptr, stride_x_row, eps, HIDDEN: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < HIDDEN
    x = tl.load(x_ptr + row * stride_x_row + cols, mask=mask, other=0.0).to(tl.float32)
    inv_rms = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / HIDDEN + eps)
    # Round to the input dtype before the weight, as reference.rms_norm (HF LlamaRMSNorm) does.
    normed = (x * inv_rms).to(y_ptr.dtype.element_ty).to(tl.float32)
    w = tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * HIDDEN + cols, (normed * w).to(y_ptr.dtype.element_ty), mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # (..., hidden), (hidden,)
    hidden = x.shape[-1]
    x2 = x.reshape(-1, hidden)  # (rows, hidden)
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    y = torch.empty_like(x2)  # (rows, hidden)
    if y.numel() > 0:
        _rms_norm_kernel[(x2.shape[0],)](
            x2, weight, y, x2.stride(0), eps, HIDDEN=hidden, BLOCK=triton.next_power_of_2(hidden)
        )
    return y.reshape(x.shape)
