"""The backend contract: what an engine adapter declares, and the registry that finds them.

A backend is data, not code the harness runs: the harness reads its capabilities and requirements
and starts `worker` ("module:Class") in a separate process. Backends are found through the entry-point group
`benchctl.backends` (pyproject.toml lists the built-in ones: the one list), each pointing at a `Backend` instance.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from benchctl import engines, envinfo

ENTRY_POINT_GROUP = "benchctl.backends"


class BackendError(ValueError):
    """A backend the user chose is unknown or cannot run here (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    offline: bool = True  # runs a workload inside the worker (no server)
    serving: bool = False  # has an OpenAI-compatible server benchctl can launch
    per_token_times: bool = False  # records a time for every output token (ITL/TPOT measurable)
    arrivals: bool = False  # accepts requests over time (finite --request-rate, --max-concurrency)
    batch_size: bool = False  # honours --batch-size
    needs_cuda: bool = False
    engine_stats: bool = False  # reports KV-cache and step-time statistics


def server_backend(
    name: str,
    description: str,
    server: ServerSpec | None,
    *,
    needs_cuda: bool = False,
    requirements: tuple[str, ...] = (),
    **fields,
) -> Backend:
    """A backend that is only an OpenAI-compatible server (launched from `server`, or attached with --base-url):
    no worker, no offline mode; the load client is the whole adapter."""
    caps = Capabilities(offline=False, serving=True, per_token_times=True, arrivals=True, needs_cuda=needs_cuda)
    return Backend(
        name=name,
        description=description,
        worker="",
        requirements=(*requirements, "aiohttp"),
        extra="serving",
        capabilities=caps,
        server=server,
        **fields,
    )


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How serving mode launches the engine's own OpenAI-compatible server (benchctl.serving.launch).

    `argv` is a template; placeholders: {python} (Backend.python()), {model_dir} (HF folder), {gguf_path},
    {model_name} (the name clients send), {host}, {port}, {max_model_len}. Each --engine-arg KEY=VALUE not
    consumed by a placeholder is appended as `engine_arg` formatted with {key}, {flag} (key with dashes), {value}.
    """

    argv: tuple[str, ...]
    engine_arg: tuple[str, ...] = ("--{flag}", "{value}")
    engine_bool: tuple[str, str] | None = None  # (on, off) for true/false values, e.g. ("--{flag}", "--no-{flag}")
    env_args: dict[str, str] = field(default_factory=dict)  # --engine-arg keys passed as environment variables
    request_args: tuple[str, ...] = ()  # --engine-arg keys that are per-request settings (the load client's job)
    api_prefix: str = "/v1"  # OpenAI routes live under it
    health_route: str = "/health"
    metrics_route: str | None = "/metrics"  # Prometheus text format; None when the server has none
    startup_timeout_s: float = 600.0
    # engine args -> the engine args to launch with (the user's plus the backend's defaults for this host)
    default_args: Callable[[dict[str, str]], dict[str, str]] | None = None


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    description: str
    worker: str  # "module:Class" imported inside the worker process only
    requirements: tuple[str, ...] = ()  # import names the worker needs
    extra: str | None = None  # `pip install benchctl[extra]` provides the requirements
    capabilities: Capabilities = field(default_factory=Capabilities)
    engine_args: dict[str, str] = field(default_factory=dict)  # accepted --engine-arg keys -> help
    server: ServerSpec | None = None  # serving mode: how to launch the engine's OpenAI server
    # engine args -> None, or raises BackendError with one line: what this machine cannot run (checked before
    # a run folder exists, so a bad choice is exit code 2, not a failed run)
    check_args: Callable[[dict[str, str]], None] | None = None
    # A benchctl.engines environment (`benchctl engines install NAME`) whose interpreter runs the worker
    # when the requirements are not importable in this one.
    managed_env: str | None = None
    executables: tuple[str, ...] = ()  # programs the server launch needs on PATH (e.g. text-generation-launcher)
    install_hint: str | None = None  # how to get the engine, shown when it is missing

    def unavailable_reason(self) -> str | None:
        """None when this backend can run on this machine, else one line saying why not."""
        hint = f" ({self.install_hint})" if self.install_hint else ""
        if self.capabilities.needs_cuda and not envinfo.cuda_present():
            return f"needs an NVIDIA GPU with CUDA; none found on this machine{hint}"
        absent = [exe for exe in self.executables if shutil.which(exe) is None]
        if absent:
            return f"{', '.join(absent)} not found on PATH{hint}"
        missing = self._missing_here()
        if missing and self.managed_env:
            if self._managed_python() is None:
                return f"not installed: run `benchctl engines install {self.managed_env}`"
        elif missing:
            if not hint and self.extra:
                hint = f" (pip install 'benchctl[{self.extra}]')"
            return f"missing Python packages: {', '.join(missing)}{hint}"
        return None

    def python(self) -> str:
        """Interpreter that runs the worker: this one if it has the engine, else the managed environment's."""
        if self.managed_env and self._missing_here():
            return self._managed_python() or sys.executable
        return sys.executable

    def _missing_here(self) -> list[str]:
        # find_spec, not import: the harness never imports an engine.
        return [m for m in self.requirements if importlib.util.find_spec(m) is None]

    def _managed_python(self) -> str | None:
        env = engines.installed(self.managed_env) if self.managed_env else None
        return str(env.python) if env else None


def _targets() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    # BENCHCTL_BACKENDS="name=module:attr,..." adds backends without packaging them (local plugins,
    # and it travels with the environment to Ray workers).
    for item in filter(None, os.environ.get("BENCHCTL_BACKENDS", "").split(",")):
        name, sep, target = item.partition("=")
        if sep and name.strip() and ":" in target:
            found[name.strip()] = target.strip()
    if not found:  # the built-in backends are named in benchctl's package metadata, nowhere else
        raise BackendError(
            "no backends registered: benchctl's package metadata is missing; install it "
            "(pip install -e .) instead of running from a bare source tree"
        )
    return found


def _load(target: str) -> Backend:
    module_name, _, attr = target.partition(":")
    backend = getattr(importlib.import_module(module_name), attr)
    if not isinstance(backend, Backend):
        raise TypeError(f"entry point {target} is not a benchctl Backend")
    return backend


def list_backends() -> dict[str, Backend | str]:
    """Every registered backend; one that fails to import appears as the error text instead."""
    found: dict[str, Backend | str] = {}
    for name, target in sorted(_targets().items()):
        try:
            found[name] = _load(target)
        except Exception as e:  # a broken third-party plugin must not hide the others
            found[name] = f"cannot load {target}: {type(e).__name__}: {e}"
    return found


def get_backend(name: str) -> Backend:
    targets = _targets()
    if name not in targets:
        raise BackendError(f"unknown backend {name!r}; available: {', '.join(sorted(targets))}")
    return _load(targets[name])
