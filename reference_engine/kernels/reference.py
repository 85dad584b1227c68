"""Plain-torch definitions of the four kernels: the one definition every implementation is checked against.

Shapes, with S = num_seqs, T = num_tokens, H = num_heads, Hkv = num_kv_heads, D = head_dim, N = num_blocks,
B = block_size, M = max blocks per sequence. The KV cache is NHD: k_cache[block, offset, kv_head, dim].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reshape_and_cache(
    key: torch.Tensor,  # (T, Hkv, D)
    value: torch.Tensor,  # (T, Hkv, D)
    k_cache: torch.Tensor,  # (N, B, Hkv, D), written in place
    v_cache: torch.Tensor,  # (N, B, Hkv, D), written in place
    slot_mapping: torch.Tensor,  # (T,) int64; slot = block * B + offset, -1 = padding (not written)
) -> None:
    num_kv_heads, head_dim = k_cache.shape[2], k_cache.shape[3]
    valid = slot_mapping >= 0  # (T,)
    slots = slot_mapping[valid]  # (T_valid,)
    k_cache.view(-1, num_kv_heads, head_dim)[slots] = key[valid].to(k_cache.dtype)
    v_cache.view(-1, num_kv_heads, head_dim)[slots] = value[valid].to(v_cache.dtype)


def paged_decode_attention(
    query: torch.Tensor,  # (S, H, D), one new token per sequence
    k_cache: torch.Tensor,  # (N, B, Hkv, D)
    v_cache: torch.Tensor,  # (N, B, Hkv, D)
    block_tables: torch.Tensor,  # (S, M) int32, padded with -1
    context_lens: torch.Tensor,  # (S,) int32, >= 1, includes the new token
    scale: float,
    *,
    version: int | None = None,  # accepted for the kernels' call signature; the definition has one version
    max_context_len: int | None = None,  # likewise unused
) -> torch.Tensor:  # (S, H, D) in query's dtype
    """softmax(q . k * scale) . v over each sequence's first context_len cached tokens, in fp32.

    Query head h reads KV head h // (H // Hkv) (GQA, as in vLLM and HF's repeat_kv).
    """
    del version, max_context_len
    num_seqs, num_heads, head_dim = query.shape
    block_size, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = num_heads // num_kv_heads
    max_tokens = block_tables.shape[1] * block_size
    blocks = block_tables.long().clamp(min=0)  # (S, M); padding reads block 0 and is masked below
    k = k_cache[blocks].reshape(num_seqs, max_tokens, num_kv_heads, head_dim).float()  # (S, M*B, Hkv, D)
    v = v_cache[blocks].reshape(num_seqs, max_tokens, num_kv_heads, head_dim).float()  # (S, M*B, Hkv, D)
    k = k.repeat_interleave(group, dim=2)  # (S, M*B, H, D)
    v = v.repeat_interleave(group, dim=2)  # (S, M*B, H, D)
    positions = torch.arange(max_tokens, device=query.device)  # (M*B,)
    valid = positions[None, :] < context_lens.long()[:, None]  # (S, M*B)
    # Zero masked rows so uninitialised cache memory (possibly NaN) cannot leak through 0 * NaN.
    v = v.masked_fill(~valid[:, :, None, None], 0.0)
    scores = torch.einsum("shd,sthd->sht", query.float(), k) * scale  # (S, H, M*B)
    scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1)  # (S, H, M*B)
    out = torch.einsum("sht,sthd->shd", probs, v)  # (S, H, D)
    return out.to(query.dtype)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:  # x (..., 2*d) -> (..., d)
    """silu(gate) * up with gate = x[..., :d], up = x[..., d:] (vLLM's layout of a merged gate_up projection)."""
    d = x.shape[-1] // 2
    return (F.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)


def rms_norm(
    x: torch.Tensor,  # (..., hidden)
    weight: torch.Tensor,  # (hidden,)
    eps: float,
) -> torch.Tensor:  # (..., hidden) in x's dtype
    """HF LlamaRMSNorm: normalise in fp32, round to x's dtype, then scale by weight."""
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (weight.float() * normed.to(x.dtype).float()).to(x.dtype)
