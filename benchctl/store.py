"""results/<run-id>/: run.json (atomic), requests.jsonl (appended live), requests.parquet (at the end).

run.json's schema and its validating reader live in benchctl.manifest; load_run is how every command reads a run.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from benchctl import manifest
from benchctl.manifest import ManifestError, RunNotFound

__all__ = [
    "ManifestError",
    "RunNotFound",
    "SCHEMA_VERSION",
    "clean_floats",
    "fsync_dir",
    "load_run",
    "load_run_index",
    "new_run_dir",
    "resolve_run",
    "write_json_atomic",
    "write_parquet",
]

SCHEMA_VERSION = 1  # of sweep.json; run.json's is benchctl.manifest.SCHEMA_VERSION


def new_run_dir(output_dir: Path, backend: str) -> Path:
    """Create a fresh run folder; the random suffix and exclusive mkdir keep concurrent runs apart."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    while True:
        path = output_dir / f"{stamp}-{backend}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def write_json_atomic(path: Path, data: Any) -> None:
    """The whole new file or the whole old one, even across a power cut: the data and then the rename are fsynced."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=_json_default, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename (or a new file) in `path` durable: on Linux the directory entry needs its own fsync."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def clean_floats(value: Any) -> Any:
    """NaN/inf -> None so run.json stays strict JSON."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: clean_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_floats(v) for v in value]
    return value


def write_parquet(rows: list[dict], path: Path) -> None:
    """Atomically, like run.json: a reader never sees half a file."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for column in ("extra",):  # nested dicts vary per engine: keep them as JSON text
        if column in frame:
            frame[column] = frame[column].map(lambda v: json.dumps(v) if v is not None else None)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def resolve_run(ref: str, output_dir: Path) -> Path:
    """A run folder path, or a run id (or unique id prefix) inside output_dir."""
    path = Path(ref)
    if (path / "run.json").is_file():
        return path
    if path.is_absolute() or len(path.parts) != 1:  # a path, not an id: nothing to look up
        raise RunNotFound(f"no run at {ref!r} (no run.json there)")
    candidates = sorted(p for p in output_dir.glob(f"{ref}*") if (p / "run.json").is_file())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise RunNotFound(f"no run {ref!r} (no run.json there, nor in {output_dir})")
    raise RunNotFound(f"run id {ref!r} is ambiguous: {', '.join(p.name for p in candidates[:5])}")


def load_run(path: Path) -> dict[str, Any]:
    """path/run.json, validated (benchctl.manifest): RunNotFound or ManifestError, one line, if it is not a run."""
    return manifest.load(path)


def load_run_index(path: Path) -> dict[str, Any]:
    """A sweep folder's sweep.json."""
    try:
        index = json.loads((path / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunNotFound(f"{path}: no readable sweep.json ({e})") from None
    if not isinstance(index, dict):
        raise ManifestError(f"{path}/sweep.json is not a sweep index (expected a JSON object)")
    return index
