"""The sweep spec (YAML or flags): every field's type checked before any cell starts, and the cells it makes."""

from __future__ import annotations

import itertools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchctl.workload import WorkloadOptions

MODES = ("offline", "serving")
SLO_KEYS = ("ttft", "tpot", "e2el")
# Generous: the bundled default workload takes about a minute on 2 cores; a cell is only cut when it is stuck.
DEFAULT_CELL_TIMEOUT_S = 7200.0


class SweepSpecError(ValueError):
    """A sweep spec the user wrote cannot be used (exit code 2)."""


@dataclass(slots=True)
class SweepSpec:
    backends: list[str] = field(default_factory=lambda: ["reference"])
    request_rates: list[float] = field(default_factory=lambda: [math.inf])
    max_concurrency: list[int | None] = field(default_factory=lambda: [None])
    engine_args: dict[str, list[str]] = field(default_factory=dict)  # key -> values to sweep (a full matrix)
    # name -> engine args: one cell per variant, each a change from the fixed args (ablations: one at a time,
    # or several stacked in one variant). The first variant is the baseline the others are compared with.
    variants: dict[str, dict[str, str]] = field(default_factory=dict)
    fixed_engine_args: dict[str, str] = field(default_factory=dict)
    repetitions: int = 1
    model: str = "smollm2-135m"
    mode: str = "offline"
    batch_size: int | None = None
    slos_ms: dict[str, float] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)  # WorkloadOptions fields
    cell_timeout_s: float = DEFAULT_CELL_TIMEOUT_S  # a cell still running after this is killed and marked


_SPEC_KEYS = set(SweepSpec.__dataclass_fields__)
_WORKLOAD_TYPES = typing.get_type_hints(WorkloadOptions)


