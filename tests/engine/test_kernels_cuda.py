"""CUDA C++ kernels: launch arithmetic (Python mirror vs the C++ header), nvcc compiles, and the GPU-only check.

Nothing CUDA runs here: the .cu files are compiled for sm_80 and sm_90 with every warning an error (skipped only
when nvcc is absent), the torch binding is syntax-checked against torch's headers, and the numerical comparison
with reference.py is marked `gpu` and runs only where torch.cuda.is_available().
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from reference_engine.kernels import launch

CU_FILES = sorted(p.name for p in launch.CSRC_DIR.glob("*.cu"))
ARCH_FLAGS = {"sm_80": ["-arch=sm_80"], "sm_90": ["-gencode", "arch=compute_90,code=sm_90"]}
WERROR = ["-Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra,-Werror"]
CXX_STD = "c++20"  # what torch.utils.cpp_extension (torch 2.13) builds extensions with
NVCC = shutil.which("nvcc")
CXX = shutil.which("g++") or shutil.which("c++")


# Launch arithmetic.


def test_header_lists_are_parsed() -> None:
    assert launch.HEAD_SIZES == (64, 80, 96, 128, 256)
    assert launch.BLOCK_SIZES == (8, 16, 32)
    assert (launch.ATTENTION_THREADS, launch.PARTITION_SIZE, launch.WARP_SIZE) == (128, 512, 32)
    assert all(launch.PARTITION_SIZE % b == 0 for b in launch.BLOCK_SIZES)


def test_header_constant_expressions_are_evaluated() -> None:
    constants, heads, blocks = launch.parse_header(
        "#define BENCHCTL_FOR_EACH_HEAD_SIZE(X) X(32) X(64)\n#define BENCHCTL_FOR_EACH_BLOCK_SIZE(X) X(16)\n"
        "constexpr int kA = 48 * 1024;\nconstexpr int kB = 7;\n"
    )
    assert constants == {"kA": 49152, "kB": 7} and heads == (32, 64) and blocks == (16,)


def test_thread_groups_cover_one_block_per_warp() -> None:
    assert [launch.thread_group_size(b) for b in launch.BLOCK_SIZES] == [4, 2, 1]
    assert all(b * launch.thread_group_size(b) == launch.WARP_SIZE for b in launch.BLOCK_SIZES)


@pytest.mark.parametrize(
    ("num_seqs", "num_heads", "max_context_len", "version"),
    [
        (1, 32, 512, 1),  # one partition: nothing to split
        (1, 32, 513, 2),  # two partitions, 32 thread blocks: split
        (16, 32, 4096, 2),  # 512 thread blocks do not yet fill the GPU
        (17, 32, 4096, 1),  # 544 do
        (256, 32, 8192, 1),
        (256, 32, 8193, 2),  # v1's logits would exceed 32 KiB of shared memory
    ],
)
def test_version_choice(num_seqs: int, num_heads: int, max_context_len: int, version: int) -> None:
    assert launch.choose_version(num_seqs, num_heads, max_context_len) == version


def test_plans() -> None:
    v1 = launch.plan(num_seqs=4, num_heads=9, head_size=64, block_size=16, max_context_len=300)
    assert v1 == launch.PagedAttentionLaunch(
        version=1, grid=(9, 4, 1), threads=128, smem_bytes=4 * 304, reduce_smem_bytes=0, num_partitions=1
    )
    v2 = launch.plan(num_seqs=2, num_heads=32, head_size=128, block_size=8, max_context_len=1100)
    assert v2 == launch.PagedAttentionLaunch(
        version=2, grid=(32, 2, 3), threads=128, smem_bytes=4 * 512, reduce_smem_bytes=2 * 4 * 3, num_partitions=3
    )
    # A short context with a large head: the cross-warp output sum (4 warps x 256 floats) sizes shared memory.
    assert launch.smem_bytes(1, head_size=256, block_size=32, max_context_len=10) == 4 * 4 * 256


def test_v1_chosen_by_the_heuristic_never_needs_the_shared_memory_opt_in() -> None:
    worst = max(
        launch.smem_bytes(1, h, b, launch.V1_MAX_CONTEXT_LEN) for h in launch.HEAD_SIZES for b in launch.BLOCK_SIZES
    )
    assert worst <= launch.DEFAULT_MAX_DYNAMIC_SMEM_BYTES


def test_unsupported_sizes_name_the_instantiated_ones() -> None:
    with pytest.raises(ValueError, match=r"head sizes \(64, 80, 96, 128, 256\), not 72"):
        launch.plan(1, 8, 72, 16, 100)
    with pytest.raises(ValueError, match=r"block sizes \(8, 16, 32\), not 64"):
        launch.plan(1, 8, 64, 64, 100)


_DUMP_PROGRAM = r"""
#include <cstdio>
#include <initializer_list>
#include "launch_config.h"
using namespace benchctl;
int main() {
  std::printf("{\"head_sizes\": [");
  bool first = true;
  for (int h = 1; h <= 512; ++h) {
    if (is_instantiated_head_size(h)) { std::printf(first ? "%d" : ", %d", h); first = false; }
  }
  std::printf("], \"block_sizes\": [");
  first = true;
  for (int b = 1; b <= 512; ++b) {
    if (is_instantiated_block_size(b)) { std::printf(first ? "%d" : ", %d", b); first = false; }
  }
  std::printf("], \"rows\": [");
  const int seqs[] = {1, 3, 16, 17, 64, 300};
  const int heads[] = {8, 9, 32};
  const int lens[] = {1, 7, 8, 9, 255, 512, 513, 1024, 1100, 4096, 8192, 8193, 32768};
  first = true;
  for (int s : seqs) for (int h : heads) for (int n : lens) for (int d : {64, 80, 256}) for (int b : {8, 16, 32}) {
    const int v = choose_paged_attention_version(s, h, n);
    const Dim3 g = paged_attention_grid(v, s, h, n);
    std::printf("%s[%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d]", first ? "" : ", ", s, h, n, d, b, v,
                g.x, g.y, g.z, paged_attention_smem_bytes(v, d, b, n), paged_attention_smem_bytes(3 - v, d, b, n),
                paged_attention_reduce_smem_bytes(n), num_partitions(n));
    first = false;
  }
  std::printf("]}\n");
}
"""


@pytest.mark.skipif(CXX is None, reason="no C++ compiler")
def test_python_mirror_matches_the_header_compiled(tmp_path: Path) -> None:
    """The C++ host code and launch.py compute the same versions, grids and shared-memory sizes."""
    source = tmp_path / "dump.cpp"
    source.write_text(_DUMP_PROGRAM)
    binary = tmp_path / "dump"
    cmd = [CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{launch.CSRC_DIR}", str(source), "-o", str(binary)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    dump = json.loads(subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout)
    assert tuple(dump["head_sizes"]) == launch.HEAD_SIZES
    assert tuple(dump["block_sizes"]) == launch.BLOCK_SIZES
    assert len(dump["rows"]) == 6 * 3 * 13 * 3 * 3
    for s, h, n, d, b, version, gx, gy, gz, smem, other_smem, reduce_smem, parts in dump["rows"]:
        assert version == launch.choose_version(s, h, n)
        assert (gx, gy, gz) == launch.grid(version, s, h, n)
        assert smem == launch.smem_bytes(version, d, b, n)
        assert other_smem == launch.smem_bytes(3 - version, d, b, n)
        assert reduce_smem == launch.reduce_smem_bytes(n)
        assert parts == launch.num_partitions(n)


# Compilation.


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", list(ARCH_FLAGS))
@pytest.mark.parametrize("cu_file", CU_FILES)
def test_cu_file_compiles_without_warnings(cu_file: str, arch: str, tmp_path: Path) -> None:
    cmd = [NVCC, f"-std={CXX_STD}", "-O3", *ARCH_FLAGS[arch], *WERROR, f"-I{launch.CSRC_DIR}"]
    cmd += ["-c", str(launch.CSRC_DIR / cu_file), "-o", str(tmp_path / "out.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert (tmp_path / "out.o").stat().st_size > 0


def test_all_kernel_sources_are_compiled_by_the_tests_and_the_extension() -> None:
    from reference_engine.kernels import cuda_ops

    assert set(CU_FILES) == set(cuda_ops.CUDA_SOURCES)
    assert (launch.CSRC_DIR / cuda_ops.BINDING_SOURCE).exists()


def _cuda_include_dir() -> Path | None:
    candidates = [Path(NVCC).resolve().parent.parent / "include"] if NVCC else []
    candidates.append(Path("/usr/local/cuda/include"))
    return next((p for p in candidates if (p / "cuda_runtime_api.h").exists()), None)


@pytest.mark.skipif(CXX is None or _cuda_include_dir() is None, reason="needs a C++ compiler and CUDA headers")
def test_torch_binding_compiles_against_torch_headers(tmp_path: Path) -> None:
    """torch_bindings.cpp is only built on CUDA machines; here it is syntax-checked with warnings as errors.

    CPU wheels of torch lack one generated header of c10/cuda (cuda_cmake_macros.h); an empty stand-in is enough.
    """
    from torch.utils.cpp_extension import include_paths

    stub = tmp_path / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    stub.parent.mkdir(parents=True)
    stub.write_text("#pragma once\n")
    system_includes = [str(tmp_path), *include_paths(), str(_cuda_include_dir()), sysconfig.get_paths()["include"]]
    cmd = [
        CXX,
        f"-std={CXX_STD}",
        "-fsyntax-only",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-DTORCH_EXTENSION_NAME=benchctl_ops",
    ]
    cmd += [arg for inc in system_includes for arg in ("-isystem", inc)]
    cmd += [f"-I{launch.CSRC_DIR}", str(launch.CSRC_DIR / "torch_bindings.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-6000:]


# Numerics: GPU machines only.

GPU_CASES = [
    # context lens, KV heads, GQA ratio, head dim, block size
    ([1, 16, 17, 700], 2, 4, 128, 16),
    ([1, 8, 9, 5000, 9000], 1, 3, 64, 8),
    ([1, 32, 33, 1025], 4, 1, 80, 32),
    ([3, 96, 1500], 2, 2, 256, 16),
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: f"d{c[3]}-b{c[4]}-gqa{c[2]}")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_paged_attention_matches_reference(backend: str, case: tuple, dtype: torch.dtype) -> None:
    from reference_engine.kernels import load_ops, reference
    from reference_engine.kernels.testing import TOLERANCES, random_paged_decode_case

    ops = load_ops(backend)
    lens, kv, ratio, dim, block = case
    c = random_paged_decode_case(
        lens, num_kv_heads=kv, queries_per_kv=ratio, head_dim=dim, block_size=block, dtype=dtype, device="cuda"
    )
    args = (c.query, c.k_cache, c.v_cache, c.block_tables, c.context_lens, c.scale)
    expected = reference.paged_decode_attention(*args)
    tol = TOLERANCES[dtype]
    for version in (1, 2):
        out = ops.paged_decode_attention(*args, version=version)
        torch.testing.assert_close(out, expected, atol=tol, rtol=tol, msg=f"version {version}")
    torch.testing.assert_close(ops.paged_decode_attention(*args), expected, atol=tol, rtol=tol)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_cache_write_and_fused_ops_match_reference(backend: str, dtype: torch.dtype) -> None:
    from reference_engine.kernels import load_ops, reference
    from reference_engine.kernels.testing import TOLERANCES

    ops = load_ops(backend)
    dev = "cuda"
    k_cache = torch.randn(6, 16, 2, 128, device=dev).to(dtype)
    v_cache = torch.randn_like(k_cache)
    qkv = torch.randn(9, 12, 128, device=dev).to(dtype)
    key, value = qkv[:, 8:10], qkv[:, 10:]
    slots = torch.randperm(6 * 16, device=dev)[:9]
    slots[[0, 5]] = -1
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    reference.reshape_and_cache(key, value, k_ref, v_ref, slots)
    ops.reshape_and_cache(key, value, k_cache, v_cache, slots)
    assert torch.equal(k_cache, k_ref) and torch.equal(v_cache, v_ref)

    tol = TOLERANCES[dtype]
    x = (3 * torch.randn(4, 7, 2 * 1536, device=dev)).to(dtype)
    torch.testing.assert_close(ops.silu_and_mul(x), reference.silu_and_mul(x), atol=tol, rtol=tol)
    h = (2 * torch.randn(33, 4096, device=dev)).to(dtype)
    w = (1 + 0.1 * torch.randn(4096, device=dev)).to(dtype)
    torch.testing.assert_close(ops.rms_norm(h, w, 1e-5), reference.rms_norm(h, w, 1e-5), atol=tol, rtol=tol)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
