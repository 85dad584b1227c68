"""Host-side launch arithmetic of the paged-attention kernels, mirrored from csrc/launch_config.h.

The constants are read from that header (the one place they are defined); the functions repeat its constexpr
functions line for line, and tests/test_kernels_cuda.py compiles the header into a host program to check that the
two give the same grids, partition counts and shared-memory sizes. The Triton kernels use the same partition size
and the same v1/v2 choice.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from pathlib import Path

CSRC_DIR = Path(__file__).resolve().parent.parent / "csrc"
HEADER_PATH = CSRC_DIR / "launch_config.h"

_BINARY_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _eval_int(expr: str) -> int:
    """Evaluate an integer literal expression such as `48 * 1024` without eval()."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
            return _BINARY_OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"unsupported constant expression in {HEADER_PATH.name}: {expr!r}")

    return walk(ast.parse(expr.strip(), mode="eval").body)


def parse_header(text: str) -> tuple[dict[str, int], tuple[int, ...], tuple[int, ...]]:
    """(constants by name, head sizes, block sizes) from the text of launch_config.h."""
    constants = {name: _eval_int(expr) for name, expr in re.findall(r"constexpr int (k\w+) = ([^;]+);", text)}

    def size_list(what: str) -> tuple[int, ...]:
        match = re.search(rf"#define BENCHCTL_FOR_EACH_{what}\(X\)(.*)", text)
        if match is None:
            raise ValueError(f"{HEADER_PATH.name} has no BENCHCTL_FOR_EACH_{what}")
        return tuple(int(n) for n in re.findall(r"X\((\d+)\)", match.group(1)))

    return constants, size_list("HEAD_SIZE"), size_list("BLOCK_SIZE")


_CONSTANTS, HEAD_SIZES, BLOCK_SIZES = parse_header(HEADER_PATH.read_text())
WARP_SIZE: int = _CONSTANTS["kWarpSize"]
ATTENTION_THREADS: int = _CONSTANTS["kAttentionThreads"]
PARTITION_SIZE: int = _CONSTANTS["kPartitionSize"]
V1_MAX_CONTEXT_LEN: int = _CONSTANTS["kV1MaxContextLen"]
V1_MIN_PARALLELISM: int = _CONSTANTS["kV1MinParallelism"]
ELEMENTWISE_THREADS: int = _CONSTANTS["kElementwiseThreads"]
DEFAULT_MAX_DYNAMIC_SMEM_BYTES: int = _CONSTANTS["kDefaultMaxDynamicSmemBytes"]
NUM_WARPS: int = ATTENTION_THREADS // WARP_SIZE


def ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b


def thread_group_size(block_size: int) -> int:
    """Threads that cooperate on one key in the CUDA kernel: a warp covers one KV-cache block per iteration."""
    return 1 if block_size >= WARP_SIZE else WARP_SIZE // block_size


def num_partitions(context_len: int, partition_size: int = PARTITION_SIZE) -> int:
    return ceil_div(context_len, partition_size)


def choose_version(num_seqs: int, num_heads: int, max_context_len: int) -> int:
    """1 (single pass) or 2 (partitioned + reduce): v2 for long contexts when the batch alone cannot fill the GPU."""
    if max_context_len > V1_MAX_CONTEXT_LEN:
        return 2
    if num_partitions(max_context_len) == 1 or num_seqs * num_heads > V1_MIN_PARALLELISM:
        return 1
    return 2


def smem_bytes(version: int, head_size: int, block_size: int, max_context_len: int) -> int:
    """Dynamic shared memory of the CUDA v1/v2 kernel: fp32 logits, reused for the cross-warp output sum."""
    logits_tokens = ceil_div(max_context_len, block_size) * block_size if version == 1 else PARTITION_SIZE
    return 4 * max(logits_tokens, NUM_WARPS * head_size)


def reduce_smem_bytes(max_context_len: int) -> int:
    """Dynamic shared memory of the CUDA v2 reduce kernel: per-partition max logit and rescaled exp-sum."""
    return 2 * 4 * num_partitions(max_context_len)


def grid(version: int, num_seqs: int, num_heads: int, max_context_len: int) -> tuple[int, int, int]:
    """CUDA grid (x, y, z) = (heads, seqs, partitions) of the attention kernel; the reduce kernel uses z = 1."""
    return (num_heads, num_seqs, 1 if version == 1 else num_partitions(max_context_len))


def check_supported(head_size: int, block_size: int) -> None:
    """ValueError naming the instantiated sizes when the CUDA kernels were not built for this shape."""
    if head_size not in HEAD_SIZES:
        raise ValueError(f"CUDA paged attention is instantiated for head sizes {HEAD_SIZES}, not {head_size}")
    if block_size not in BLOCK_SIZES:
        raise ValueError(f"CUDA paged attention is instantiated for block sizes {BLOCK_SIZES}, not {block_size}")


@dataclass(frozen=True, slots=True)
class PagedAttentionLaunch:
    """Everything the CUDA launcher decides for one decode batch."""

    version: int
    grid: tuple[int, int, int]
    threads: int
    smem_bytes: int
    reduce_smem_bytes: int  # 0 for v1
    num_partitions: int  # 1 for v1


def plan(
    num_seqs: int, num_heads: int, head_size: int, block_size: int, max_context_len: int, version: int | None = None
) -> PagedAttentionLaunch:
    """The launch the C++ host code makes (version None = the heuristic)."""
    check_supported(head_size, block_size)
    if version is None:
        version = choose_version(num_seqs, num_heads, max_context_len)
    if version not in (1, 2):
        raise ValueError(f"paged attention version must be 1 or 2, not {version}")
    return PagedAttentionLaunch(
        version=version,
        grid=grid(version, num_seqs, num_heads, max_context_len),
        threads=ATTENTION_THREADS,
        smem_bytes=smem_bytes(version, head_size, block_size, max_context_len),
        reduce_smem_bytes=reduce_smem_bytes(max_context_len) if version == 2 else 0,
        num_partitions=1 if version == 1 else num_partitions(max_context_len),
    )
