"""Run folders for the report tests, written from scratch: run.json, requests.jsonl, steps.jsonl, a model folder.

Numbers are chosen so the tests can check them by hand: a 2-layer model with 2 KV heads of dim 4 (fp32)
has 2 × 2 × 2 × 4 × 4 = 128 KV bytes per token.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

MODEL_CONFIG = {
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 4,
    "hidden_size": 16,
    "vocab_size": 64,
    "tie_word_embeddings": True,
    "dtype": "float32",
}
KV_BYTES_PER_TOKEN = 2 * 2 * 2 * 4 * 4
MODEL_TENSORS = {"embed.weight": [64, 16], "layers.0.w": [16, 48], "layers.1.w": [16, 48]}  # 2560 parameters


def write_safetensors(path: Path, tensors: dict[str, list[int]]) -> None:
    """A valid fp32 safetensors file of zeros (header: u64 length + JSON; then the raw data)."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))


def make_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(MODEL_CONFIG))
    write_safetensors(folder / "model.safetensors", MODEL_TENSORS)
    return folder


def make_records(
    n: int,
    rate: float | None,
    output_tokens: int = 8,
    decode_gap_s: float = 0.05,
    prefill_s: float = 0.2,
    max_concurrency: int | None = None,
) -> list[dict]:
    """Requests arriving every 1/rate s (all at 0 when rate is None), one token every decode_gap_s."""
    records, free_at = [], []
    for i in range(n):
        arrival = 0.0 if rate is None else i / rate
        start = arrival
        if max_concurrency and len(free_at) >= max_concurrency:
            start = max(arrival, sorted(free_at)[-max_concurrency])
        first = start + prefill_s + 0.01 * i
        out = output_tokens + i % 3
        times = [first + sum(decode_gap_s * (1 + 0.1 * ((i + j) % 5)) for j in range(k)) for k in range(out)]
        free_at.append(times[-1])
        records.append(
            {
                "request_id": f"req-{i:05d}",
                "prompt_tokens": 20 + 2 * i,
                "expected_output_tokens": out,
                "output_tokens": out,
                "arrival_s": arrival,
                "start_s": start,
                "first_token_s": first,
                "finish_s": times[-1],
                "token_times_s": times,
                "chunk_tokens": None,
                "error": None,
                "output_tokens_source": "engine",
                "extra": {},
            }
        )
    return records


def make_steps(records: list[dict], step_s: float = 0.05) -> list[dict]:
    """One step every step_s while any request is in flight; block size 4, 64 blocks."""
    end = max(r["finish_s"] for r in records)
    steps, t, preemptions = [], step_s, 0
    while t <= end + step_s:
        running = [r for r in records if r["start_s"] <= t < r["finish_s"] + step_s]
        prefill = [r for r in running if r["first_token_s"] >= t]
        decode = [r for r in running if r["first_token_s"] < t]
        context = [r["prompt_tokens"] + sum(1 for x in r["token_times_s"] if x < t) for r in running]
        blocks = sum(-(-c // 4) for c in context)
        preemptions += 1 if len(steps) == 10 else 0
        steps.append(
            {
                "t_s": round(t, 6),
                "num_running": len(running),
                "num_waiting": sum(1 for r in records if r["arrival_s"] <= t < r["start_s"]),
                "num_batched_tokens": sum(r["prompt_tokens"] for r in prefill) + len(decode),
                "num_prefill_seqs": len(prefill),
                "num_decode_seqs": len(decode),
                "kv_blocks_used": blocks,
                "kv_blocks_total": 64,
                "kv_slots_filled": sum(context),
                "kv_slots_allocated": 4 * blocks,
                "preemptions": preemptions,
                "schedule_s": 0.001,
                "forward_s": 0.03,
                "sample_s": 0.005,
                "detokenize_s": 0.002,
            }
        )
        t += step_s
    return steps


def make_run(
    root: Path,
    name: str,
    *,
    backend: str = "reference",
    rate: float | None = None,
    n: int = 6,
    steps: bool = True,
    model_dir: Path | None = None,
    slos_ms: dict | None = None,
    engine_args: dict | None = None,
    cpu: str = "Test CPU",
    **record_kw,
) -> Path:
    """A complete run folder; its summary is left empty on purpose (the report must compute its own)."""
    from benchctl.metrics import distribution

    run_dir = root / name
    run_dir.mkdir(parents=True)
    records = make_records(n, rate, **record_kw)
    run = {
        "schema_version": 1,
        "run_id": name,
        "status": "completed",
        "label": None,
        "config": {
            "backend": backend,
            "model": {"name": "tiny", "hf_dir": str(model_dir) if model_dir else None},
            "mode": "offline",
            "batch_size": None,
            "engine_args": engine_args or {},
            "slos_ms": slos_ms or {},
            "workload_options": {
                "dataset": "random",
                "num_prompts": n,
                "seed": 0,
                "request_rate": rate,
                "random_input_len": 25,
                "random_output_len": 9,
                "max_concurrency": None,
            },
        },
        "workload": {
            "dataset": "random",
            "num_requests": n,
            "seed": 0,
            "input_tokens": distribution(r["prompt_tokens"] for r in records),
            "output_tokens": distribution(r["expected_output_tokens"] for r in records),
            "schedule": {
                "kind": "all-at-once" if rate is None else "poisson",
                "request_rate": rate,
                "burstiness": 1.0,
                "max_concurrency": record_kw.get("max_concurrency"),
            },
        },
        "environment": {
            "hardware": {"cpu": cpu, "usable_cores": 2, "memory_bytes": 8 * 2**30, "gpus": []},
            "python": "3.11.7",
            "packages": {"torch": "2.13.0+cpu"},
            "git_sha": "abc123",
        },
        "engine": {"engine": backend, "versions": {"torch": "2.13.0+cpu"}, "device": "cpu", "dtype": "float32"},
        "engine_stats": {"kv_waste_pct": 12.5, "peak_kv_blocks_used": 30, "mean_batch_size": 3.5, "preemptions": 1}
        if steps
        else {},
        "summary": {},
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    (run_dir / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if steps:
        (run_dir / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in make_steps(records)))
    return run_dir


def make_hwinfo(cache_dir: Path, cpu: str = "Test CPU", read_gb_s: float = 10.0, gemm_flop_s: float = 5e10) -> dict:
    from benchctl.hwinfo import HWINFO_VERSION

    data = {
        "hwinfo_version": HWINFO_VERSION,
        "measured_at": "2026-01-01T00:00:00Z",
        "threads": 2,
        "hardware": {"cpu": cpu},
        "packages": {"torch": "2.13.0+cpu"},
        "read_bandwidth_gb_s": read_gb_s,
        "copy_bandwidth_gb_s": 8.0,
        "bandwidth_bytes": 1,
        "gemm_fp32_flop_s": gemm_flop_s,
        "gemm_size": 64,
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "hwinfo.json").write_text(json.dumps(data))
    return data
