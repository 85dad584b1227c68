"""What a run is asked to do (RunConfig), what it tells its caller (Progress), and how it can end badly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchctl.backend import BackendError
from benchctl.workload import WorkloadOptions


class RunOptionError(BackendError):
    """An option of the run that cannot work as given (exit code 2, before anything loads)."""


class RunFailed(RuntimeError):
    """The engine failed mid-run; finished records are on disk and run.json says `failed`."""

    def __init__(self, message: str, run_dir: Path, log_tail: str = ""):
        super().__init__(message)
        self.run_dir = run_dir
        self.log_tail = log_tail


@dataclass(slots=True)
class RunConfig:
    backend: str = "reference"
    model: str = "smollm2-135m"
    mode: str = "offline"
    workload: WorkloadOptions = field(default_factory=WorkloadOptions)
    batch_size: int | None = None
    engine_args: dict[str, str] = field(default_factory=dict)
    output_dir: Path = Path("results")
    slos_ms: dict[str, float] = field(default_factory=dict)
    label: str | None = None
    # serving mode (benchctl.run.serving): attach to base_url, or launch the backend's server when None
    base_url: str | None = None
    # more servers of a load-balanced deployment: requests go round-robin over base_url and these
    extra_base_urls: list[str] = field(default_factory=list)
    endpoint: str = "completions"  # completions | chat
    api_key: str | None = None
    warmup_requests: int = 0
    request_timeout_s: float = 600.0
    client_processes: int = 1  # load client processes (benchctl.serving.shards when > 1)
    force: bool = False  # --force: more client processes than this machine has CPUs
    load_generators: str | None = None  # ray[:ADDRESS]: the client on a Ray cluster (benchctl.distributed)
    generator_nodes: int = 1  # with load_generators: one load generator per node, on this many nodes
    profile: str = "none"  # none | torch | nsys (benchctl.profile)
    # offline: no event from the worker (record, step, done) for this long fails the run; inf waits for ever.
    # Generous: one event per finished request or engine step, so only a hung engine goes this long without one.
    stall_timeout_s: float = 600.0


class Progress:
    """What the run tells its caller; the CLI draws it with rich, tests ignore it."""

    def stage(self, text: str) -> None: ...
    def start_requests(self, total: int) -> None: ...
    def request_done(self, record: dict) -> None: ...


def parse_engine_args(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BackendError(f"--engine-arg expects KEY=VALUE, got {pair!r}")
        parsed[key.strip()] = value.strip()
    return parsed
