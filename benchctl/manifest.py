"""run.json: the typed manifest of one run, and the one reader that validates it.

benchctl.run.folder.RunFolder is the only writer. Every reader (show, compare, report, regress, sweep) goes through
`load` (via store.load_run), so a corrupt or wrong-typed run.json is one ManifestError line (exit code 2), never a
traceback deep inside a table. Schema 1 (before `timings`) reads as schema 2 with empty timings.

Standard library only: benchctl.store imports this, and everything reads runs through store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
STATUSES = ("running", "completed", "failed")
_NUMBER = (int, float)


class RunNotFound(ValueError):
    """No run at the place the user named (exit code 2)."""


class ManifestError(RunNotFound):
    """A run.json that exists but is not a run manifest benchctl can read (exit code 2)."""


@dataclass(slots=True)
class RunManifest:
    run_id: str
    status: str = "running"  # running | completed | failed
    schema_version: int = SCHEMA_VERSION
    created_at: str | None = None  # UTC, ISO 8601 to the second
    finished_at: str | None = None
    label: str | None = None
    # backend, model (ResolvedModel.to_json), mode, batch_size, engine_args, slos_ms, workload_options, serving
    config: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)  # Workload.spec(): lengths, schedule, seed
    environment: dict[str, Any] = field(default_factory=dict)  # envinfo.environment() + hwinfo near the run
    engine: dict[str, Any] | None = None  # the worker's `ready` info, or the launched server's argv and URL
    engine_stats: dict[str, Any] | None = None  # the worker's `done` stats (offline)
    serving_stats: dict[str, Any] | None = None  # the load client's and the server's view (serving)
    profile: dict[str, Any] | None = None  # headline numbers of --profile (full tables: profile_summary.json)
    summary: dict[str, Any] | None = None  # benchctl.metrics.summarize of the records; set when the run ends
    error: str | None = None  # why a failed run failed
    timings: dict[str, float] = field(default_factory=dict)  # setup_s, requests_s, total_s (wall clock)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they were

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of run.json; optional sections that are still None are left out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (value is None and f.name in _OMITTED_WHEN_NONE):
                continue
            out[f.name] = value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, where: str = "run.json") -> RunManifest:
        """Validated; ManifestError names the first field that is wrong."""
        validate(data, where)
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["schema_version"] = SCHEMA_VERSION  # read as the current version: 1 differs only in `timings`
        values.setdefault("run_id", "")
        values.setdefault("status", "completed" if "summary" in data else "running")
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


_OMITTED_WHEN_NONE = ("finished_at", "engine", "engine_stats", "serving_stats", "profile", "summary")
_TEXT_FIELDS = ("run_id", "created_at", "finished_at", "label", "error")
_OBJECT_FIELDS = (
    "config",
    "workload",
    "environment",
    "engine",
    "engine_stats",
    "serving_stats",
    "profile",
    "summary",
    "timings",
)


def load(run_dir: Path) -> dict[str, Any]:
    """run_dir/run.json as a validated JSON object (the readers index it as a dict)."""
    path = run_dir / "run.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunNotFound(f"no run at {run_dir} (no run.json there)") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e})") from None
    validate(data, str(path))
    return data


def read(run_dir: Path) -> RunManifest:
    """run_dir/run.json as a RunManifest."""
    return RunManifest.from_dict(load(run_dir), str(run_dir / "run.json"))


def validate(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise ManifestError(f"{where} is not a run manifest: a JSON {_kind(data)}, expected an object")
    version = data.get("schema_version", 1)
    if type(version) is not int or version < 1:
        raise ManifestError(f"{where}: schema_version must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ManifestError(
            f"{where} was written by a newer benchctl (schema {version}; this one reads up to {SCHEMA_VERSION})"
        )
    for name in _TEXT_FIELDS:
        _expect(data, name, (str,), where, nullable=name != "run_id")
    if "status" in data and data["status"] not in STATUSES:
        raise ManifestError(f"{where}: status must be one of {', '.join(STATUSES)}, got {data['status']!r}")
    for name in _OBJECT_FIELDS:
        _expect(data, name, (dict,), where)
    if data.get("status") == "completed" and "summary" not in data:
        raise ManifestError(f"{where}: a completed run without a summary")
    config = data.get("config", {})
    for name in ("backend", "mode"):
        _expect(config, name, (str,), where, prefix="config.")
    _expect(config, "model", (dict,), where, prefix="config.")
    _expect(config, "engine_args", (dict,), where, prefix="config.")
    _numbers(config.get("slos_ms") or {}, where, "config.slos_ms.")
    _expect(data.get("workload", {}), "num_requests", (int,), where, prefix="workload.")
    _expect(data.get("workload", {}), "schedule", (dict,), where, prefix="workload.")
    _expect(data.get("environment", {}), "hardware", (dict,), where, prefix="environment.")
    _numbers(data.get("timings", {}), where, "timings.")
    _summary(data.get("summary") or {}, where)


def _summary(summary: dict[str, Any], where: str) -> None:
    for name in ("num_requests", "completed", "failed"):
        _expect(summary, name, (int,), where, prefix="summary.")
    for name, value in summary.items():
        if name.endswith(("_tok_s", "_req_s")) or name in ("request_throughput", "duration_s"):
            _expect(summary, name, _NUMBER, where, prefix="summary.", nullable=True)
        elif isinstance(value, dict) and "count" in value:  # a distribution: count, mean, p99, ...
            _numbers(value, where, f"summary.{name}.")


def _numbers(values: Any, where: str, prefix: str) -> None:
    if not isinstance(values, dict):
        raise ManifestError(f"{where}: {prefix.rstrip('.')} must be an object, got {_kind(values)}")
    for name in values:
        _expect(values, name, _NUMBER, where, prefix=prefix, nullable=True)


def _expect(
    data: dict[str, Any], name: str, types: tuple[type, ...], where: str, prefix: str = "", nullable: bool = False
) -> None:
    if name not in data:
        return
    value = data[name]
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, types):
        expected = "a number" if types == _NUMBER else {str: "a string", dict: "an object", int: "an integer"}[types[0]]
        raise ManifestError(f"{where}: {prefix}{name} must be {expected}, got {_kind(value)}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "number")


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")
