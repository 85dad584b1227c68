"""Attention ops behind a small dispatch, and the attention of one layer over the paged KV cache.

`get_attention_ops("torch")` gives the plain-PyTorch ops below. `"cpu"`, `"triton"` and `"cuda"` come from
`reference_engine.kernels` with exactly the same signatures, so the model never knows which one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

BACKENDS = ("torch", "cpu", "triton", "cuda")


def reshape_and_cache(
    key: torch.Tensor, value: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    """key, value: (num_tokens, num_kv_heads, head_dim); k_cache, v_cache: (num_blocks, block_size,
    num_kv_heads, head_dim); slot_mapping: (num_tokens,) int64, slot = block_id * block_size + offset, -1 = skip."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep]  # (num_kept,)
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slots, key[keep])
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slots, value[keep])


def paged_decode_attention(
    query: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """One query token per sequence against its whole context, read through its block table.

    query: (num_seqs, num_heads, head_dim); k_cache, v_cache: (num_blocks, block_size, num_kv_heads, head_dim);
    block_tables: (num_seqs, max_blocks) int32, -1 padded; context_lens: (num_seqs,) int32.
    Returns (num_seqs, num_heads, head_dim).
    """
    num_seqs, num_heads, head_dim = query.shape
    _, block_size, num_kv_heads, _ = k_cache.shape
    group = num_heads // num_kv_heads
    table = block_tables.clamp(min=0).long().flatten()  # padding reads block 0, then is masked
    max_len = block_tables.shape[1] * block_size
    # (num_seqs, num_kv_heads, max_len, head_dim); index_select is several times faster than k_cache[table] on CPU
    keys = k_cache.index_select(0, table).view(num_seqs, max_len, num_kv_heads, head_dim).transpose(1, 2)
    values = v_cache.index_select(0, table).view(num_seqs, max_len, num_kv_heads, head_dim).transpose(1, 2)
    # GQA without repeating K/V: the `group` query heads sharing a KV head act as `group` query rows.
    q = query.view(num_seqs, num_kv_heads, group, head_dim)
    mask = torch.arange(max_len, device=query.device) < context_lens[:, None].to(torch.long)  # (num_seqs, max_len)
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None, None, :], scale=scale)
    return out.reshape(num_seqs, num_heads, head_dim)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x: (..., 2 * d) -> (..., d): silu(gate) * up."""
    d = x.shape[-1] // 2
    return F.silu(x[..., :d]) * x[..., d:]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x: (..., hidden); weight: (hidden,). Normalizes in fp32, as transformers' LlamaRMSNorm does."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


@dataclass(frozen=True, slots=True)
class AttentionOps:
    name: str
    reshape_and_cache: Callable
    paged_decode_attention: Callable
    silu_and_mul: Callable
    rms_norm: Callable
    # optional: rotary(qkv, cos_sin, num_heads) applies RoPE in place to the first heads of the qkv output, and
    # reshape_and_cache then takes K/V as slices of it (the model's torch expression runs otherwise)
    rotary: Callable | None = None
    # optional: paged_decode_attention also answers prefill tokens, each a query over its own context (the step's
    # K/V are in the cache before attention runs), so a step is one kernel call and no prefill runs through SDPA
    prefill_with_decode_kernel: bool = False
    # optional: argmax(logits (rows, vocab)) -> (rows,) int64, the first index of each row's maximum (NaN counting
    # as the maximum), for the sampler; torch's argmax otherwise
    argmax: Callable | None = None

    @classmethod
    def from_object(cls, name: str, ops: object) -> AttentionOps:
        """Accept a module, an object with the four (or more) attributes, a dict, or an AttentionOps."""
        if isinstance(ops, AttentionOps):
            return ops
        get = ops.get if isinstance(ops, dict) else lambda key, default=None: getattr(ops, key, default)
        return cls(
            name,
            get("reshape_and_cache"),
            get("paged_decode_attention"),
            get("silu_and_mul"),
            get("rms_norm"),
            get("rotary", None),
            bool(get("prefill_with_decode_kernel", False)),
            get("argmax", None),
        )


TORCH_OPS = AttentionOps("torch", reshape_and_cache, paged_decode_attention, silu_and_mul, rms_norm)


def get_attention_ops(backend: str) -> AttentionOps:
    if backend == "torch":
        return TORCH_OPS
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    try:
        from reference_engine.kernels import load_ops
    except ImportError as exc:
        raise ValueError(
            f"attention backend {backend!r} needs reference_engine.kernels, which cannot be "
            f"imported ({exc}); use attention_backend='torch'"
        ) from exc
    return AttentionOps.from_object(backend, load_ops(backend))


def resolve_attention_backend(requested: str, device_type: str) -> str:
    """'auto' -> what reference_engine.kernels recommends for the device, or 'torch' without it."""
    if requested != "auto":
        return requested
    try:
        from reference_engine.kernels import resolve_backend
    except ImportError:
        return "torch"
    return resolve_backend("auto", device_type)


@dataclass(slots=True)
class PrefillSpan:
    """One sequence's prefill tokens inside the flat batch."""

    start: int  # first row in the batch
    num_tokens: int
    num_computed_tokens: int  # context already in the cache before this step (prefix hits, earlier chunks)
    block_table: torch.Tensor | None  # (num_blocks,) int64; None when there is no earlier context to read


