"""Dummy models: a real architecture with random weights (`--model dummy:NAME`, `dummy:PATH/config.json`).

For speed measurements where weights cannot travel (a GPU machine without network, a CI runner). The configs of
the shapes people benchmark ship in benchctl/dummy_configs (each naming its source); `dummy:NAME@SEED` picks the
seed (default 0). The model folder made in the cache holds config.json, the bundled model's tokenizer (SmolLM2's,
cut to the config's vocabulary when that is smaller) and a marker, benchctl_dummy.json, with the seed: engines that
see the marker initialise seeded random weights from the config in the worker (reference, hf), vLLM loads with
load_format=dummy. Nothing of the weights is allocated here: their size comes from the config.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

PREFIX = "dummy:"
MARKER = "benchctl_dummy.json"  # reference_engine.model.llama.RANDOM_WEIGHTS_MARKER reads the same name
CONFIG_DIR = Path(__file__).parent / "dummy_configs"
TOKENIZER_DIR = CONFIG_DIR / "tokenizer"  # SmolLM2-135M-Instruct's (Apache-2.0), the bundled model's
TOKENIZER_IDS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}  # <|im_start|>, <|im_end|>
WEIGHTS = "random (dummy)"  # what run.json's model section says of the weights
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
MEANINGLESS = "meaningless here: the weights are random (dummy model)"


class DummyError(ValueError):
    """A dummy model the user named cannot be made or run here (a user error: exit code 2). benchctl.models turns
    it into its ModelError; this module imports nothing of benchctl's but envinfo (models imports it)."""


def names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def is_dummy(spec: str) -> bool:
    return spec.startswith(PREFIX)


def load_spec(spec: str) -> tuple[str, dict[str, Any], str, int]:
    """(name, HF config, its source, seed) of `dummy:NAME[@SEED]` or `dummy:PATH/config.json[@SEED]`."""
    body = spec.removeprefix(PREFIX)
    seed = 0
    if (m := re.fullmatch(r"(.+)@(\d+)", body)) is not None:
        body, seed = m.group(1), int(m.group(2))
    shipped = CONFIG_DIR / f"{body}.json"
    if shipped.is_file():
        data = json.loads(shipped.read_text())
        return body, data["config"], data["source"], seed
    path = Path(body).expanduser()
    if path.suffix != ".json" or not path.is_file():
        raise DummyError(f"unknown dummy model {body!r}: not one of {', '.join(names())} and no such config.json")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DummyError(f"{path}: not JSON ({e})") from None
    missing = [
        k
        for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        if k not in config
    ]
    if missing:
        raise DummyError(f"{path}: a dummy model's config.json needs {', '.join(missing)}")
    return path.parent.name or path.stem, config, str(path.resolve()), seed


def parameter_count(config: dict[str, Any]) -> int:
    """Parameters of a Llama-family decoder (Qwen2 adds q/k/v biases), from its config alone."""
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or hidden // heads
    q, kv = heads * head_dim, kv_heads * head_dim
    per_layer = hidden * (q + 2 * kv) + q * hidden + 3 * hidden * inter + 2 * hidden
    if config.get("attention_bias", config.get("model_type") == "qwen2"):
        per_layer += q + 2 * kv
    embeddings = config["vocab_size"] * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return layers * per_layer + embeddings + hidden


def weight_bytes(config: dict[str, Any], dtype: str) -> int:
    return parameter_count(config) * DTYPE_BYTES[dtype]


def model_dir(cache_root: Path, name: str, config: dict[str, Any], seed: int) -> Path:
    key = hashlib.sha256(json.dumps([config, seed], sort_keys=True).encode()).hexdigest()[:12]
    return cache_root / "models" / f"dummy-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}-{key}"


def make_folder(spec: str, cache_root: Path) -> dict[str, Any]:
    """The dummy model's folder under cache_root/models (written once; renamed into place only when complete), and
    what run.json's model section records of it: {hf_dir, weights, seed, config_source, num_parameters}."""
    name, config, source, seed = load_spec(spec)
    target = model_dir(cache_root, name, config, seed)
    if not (target / MARKER).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            write_folder(tmp, config, name, source, seed)
            if not (target / MARKER).is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "hf_dir": target,
        "weights": WEIGHTS,
        "seed": seed,
        "config_source": source,
        "num_parameters": parameter_count(config),
    }


def write_folder(out: Path, config: dict[str, Any], name: str, source: str, seed: int) -> None:
    vocab = config["vocab_size"]
    tokenizer = json.loads(gzip.decompress((TOKENIZER_DIR / "tokenizer.json.gz").read_bytes()))
    if vocab < len(tokenizer["model"]["vocab"]):
        tokenizer = cut_tokenizer(tokenizer, vocab)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    shutil.copy(TOKENIZER_DIR / "tokenizer_config.json", out / "tokenizer_config.json")
    (out / "config.json").write_text(json.dumps({**config, **TOKENIZER_IDS}, indent=2))
    (out / "generation_config.json").write_text(json.dumps(TOKENIZER_IDS, indent=2))
    (out / MARKER).write_text(
        json.dumps(
            {
                "name": name,
                "config_source": source,
                "seed": seed,
                "num_parameters": parameter_count(config),
                "init": "normal(0, initializer_range) matrices, norms 1",
            },
            indent=2,
        )
    )


