"""A Llama checkpoint's projections as the GGUF file stores them: quantized blocks, read without dequantizing.

A model converted from a GGUF (benchctl converts the bundled Q4_1 SmolLM2 once, with transformers) holds float32
weights that are each a block formula of the file's bytes: Q4_1 `d * q + m`, Q8_0 `q * d`, in float32. The CPU
kernel block_packed_linear computes the same formula in registers, so a decode step can stream the blocks (5 or 8.5
bits per weight) instead of the float32 weights (32 bits) and still multiply by exactly the float32 weights. Whether
the blocks do reproduce the weights is not assumed: Projection compares the expanded blocks with the weights bit for
bit before using them.

Names and layout follow llama.cpp's converter, undone the way transformers undoes it: `blk.{i}.attn_q` is
`model.layers.{i}.self_attn.q_proj`, and so on; the q and k rows were permuted for llama.cpp's RoPE and are
permuted back (whole rows: a row's blocks stay together).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from reference_engine.config import ModelConfig

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight"}
# where benchctl's conversion records the GGUF it dequantized (benchctl/models.py)
CONVERSION_RECORD = "benchctl-conversion.json"


def find_gguf(model_dir: str | Path, option: str) -> Path | None:
    """The GGUF file behind model_dir: `option` when it is a path; for "auto", the source named by benchctl's
    conversion record if that file still exists, else the only *.gguf inside model_dir; None for "none" or when
    there is none. (EngineConfig has checked that an explicit path is a file.)"""
    if option == "none":
        return None
    if option != "auto":
        return Path(option).expanduser()
    model_dir = Path(model_dir)
    record = model_dir / CONVERSION_RECORD
    if record.is_file():
        try:
            source = Path(json.loads(record.read_text()).get("source") or "")
        except (OSError, ValueError, AttributeError):
            source = Path()
        if source.name and source.is_file():
            return source
    found = sorted(model_dir.glob("*.gguf"))
    return found[0] if len(found) == 1 else None


def hf_name(gguf_name: str) -> str | None:
    if gguf_name in _TOP_NAMES:
        return _TOP_NAMES[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _LAYER_NAMES and parts[3] == "weight":
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.weight"
    return None


def unpermute_rows(rows: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k permutation (rows regrouped per head for its RoPE) on whole rows."""
    n = rows.shape[0]
    return rows.reshape(num_heads, n // num_heads // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


# GGUF metadata value types (gguf's GGUFValueType) -> struct format; 8 = string, 9 = array
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# ggml tensor type ids (gguf's GGMLQuantizationType) of the formats the kernel reads (cpu_ops.BLOCK_FORMATS)
GGML_TYPES = {3: "Q4_1", 8: "Q8_0"}


class _Cursor:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def scalar(self, fmt: str):
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.scalar("Q")
        self.pos += n
        return self.data[self.pos - n : self.pos].decode("utf-8", "replace")

    def value(self, kind: int):
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.scalar("I"), self.scalar("Q")
            if item in _SCALARS:  # skipped whole: only general.alignment (a scalar) is needed
                self.pos += count * struct.calcsize(_SCALARS[item])
                return None
            for _ in range(count):
                self.value(item)
            return None
        if kind not in _SCALARS:
            raise ValueError(f"unknown GGUF metadata type {kind}")
        return self.scalar(_SCALARS[kind])


def read_tensor_index(path: Path) -> dict[str, tuple[int, tuple[int, ...], int]]:
    """A GGUF file's tensors: name -> (ggml type, dims innermost first, absolute byte offset). Reads the header
    only (the metadata is skipped, not decoded: gguf's own reader takes seconds over a 49k-token vocabulary)."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
        if head[:4] != b"GGUF":
            raise ValueError("not a GGUF file (no GGUF magic)")
        while True:  # the header (vocabulary included) must be read whole; grow until it parses
            cur = _Cursor(head)
            try:
                version, tensors, kvs = cur.scalar("4xI"), cur.scalar("Q"), cur.scalar("Q")
                if version < 2:
                    raise ValueError(f"GGUF version {version} is not supported")
                alignment = 32
                for _ in range(kvs):
                    key, kind = cur.string(), cur.scalar("I")
                    value = cur.value(kind)
                    if key == "general.alignment":
                        alignment = int(value)
                index = {}
                for _ in range(tensors):
                    name, ndims = cur.string(), cur.scalar("I")
                    dims = tuple(cur.scalar("Q") for _ in range(ndims))
                    index[name] = (cur.scalar("I"), dims, cur.scalar("Q"))
                break
            except struct.error:
                more = f.read(len(head))
                if not more:
                    raise ValueError("truncated GGUF header") from None
                head += more
    start = -(-cur.pos // alignment) * alignment
    return {name: (kind, dims, start + offset) for name, (kind, dims, offset) in index.items()}


def load_gguf_blocks(path: Path, cfg: ModelConfig) -> dict[str, tuple[str, torch.Tensor]]:
    """HF weight name -> (format, (rows, row bytes) uint8 blocks) for every 2-D weight stored in a GGML_TYPES
    format. A file that is not GGUF, or is cut short, is a ValueError."""
    from reference_engine.kernels.cpu_ops import BLOCK_FORMATS

    blocks = {}
    for gguf_name, (kind, dims, offset) in read_tensor_index(path).items():
        name = hf_name(gguf_name)
        if name is None or kind not in GGML_TYPES or len(dims) != 2 or dims[0] % 32:
            continue
        fmt = GGML_TYPES[kind]
        block_bytes = BLOCK_FORMATS[fmt][1]
        row_bytes = dims[0] // 32 * block_bytes
        rows = np.fromfile(path, dtype=np.uint8, count=dims[1] * row_bytes, offset=offset)
        if rows.size != dims[1] * row_bytes:
            raise ValueError(f"{gguf_name}: the file ends inside its data")
        rows = rows.reshape(dims[1], row_bytes)
        if ".attn_q." in gguf_name:
            rows = unpermute_rows(rows, cfg.num_heads)
        elif ".attn_k." in gguf_name:
            rows = unpermute_rows(rows, cfg.num_kv_heads)
        blocks[name] = (fmt, torch.from_numpy(np.ascontiguousarray(rows)))
    return blocks