@dataclass(slots=True)
class AttentionMetadata:
    """How the flat batch of tokens maps onto sequences and cache slots. Decode tokens come first."""

    slot_mapping: torch.Tensor  # (num_tokens,) int64
    # rows answered by paged_decode_attention, from the first: the decode tokens (and every prefill token too when
    # the ops' prefill_with_decode_kernel is set; prefills is then empty)
    num_decode_tokens: int
    block_tables: torch.Tensor  # (num_decode_tokens, max_blocks) int32, -1 padded
    context_lens: torch.Tensor  # (num_decode_tokens,) int32
    prefills: list[PrefillSpan] = field(default_factory=list)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    ops: AttentionOps,
) -> torch.Tensor:
    """q: (num_tokens, num_heads, head_dim); k, v: (num_tokens, num_kv_heads, head_dim);
    caches: (num_blocks, block_size, num_kv_heads, head_dim). Returns (num_tokens, num_heads, head_dim)."""
    # Writes come before reads, so tokens of this step see each other through the cache.
    ops.reshape_and_cache(k, v, k_cache, v_cache, meta.slot_mapping)
    nd = meta.num_decode_tokens
    if not meta.prefills:
        return ops.paged_decode_attention(q, k_cache, v_cache, meta.block_tables, meta.context_lens, scale)
    out = torch.empty_like(q)
    if nd:
        out[:nd] = ops.paged_decode_attention(q[:nd], k_cache, v_cache, meta.block_tables, meta.context_lens, scale)
    for span in meta.prefills:
        rows = slice(span.start, span.start + span.num_tokens)
        qs = q[rows].transpose(0, 1)  # (num_heads, n, head_dim)
        if span.block_table is None:
            ks, vs = k[rows].transpose(0, 1), v[rows].transpose(0, 1)  # (num_kv_heads, n, head_dim)
            o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale, enable_gqa=True)
        else:
            ctx = span.num_computed_tokens + span.num_tokens
            # (num_kv_heads, ctx, head_dim)
            ks = k_cache.index_select(0, span.block_table).flatten(0, 1)[:ctx].transpose(0, 1)
            vs = v_cache.index_select(0, span.block_table).flatten(0, 1)[:ctx].transpose(0, 1)
            # Query i sits at position num_computed + i and sees keys 0..num_computed + i.
            mask = torch.ones(span.num_tokens, ctx, dtype=torch.bool, device=q.device).tril(span.num_computed_tokens)
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale, enable_gqa=True)
        out[rows] = o.transpose(0, 1)
    return out
