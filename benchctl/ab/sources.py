"""Where a side's engine code comes from: this installation, another checkout (a folder), or a git revision that
is checked out into a temporary worktree for the job and removed after it.

A side with a source runs its whole `benchctl run` from that tree (PYTHONPATH and working directory), so its
worker imports that tree's `backends` and `reference_engine`: "this commit's engine against its parent's" is one
command. The harness of that tree measures it too; the gate checks that both sides ran the same workload.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchctl.regress import GateInputError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
NATIVE_SUFFIXES = (".cpp", ".cu", ".cuh", ".h", ".c")


@dataclass(slots=True)
class Source:
    text: str  # what the user gave
    root: Path | None = None  # a checkout folder (given, or the worktree once it exists)
    revision: str | None = None  # a full commit id to check out
    repo: Path | None = None  # the repository the revision belongs to

    def describe(self) -> str:
        if self.revision:
            return f"git revision {self.text} ({self.revision[:12]}) of {self.repo}, in a temporary worktree"
        return f"checkout {self.root}"


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)


def _repository() -> Path | None:
    """The git repository a revision is looked up in: the working directory's, else benchctl's own."""
    for where in (Path.cwd(), PACKAGE_ROOT):
        try:
            top = _git(where, "rev-parse", "--show-toplevel")
        except (OSError, subprocess.SubprocessError):
            return None  # no git on this machine
        if top.returncode == 0 and top.stdout.strip():
            return Path(top.stdout.strip())
    return None


def resolve_source(text: str, flag: str) -> Source:
    """A folder that holds benchctl's code, or a git revision that resolves; anything else is one GateInputError."""
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "benchctl" / "__init__.py").is_file():
            raise GateInputError(f"{flag} {text}: the folder is not a checkout of benchctl (no benchctl/__init__.py)")
        return Source(text, root=path.resolve())
    repo = _repository()
    if repo is None:
        raise GateInputError(f"{flag} {text!r}: not a folder, and no git repository here to find it as a revision")
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{text}^{{commit}}")
    if found.returncode != 0 or not found.stdout.strip():
        raise GateInputError(f"{flag} {text!r}: neither a folder nor a git revision of {repo}")
    return Source(text, revision=found.stdout.strip(), repo=repo)


class Worktrees:
    """Checks out revision sources for the job's length; every worktree is removed on exit, whatever happened."""

    def __init__(self) -> None:
        self.made: list[tuple[Path, Path]] = []  # (repo, worktree)
        self.tmp: Path | None = None

    def __enter__(self) -> Worktrees:
        return self

    def materialize(self, source: Source, side: str) -> Path:
        if source.root is not None:
            return source.root
        assert source.revision and source.repo
        if self.tmp is None:
            self.tmp = Path(tempfile.mkdtemp(prefix="benchctl-ab-"))
        path = self.tmp / f"{side}-{source.revision[:12]}"
        done = _git(source.repo, "worktree", "add", "--detach", "--quiet", str(path), source.revision)
        if done.returncode != 0:
            raise GateInputError(f"cannot check out {source.text} into a worktree: {' '.join(done.stderr.split())}")
        self.made.append((source.repo, path))
        source.root = path
        return path

    def __exit__(self, *exc: object) -> None:
        for repo, path in self.made:
            if _git(repo, "worktree", "remove", "--force", str(path)).returncode != 0:
                shutil.rmtree(path, ignore_errors=True)
                _git(repo, "worktree", "prune")
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def side_environment(root: Path | None) -> dict[str, str]:
    """The environment of a side's `benchctl run`: with a source, that tree first on the import path, and a torch
    extension cache of its own keyed on its native sources (sides whose kernels differ would otherwise rebuild
    each other's build on every round)."""
    env = dict(os.environ)
    if root is None:
        return env
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    if "TORCH_EXTENSIONS_DIR" not in os.environ:
        digest = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.suffix in NATIVE_SUFFIXES and ".git" not in p.parts and p.is_file():
                digest.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch_extensions"
        env["TORCH_EXTENSIONS_DIR"] = str(base / f"benchctl-ab-{digest.hexdigest()[:16]}")
    return env
