"""Llama in plain PyTorch: RMSNorm, RoPE, grouped-query attention over a paged KV cache, SwiGLU MLP.

Weights load straight from a HF safetensors folder. q/k/v and gate/up projections are fused into one matrix each
so a layer runs four GEMMs (Projection: torch's x @ W, oneDNN's prepacked linear, or on CPU the packed kernels, over
the GGUF's own blocks for small steps when the weights came from one). Every activation is flat over the batch:
(num_tokens, ...), no padding.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open

from reference_engine.attention import AttentionMetadata, AttentionOps, attention
from reference_engine.config import ModelConfig

RANDOM_WEIGHTS_MARKER = "benchctl_dummy.json"  # a folder with this file has no weights: make them (random_weights)


def rope_cos_sin(
    head_dim: int, theta: float, max_positions: int, device: torch.device, scaling: dict | None = None
) -> torch.Tensor:
    """(max_positions, 2, head_dim) fp32: cos and sin, laid out for rotate-half RoPE as in transformers; `scaling`:
    a config's "llama3" rope_scaling (Llama 3.1+)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    if scaling:
        inv_freq = llama3_scaled(inv_freq, scaling)
    freqs = torch.arange(max_positions, device=device).float()[:, None] * inv_freq[None, :]  # (pos, head_dim/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (pos, head_dim)
    return torch.stack((emb.cos(), emb.sin()), dim=1)


def llama3_scaled(inv_freq: torch.Tensor, scaling: dict) -> torch.Tensor:
    """Llama 3.1's RoPE frequencies: wavelengths beyond the original context / low_freq_factor are stretched by
    `factor`, those under original context / high_freq_factor kept, the band between interpolated smoothly."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    original = scaling["original_max_position_embeddings"]
    wavelen = 2 * torch.pi / inv_freq
    smooth = ((original / wavelen - low) / (high - low)).clamp(0.0, 1.0)  # 0: stretched .. 1: kept
    return (1 - smooth) * inv_freq / factor + smooth * inv_freq


def checkpoint_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of a HF Llama checkpoint with this config, by name (lm_head only when not tied)."""
    h, inter = cfg.hidden_size, cfg.intermediate_size
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (cfg.vocab_size, h), "model.norm.weight": (h,)}
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, h)
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
                p + "self_attn.q_proj.weight": (q, h),
                p + "self_attn.k_proj.weight": (kv, h),
                p + "self_attn.v_proj.weight": (kv, h),
                p + "self_attn.o_proj.weight": (h, q),
                p + "mlp.gate_proj.weight": (inter, h),
                p + "mlp.up_proj.weight": (inter, h),
                p + "mlp.down_proj.weight": (h, inter),
            }
        )
    return shapes