def load_spec(path: Path) -> SweepSpec:
    if not path.is_file():
        raise SweepSpecError(f"sweep spec not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SweepSpecError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    return spec_from_dict(data, str(path))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _scalar_arg(where: str, key: str, value: Any) -> str:
    """An engine-arg value: YAML may type it (16, 0.5, true); the engine gets text, as from --engine-arg."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (str, int, float)):
        return str(value)
    raise SweepSpecError(f"{where}: engine arg {key!r} must be a string or a number, got {type(value).__name__}")


def _list(where: str, name: str, value: Any, example: str) -> list:
    if not isinstance(value, list):
        raise SweepSpecError(
            f"{where}: {name} must be a list, e.g. {name}: {example} (got {type(value).__name__} {value!r})"
        )
    if not value:
        raise SweepSpecError(f"{where}: {name} must not be empty")
    return value


def _mapping(where: str, name: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise SweepSpecError(f"{where}: {name} must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _rate(where: str, value: Any) -> float:
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    if _is_number(value) and value > 0 and not math.isnan(value):
        return float(value)
    raise SweepSpecError(f"{where}: request_rates entries must be positive numbers or inf, got {value!r}")


def _matches(value: Any, hint: Any) -> bool:
    """Does a YAML value fit a WorkloadOptions field's annotation (int, float, str, or X | None)?"""
    options = typing.get_args(hint) or (hint,)
    for option in options:
        if option is type(None) and value is None:
            return True
        if option is int and _is_int(value) or option is float and _is_number(value):
            return True
        if option is str and isinstance(value, str):
            return True
    return False


def _check_workload(where: str, workload: Any) -> dict[str, Any]:
    workload = _mapping(where, "workload", workload)
    bad = set(workload) - set(_WORKLOAD_TYPES)
    if bad:
        raise SweepSpecError(f"{where}: unknown workload options {', '.join(sorted(map(str, bad)))}")
    for key, value in workload.items():
        if not _matches(value, _WORKLOAD_TYPES[key]):
            raise SweepSpecError(
                f"{where}: workload.{key} must be {_type_text(_WORKLOAD_TYPES[key])}, "
                f"got {type(value).__name__} {value!r}"
            )
    return dict(workload)


def _type_text(hint: Any) -> str:
    words = {int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return " or ".join(words.get(t, str(t)) for t in (typing.get_args(hint) or (hint,)))


def spec_from_dict(data: Any, where: str = "sweep spec") -> SweepSpec:
    """A checked SweepSpec: a field of the wrong type is one SweepSpecError naming the field and an example."""
    if not isinstance(data, dict):
        raise SweepSpecError(f"{where}: expected a mapping of spec fields, got {type(data).__name__}")
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise SweepSpecError(
            f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}; known: {', '.join(sorted(_SPEC_KEYS))}"
        )
    spec = SweepSpec()
    if "backends" in data:
        spec.backends = _list(where, "backends", data["backends"], "[reference]")
        if not all(isinstance(b, str) and b.strip() for b in spec.backends):
            raise SweepSpecError(f"{where}: backends must be backend names, got {data['backends']!r}")
    if "request_rates" in data:
        spec.request_rates = [_rate(where, r) for r in _list(where, "request_rates", data["request_rates"], "[inf, 4]")]
    if "max_concurrency" in data:
        spec.max_concurrency = _list(where, "max_concurrency", data["max_concurrency"], "[null, 8]")
        if not all(c is None or _is_int(c) and c >= 1 for c in spec.max_concurrency):
            raise SweepSpecError(
                f"{where}: max_concurrency entries must be integers >= 1 or null, got {data['max_concurrency']!r}"
            )
    engine_args = _mapping(where, "engine_args", data.get("engine_args", {}))
    spec.engine_args = {}
    for key, values in engine_args.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise SweepSpecError(f"{where}: engine_args.{key} has no values")
        spec.engine_args[str(key)] = [_scalar_arg(where, key, v) for v in values]
    fixed = _mapping(where, "fixed_engine_args", data.get("fixed_engine_args", {}))
    spec.fixed_engine_args = {str(k): _scalar_arg(where, k, v) for k, v in fixed.items()}
    variants = _mapping(where, "variants", data.get("variants", {}))
    if not all(args is None or isinstance(args, dict) for args in variants.values()):
        raise SweepSpecError(
            f"{where}: variants must map a name to engine args, e.g. {{baseline: {{}}, "
            f"per-seq sampler: {{sampler: per_seq}}}}"
        )
    spec.variants = {
        str(name): {str(k): _scalar_arg(where, k, v) for k, v in (args or {}).items()}
        for name, args in variants.items()
    }
    if spec.variants and spec.engine_args:
        raise SweepSpecError(f"{where}: give engine_args (a full matrix) or variants (one cell each), not both")
    if "repetitions" in data:
        if not _is_int(data["repetitions"]) or data["repetitions"] < 1:
            raise SweepSpecError(f"{where}: repetitions must be an integer >= 1, got {data['repetitions']!r}")
        spec.repetitions = data["repetitions"]
    for name in ("model", "mode"):
        if name in data:
            if not isinstance(data[name], str) or not data[name].strip():
                raise SweepSpecError(f"{where}: {name} must be a name, got {data[name]!r}")
            setattr(spec, name, data[name])
    if spec.mode not in MODES:
        raise SweepSpecError(f"{where}: mode must be one of {', '.join(MODES)}, got {spec.mode!r}")
    batch_size = data.get("batch_size")
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise SweepSpecError(f"{where}: batch_size must be an integer >= 1 or null, got {batch_size!r}")
    spec.batch_size = batch_size
    slos = _mapping(where, "slos_ms", data.get("slos_ms", {}))
    for key, value in slos.items():
        if key not in SLO_KEYS or not _is_number(value) or not 0 < value < math.inf:
            raise SweepSpecError(
                f"{where}: slos_ms must map {', '.join(SLO_KEYS)} to positive milliseconds, got {key}: {value!r}"
            )
    spec.slos_ms = {k: float(v) for k, v in slos.items()}
    spec.workload = _check_workload(where, data.get("workload", {}))
    timeout = data.get("cell_timeout_s", DEFAULT_CELL_TIMEOUT_S)
    if not _is_number(timeout) or not 0 < timeout < math.inf:
        raise SweepSpecError(f"{where}: cell_timeout_s must be a positive number of seconds, got {timeout!r}")
    spec.cell_timeout_s = float(timeout)
    return spec


@dataclass(slots=True)
class Cell:
    index: int
    backend: str
    request_rate: float
    max_concurrency: int | None
    engine_args: dict[str, str]
    repetition: int
    variant: str | None = None

    def label(self) -> str:
        args = self.variant if self.variant is not None else ",".join(f"{k}={v}" for k, v in self.engine_args.items())
        rate = "inf" if math.isinf(self.request_rate) else f"{self.request_rate:g}"
        return f"{self.backend} rate={rate} conc={self.max_concurrency} {args} rep={self.repetition}".strip()


def cells(spec: SweepSpec) -> list[Cell]:
    """The cells in run order. Repetitions go round-robin (every cell once, then every cell again), so a machine
    whose speed drifts during the sweep (shared and virtual machines do, by tens of percent over minutes) slows a
    round of all cells rather than every repetition of one."""
    if spec.variants:
        variant_grid = itertools.product(
            range(spec.repetitions), spec.backends, spec.request_rates, spec.max_concurrency, spec.variants.items()
        )
        return [
            Cell(i, b, rate, conc, {**spec.fixed_engine_args, **args}, rep, variant=name)
            for i, (rep, b, rate, conc, (name, args)) in enumerate(variant_grid)
        ]
    keys = sorted(spec.engine_args)
    grid = itertools.product(
        range(spec.repetitions),
        spec.backends,
        spec.request_rates,
        spec.max_concurrency,
        itertools.product(*(spec.engine_args[k] for k in keys)),
    )
    return [
        Cell(i, b, rate, conc, {**spec.fixed_engine_args, **dict(zip(keys, values))}, rep)
        for i, (rep, b, rate, conc, values) in enumerate(grid)
    ]