def cut_tokenizer(tokenizer: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """The BPE tokenizer restricted to ids < vocab_size: SmolLM2's merges each make a token with a higher id than
    its parts, so dropping the higher ids and the merges that make them leaves a consistent tokenizer (text then
    splits into more, shorter tokens; every id fits the model's embedding)."""
    model = tokenizer["model"]
    vocab = {tok: i for tok, i in model["vocab"].items() if i < vocab_size}
    merges = []
    for merge in model["merges"]:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        if a + b in vocab and a in vocab and b in vocab:
            merges.append(merge)
    added = [t for t in tokenizer.get("added_tokens", []) if t["id"] < vocab_size]
    return {**tokenizer, "added_tokens": added, "model": {**model, "vocab": vocab, "merges": merges}}


def read_marker(hf_dir: str | Path) -> dict[str, Any] | None:
    """The marker of a dummy model folder, or None for real weights."""
    try:
        return json.loads((Path(hf_dir) / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_dummy_run(run: dict[str, Any]) -> bool:
    """True for a run on random weights: its output-dependent checks (greedy identity, acceptance of drafts) are
    MEANINGLESS."""
    return ((run.get("config") or {}).get("model") or {}).get("weights") == WEIGHTS


def _gb(num_bytes: float) -> str:
    return f"{num_bytes / 1e9:.1f} GB"


def check_fits(model: Any, dtype: str, device: str, memory_bytes: int) -> None:
    """Refuse, in one line, a dummy model whose weights alone exceed the memory they would be made in."""
    config = json.loads((model.hf_dir / "config.json").read_text())
    needed = weight_bytes(config, dtype)
    if needed > memory_bytes:
        where = "this machine" if device == "cpu" else "this GPU"
        raise DummyError(
            f"{model.name} needs {_gb(needed)} of weights in {dtype}, {where} has {_gb(memory_bytes)} "
            f"({parameter_count(config) / 1e9:.2f}B parameters)"
        )


NO_DUMMY_BACKENDS = {"exllamav2": "exllamav2 reads EXL2 or fp16 safetensors weights"}  # no random writer for it


def preflight(model: Any, backend: str, engine_args: dict[str, str]) -> Any:
    """Before a run starts: a dummy model (a benchctl.models.ResolvedModel whose folder has the marker) must suit the
    backend, and fit where its weights will be made (the GPU's memory on a CUDA machine, else RAM) in the dtype the
    run asks for (default_dtype; llama.cpp's F16). Returns the model to run: for llama.cpp, with its random GGUF
    (benchctl.dummy_gguf, written once). Real models pass as they are."""
    marker = read_marker(model.hf_dir)
    if marker is None:
        return model
    if backend in NO_DUMMY_BACKENDS:
        raise DummyError(
            f"{model.name}: {NO_DUMMY_BACKENDS[backend]} and a dummy model has none; use --backend "
            f"reference, hf, vllm or llamacpp"
        )
    import psutil

    from benchctl.envinfo import cuda_present, gpus

    cuda = cuda_present()
    gpu_bytes = gpu_memory_bytes(gpus()) if cuda else None
    dtype = "float16" if backend == "llamacpp" else default_dtype(engine_args, cuda)
    check_fits(model, dtype, "cuda" if gpu_bytes else "cpu", gpu_bytes or psutil.virtual_memory().total)
    if backend != "llamacpp":
        return model
    from benchctl import dummy_gguf

    reason = dummy_gguf.unsupported_reason(json.loads((model.hf_dir / "config.json").read_text()))
    if reason is not None:
        raise DummyError(
            f"{model.name}: the random GGUF for llama.cpp covers plain Llama configs, not {reason}; use "
            f"--backend reference, hf or vllm"
        )
    return dataclasses.replace(model, gguf_path=dummy_gguf.write_random_gguf(model.hf_dir, int(marker["seed"])))


def default_dtype(engine_args: dict[str, str], cuda: bool) -> str:
    """The dtype an engine makes weights in: the dtype engine arg, else float32 on CPU and bfloat16 on CUDA (the
    reference engine's auto; hf's default)."""
    dtype = engine_args.get("dtype", "auto")
    if dtype in DTYPE_BYTES:
        return dtype
    return "bfloat16" if cuda else "float32"


def gpu_memory_bytes(gpus: list[dict[str, Any]]) -> int | None:
    """The first GPU's memory from envinfo.gpus (nvidia-smi's `143771 MiB`)."""
    for gpu in gpus:
        m = re.match(r"\s*(\d+)\s*MiB", str(gpu.get("memory", "")))
        if m:
            return int(m.group(1)) * 2**20
    return None