def random_weights(cfg: ModelConfig, seed: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """checkpoint_shapes' tensors, random: matrices normal(0, initializer_range), norms ones (as transformers
    initialises them). Each tensor draws from its own generator seeded by (seed, index): the same seed gives the same
    weights on the same device, whatever else ran first."""
    weights = {}
    for index, (name, shape) in enumerate(checkpoint_shapes(cfg).items()):
        if len(shape) == 1:
            weights[name] = torch.ones(shape, device=device, dtype=dtype)
            continue
        gen = torch.Generator(device).manual_seed(seed * 1_000_003 + index)
        weights[name] = torch.empty(shape, device=device, dtype=dtype).normal_(
            0.0, cfg.initializer_range, generator=gen
        )
    return weights


def random_weights_seed(model_dir: str | Path) -> int | None:
    """The seed of a folder whose marker asks for random weights, else None (load the checkpoint)."""
    marker = Path(model_dir) / RANDOM_WEIGHTS_MARKER
    return int(json.loads(marker.read_text()).get("seed", 0)) if marker.is_file() else None


class Projection:
    """y = x @ W.T for a weight stored as (out, in), the way checkpoints store it.

    "torch": the weight is kept transposed, (in, out), and applied as x @ W: at the few rows of a decode step CPU
    GEMMs run up to 2x faster on this layout than F.linear's (out, in).
    "onednn": the weight is reordered once into oneDNN's blocked layout and applied with its prepacked linear
    (torch.ops.mkldnn, what torch.compile's CPU freezing uses): the GEMM no longer repacks the weight on every call,
    which is most of the cost when a decode step has few rows and the weights are not in cache.
    "packed": the CPU kernel packed_linear over the weight packed once in 32-column panels, for every step: one
    streaming pass over the weight at the few rows of a decode step (memory bandwidth bound), rows in chunks that
    stay in L2 at a prefill's hundreds (as fast as oneDNN's blocked GEMM there or faster: cpu_ops.packed_linear).
    `blocks` (with "packed"): the weight's GGUF blocks, (format, (out, row bytes) uint8). They are packed for
    block_packed_linear and used for inputs of at most BLOCK_MAX_ROWS rows if, expanded, they equal the panels bit
    for bit (else `self.blocks` stays None); the result is then packed_linear's, from a fraction of the bytes.
    """

    def __init__(self, weight: torch.Tensor, gemm: str, blocks: tuple[str, torch.Tensor] | None = None):
        self.gemm = gemm
        self.weight = self.panels = self.blocks = None
        if gemm == "packed":
            from reference_engine.kernels import cpu_ops

            self.panels, self.out_features = cpu_ops.pack_panels(weight), weight.shape[0]
            self._packed = cpu_ops.packed_linear
            if blocks is not None:
                fmt, rows = blocks
                packed = cpu_ops.pack_block_panels(rows, fmt)
                expanded = cpu_ops.expand_block_panels(packed, fmt)
                if torch.equal(expanded.view(torch.int32), self.panels.view(torch.int32)):
                    self.blocks, self.block_format = packed, fmt
                    self._block_packed, self._block_max_rows = (cpu_ops.block_packed_linear, cpu_ops.BLOCK_MAX_ROWS)
        elif gemm == "onednn":
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous())
        else:
            self.weight = weight.t().contiguous()  # (in, out)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.blocks is not None and 0 < x.shape[0] <= self._block_max_rows:
            return self._block_packed(x, self.blocks, self.out_features, self.block_format)
        if self.panels is not None:
            return self._packed(x, self.panels, self.out_features)
        if self.gemm == "onednn":
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight, None, "none", [], "")
        return x @ self.weight


def fused_blocks(blocks: dict[str, tuple[str, torch.Tensor]], names: list[str]) -> tuple[str, torch.Tensor] | None:
    """The blocks of weights fused by stacking their rows (q/k/v, gate/up): one format for all, or None."""
    parts = [blocks.get(name) for name in names]
    if any(p is None for p in parts) or len({p[0] for p in parts}) != 1:
        return None
    return parts[0][0], torch.cat([p[1] for p in parts])


