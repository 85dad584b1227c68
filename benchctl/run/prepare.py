"""Everything about a run that can fail because of user input, checked before a run folder exists (exit code 2)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import urllib.error
import urllib.request
from pathlib import Path

from benchctl import dummy, profile
from benchctl.backend import Backend, BackendError, get_backend
from benchctl.models import ResolvedModel, resolve_model
from benchctl.run.config import Progress, RunConfig, RunOptionError
from benchctl.workload import Workload, WorkloadError, build_workload, load_tokenizer


def prepare(config: RunConfig, progress: Progress) -> tuple[Backend, ResolvedModel, Workload]:
    """The backend, the model and the workload of a run whose options all passed their checks."""
    backend = get_backend(config.backend)
    check_backend(backend, config)
    check_output_dir(Path(config.output_dir))
    model = resolve_model(config.model, progress=progress.stage)
    model = dummy.preflight(model, backend.name, config.engine_args)  # random weights: must suit and fit
    workload = build_workload(config.workload, load_tokenizer(str(model.hf_dir)))
    context = _max_model_len(config.engine_args) or model_context_len(model)
    check_context(workload, context)
    return backend, model, workload


def check_output_dir(path: Path) -> None:
    """A folder benchctl can write run folders in, or create: found out now, not after the model has loaded."""
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        problem = "is not a directory" if existing == path else f"cannot be created: {existing} is not a directory"
        raise RunOptionError(f"--output-dir {path} {problem}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunOptionError(f"--output-dir {path}: {existing} is not writable")


def model_context_len(model: ResolvedModel) -> int | None:
    config = json.loads((model.hf_dir / "config.json").read_text())
    return config.get("max_position_embeddings")


def check_backend(backend: Backend, config: RunConfig) -> None:
    profile.check_profile(config.profile)
    if not config.stall_timeout_s > 0:
        raise RunOptionError(f"--stall-timeout must be > 0 seconds (inf: no limit), got {config.stall_timeout_s}")
    if config.profile != "none" and config.mode != "offline":
        raise BackendError("--profile profiles the engine's worker process: it needs --mode offline")
    if config.mode == "serving":
        check_serving(backend, config)
    elif config.mode == "offline":
        check_offline(backend, config)
    else:
        raise BackendError(f"--mode must be offline or serving, got {config.mode!r}")


def check_offline(backend: Backend, config: RunConfig) -> None:
    caps = backend.capabilities
    if config.base_url is not None:
        raise BackendError("--base-url needs --mode serving")
    if not caps.offline:
        raise BackendError(f"backend {backend.name!r} has no offline mode")
    reason = backend.unavailable_reason()
    if reason:
        raise BackendError(f"backend {backend.name!r} is unavailable here: {reason}")
    w = config.workload
    if not caps.arrivals and (not math.isinf(w.request_rate) or w.max_concurrency is not None):
        raise BackendError(
            f"backend {backend.name!r} runs a whole batch at once: it cannot honour "
            f"--request-rate or --max-concurrency in offline mode"
        )
    if not caps.arrivals and w.kind == "conversations":
        raise BackendError(
            f"backend {backend.name!r} runs a whole batch at once: it cannot replay conversations "
            f"(each turn waits for the previous answer) in offline mode; use --mode serving"
        )
    if config.batch_size is not None and (config.batch_size < 1 or not caps.batch_size):
        raise BackendError(
            f"--batch-size must be >= 1 and supported by the backend "
            f"({backend.name!r} {'supports' if caps.batch_size else 'does not support'} it)"
        )
    check_engine_args(backend, config)


def check_serving(backend: Backend, config: RunConfig) -> None:
    if importlib.util.find_spec("aiohttp") is None:
        raise BackendError("serving mode needs aiohttp: pip install 'benchctl[serving]'")
    from benchctl.serving.client import ENDPOINTS  # imports aiohttp, an optional dependency: only now

    if config.endpoint not in ENDPOINTS:
        raise BackendError(f"--endpoint must be one of {', '.join(ENDPOINTS)}, got {config.endpoint!r}")
    if config.batch_size is not None:
        raise BackendError("--batch-size applies to offline mode; a server batches on its own")
    if config.warmup_requests < 0:
        raise BackendError(f"--warmup-requests must be >= 0, got {config.warmup_requests}")
    if config.client_processes < 1:
        raise BackendError(f"--client-processes must be >= 1, got {config.client_processes}")
    cores = os.cpu_count() or 1
    if config.client_processes > cores and not config.force and not config.load_generators:
        raise BackendError(
            f"--client-processes {config.client_processes} is more than this machine's {cores} CPUs: the client "
            f"processes would take turns on the cores and late timestamps would be counted as server latency; "
            f"give --force to run it anyway"
        )
    from benchctl.distributed import check_generators  # Ray is imported only with --load-generators

    check_generators(config.load_generators, config.generator_nodes, config.client_processes)
    if not config.request_timeout_s > 0:
        raise BackendError(f"--request-timeout must be > 0 seconds, got {config.request_timeout_s}")
    if config.base_url is not None:
        urls = [config.base_url, *config.extra_base_urls]
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise BackendError(f"--base-url must start with http:// or https://, got {url!r}")
        if len(set(urls)) < len(urls):
            raise BackendError("--base-url: the same server is given twice")
        if config.engine_args:
            raise BackendError(
                "--engine-arg configures a server benchctl launches; with --base-url the server is already running"
            )
        for url in urls:
            probe_server(url, config.api_key)
        return
    if backend.server is None:
        if backend.capabilities.serving:
            raise BackendError(f"backend {backend.name!r} attaches to a running server: give --base-url URL")
        raise BackendError(
            f"backend {backend.name!r} has no server benchctl can launch; give --base-url of a "
            f"running OpenAI-compatible server, or use --mode offline"
        )
    reason = backend.unavailable_reason()
    if reason:
        raise BackendError(f"backend {backend.name!r} is unavailable here: {reason}")
    check_engine_args(backend, config)
    per_request = sorted(set(config.engine_args) & set(backend.server.request_args))
    if per_request:
        raise BackendError(
            f"--engine-arg {', '.join(per_request)}: in serving mode sampling is set per request by "
            f"the load client (greedy), not by the server"
        )


def probe_server(base_url: str, api_key: str | None) -> None:
    """One GET /v1/models: a wrong URL or key is one clear line, not a run of failed requests."""
    from benchctl.serving.client import api_root

    url = api_root(base_url) + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30):
            pass
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise BackendError(
                f"the server at {base_url} refused the request (HTTP {e.code}); check --api-key"
            ) from None
        # 404 and friends: some servers have no /v1/models; the run will tell.
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BackendError(f"cannot reach an OpenAI-compatible server at {base_url}: {reason}") from None


def check_engine_args(backend: Backend, config: RunConfig) -> None:
    unknown = sorted(set(config.engine_args) - set(backend.engine_args))
    if unknown:
        accepted = ", ".join(sorted(backend.engine_args)) or "none"
        raise BackendError(
            f"backend {backend.name!r} does not accept engine arg(s) {', '.join(unknown)}; accepted: {accepted}"
        )
    if backend.check_args is not None:
        backend.check_args(config.engine_args)


def _max_model_len(engine_args: dict[str, str]) -> int | None:
    if "max_model_len" not in engine_args:
        return None
    try:
        value = int(engine_args["max_model_len"])
    except ValueError:
        value = 0
    if value <= 0:
        raise BackendError(
            f"--engine-arg max_model_len must be a positive integer, got {engine_args['max_model_len']!r}"
        )
    return value


def check_context(workload: Workload, context_len: int | None) -> None:
    if context_len is None:
        return
    for r in workload.requests:
        if r.prompt_len + r.output_len > context_len:
            raise WorkloadError(
                f"request {r.request_id}: prompt ({r.prompt_len}) + output ({r.output_len}) "
                f"tokens exceed the model's context of {context_len}"
            )