def onednn_linear_available(device: torch.device, dtype: torch.dtype) -> bool:
    """oneDNN's prepacked linear runs here: a CPU float32 model and a torch built with mkldnn."""
    return (
        device.type == "cpu"
        and dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (num_tokens, heads, head_dim); cos, sin: (num_tokens, 1, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class LlamaLayer:
    def __init__(
        self,
        cfg: ModelConfig,
        weights: dict[str, torch.Tensor],
        gemm: str = "torch",
        blocks: dict[str, tuple[str, torch.Tensor]] | None = None,
    ):
        """blocks: GGUF blocks by weight name, prefix stripped like `weights` (see Projection)."""
        self.cfg = cfg
        blocks = blocks or {}
        qkv, gate_up = [f"self_attn.{n}_proj.weight" for n in "qkv"], ["mlp.gate_proj.weight", "mlp.up_proj.weight"]
        self.input_norm = weights["input_layernorm.weight"]  # (hidden,)
        # hidden -> num_heads*head_dim + 2*num_kv_heads*head_dim
        self.qkv_proj = Projection(torch.cat([weights[n] for n in qkv]), gemm, fused_blocks(blocks, qkv))
        self.o_proj = Projection(
            weights["self_attn.o_proj.weight"],
            gemm,  # num_heads*head_dim -> hidden
            blocks.get("self_attn.o_proj.weight"),
        )
        self.post_attention_norm = weights["post_attention_layernorm.weight"]  # (hidden,)
        # hidden -> 2*intermediate
        self.gate_up_proj = Projection(torch.cat([weights[n] for n in gate_up]), gemm, fused_blocks(blocks, gate_up))
        self.down_proj = Projection(
            weights["mlp.down_proj.weight"],
            gemm,  # intermediate -> hidden
            blocks.get("mlp.down_proj.weight"),
        )

    def projections(self) -> list[Projection]:
        return [self.qkv_proj, self.o_proj, self.gate_up_proj, self.down_proj]

    def forward(
        self,
        h: torch.Tensor,
        cos_sin: torch.Tensor,
        kv_cache: tuple[torch.Tensor, torch.Tensor],
        meta: AttentionMetadata,
        ops: AttentionOps,
    ) -> torch.Tensor:
        """h: (num_tokens, hidden); cos_sin: (num_tokens, 2, 1, head_dim). Returns (num_tokens, hidden)."""
        cfg = self.cfg
        n, nh, nkv, hd = h.shape[0], cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        x = ops.rms_norm(h, self.input_norm, cfg.rms_norm_eps)
        qkv = self.qkv_proj(x).view(n, nh + 2 * nkv, hd)
        # q and k heads are contiguous, so RoPE rotates both in one go.
        if ops.rotary is not None and qkv.dtype == torch.float32:  # fused, in place; K/V stay slices of qkv
            ops.rotary(qkv, cos_sin[:, :, 0], nh + nkv)
            q, k, v = qkv[:, :nh], qkv[:, nh : nh + nkv], qkv[:, nh + nkv :]
        else:
            qk = apply_rope(qkv[:, : nh + nkv], cos_sin[:, 0], cos_sin[:, 1])  # (n, nh + nkv, hd)
            q, k, v = qk[:, :nh], qk[:, nh:].contiguous(), qkv[:, nh + nkv :].contiguous()
        o = attention(q, k, v, kv_cache[0], kv_cache[1], meta, hd**-0.5, ops)
        h = h + self.o_proj(o.reshape(n, nh * hd))
        x = ops.rms_norm(h, self.post_attention_norm, cfg.rms_norm_eps)
        return h + self.down_proj(ops.silu_and_mul(self.gate_up_proj(x)))


class LlamaForCausalLM:
    def __init__(
        self,
        cfg: ModelConfig,
        model_dir: str | Path,
        device: torch.device,
        dtype: torch.dtype,
        max_positions: int,
        gemm: str = "torch",
        gguf_file: str = "auto",
    ):
        """gemm: "torch", "onednn" or "packed" (see Projection). gguf_file (with "packed" on a float32 model): the
        GGUF the weights were dequantized from, whose blocks decode steps stream instead (gguf_blocks.find_gguf:
        "auto", "none" or a path). `self.gguf_blocks` says what came of it."""
        self.cfg = cfg
        seed = random_weights_seed(model_dir)
        weights = (
            load_safetensors(Path(model_dir), device, dtype)
            if seed is None
            else random_weights(cfg, seed, device, dtype)
        )
        self.random_weights_seed = seed
        if seed is None:
            blocks, self.gguf_blocks = gguf_blocks_for(model_dir, cfg, gemm, dtype, gguf_file)
        else:  # a GGUF next to random weights (written for llama.cpp) holds other numbers
            blocks, self.gguf_blocks = {}, {"file": None, "reason": "random weights"}
        self.embed_tokens = weights.pop("model.embed_tokens.weight")  # (vocab, hidden)
        self.norm = weights.pop("model.norm.weight")  # (hidden,)
        self.lm_head = weights.pop("lm_head.weight", None)  # (vocab, hidden)
        head_blocks = blocks.get("lm_head.weight")
        if self.lm_head is None or cfg.tie_word_embeddings:
            self.lm_head, head_blocks = self.embed_tokens, blocks.get("model.embed_tokens.weight")
        self.lm_head_proj = Projection(self.lm_head, gemm, head_blocks) if gemm != "torch" else None
        self.layers = []
        for i in range(cfg.num_layers):
            prefix = f"model.layers.{i}."
            self.layers.append(
                LlamaLayer(
                    cfg,
                    {k[len(prefix) :]: weights.pop(k) for k in list(weights) if k.startswith(prefix)},
                    gemm,
                    {k[len(prefix) :]: v for k, v in blocks.items() if k.startswith(prefix)},
                )
            )
        # (pos, 2, head_dim) fp32
        self.cos_sin = rope_cos_sin(cfg.head_dim, cfg.rope_theta, max_positions, device, cfg.rope_scaling)
        if self.gguf_blocks.get("file"):
            projections = [p for layer in self.layers for p in layer.projections()] + [self.lm_head_proj]
            used = [p for p in projections if p.blocks is not None]
            self.gguf_blocks.update(
                projections=len(used),
                of=len(projections),
                formats=sorted({p.block_format for p in used}),
                bytes=sum(p.blocks.numel() for p in used),
            )
            if gguf_file != "auto" and len(used) < len(projections):
                raise ValueError(
                    f"gguf_file={gguf_file!r}: the blocks of {len(projections) - len(used)} of "
                    f"{len(projections)} projections are missing, in a format the kernel does not "
                    f"read, or do not reproduce {model_dir}'s float32 weights"
                )

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        logits_indices: torch.Tensor,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        meta: AttentionMetadata,
        ops: AttentionOps,
    ) -> torch.Tensor:
        """input_ids, positions: (num_tokens,) int64; logits_indices: (num_logits,) rows that need logits.
        Returns (num_logits, vocab) fp32."""
        h = F.embedding(input_ids, self.embed_tokens)  # (num_tokens, hidden)
        cos_sin = self.cos_sin[positions].to(h.dtype).unsqueeze(2)  # (num_tokens, 2, 1, head_dim)
        for layer, kv_cache in zip(self.layers, kv_caches):
            h = layer.forward(h, cos_sin, kv_cache, meta, ops)
        h = ops.rms_norm(h[logits_indices], self.norm, self.cfg.rms_norm_eps)  # (num_logits, hidden)
        if self.lm_head_proj is not None:
            return self.lm_head_proj(h).float()
        return F.linear(h, self.lm_head).float()


def gguf_blocks_for(
    model_dir: str | Path, cfg: ModelConfig, gemm: str, dtype: torch.dtype, option: str
) -> tuple[dict[str, tuple[str, torch.Tensor]], dict]:
    """The GGUF blocks the projections may stream (gguf_blocks.find_gguf: option "auto", "none" or a path) and what
    came of the search ({"file": path} or {"file": None, "reason": why not}). An explicit path that cannot be used
    is a ValueError."""
    from reference_engine.model import gguf_blocks

    path = gguf_blocks.find_gguf(model_dir, option)
    if path is None:
        reason = "gguf_file=none" if option == "none" else "no GGUF source found"
    elif gemm != "packed" or dtype != torch.float32:
        reason = "GGUF blocks are read by the packed CPU float32 GEMM only"
    else:
        try:
            return gguf_blocks.load_gguf_blocks(path, cfg), {"file": str(path)}
        except (OSError, ValueError) as exc:  # not a GGUF file, or a damaged one
            reason = f"{path} could not be read as GGUF: {exc}"
    if option not in ("auto", "none"):
        raise ValueError(f"gguf_file={option!r}: {reason}")
    return {}, {"file": None, "reason": reason}


def load_safetensors(model_dir: Path, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors files")
    weights = {}
    for path in files:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for name in f.keys():
                weights[name] = f.get_tensor(name).to(device=device, dtype=dtype)
    return weights
