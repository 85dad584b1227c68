"""A run folder as the report sees it: run.json, its request records, its engine steps (if any).

Every number shown is computed by benchctl.metrics from these records; this module only reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchctl import store
from benchctl.metrics import completed, request_latencies, summarize
from benchctl.records import read_records


@dataclass(slots=True)
class RunData:
    path: Path
    run: dict[str, Any]
    records: list[dict[str, Any]]  # one per request, as written by the harness
    summary: dict[str, Any]  # benchctl.metrics.summarize(records, slos)
    latencies: list[dict[str, Any]]  # benchctl.metrics.request_latencies per completed record
    done: list[dict[str, Any]]  # completed records, aligned with `latencies`
    steps: pd.DataFrame | None  # steps.jsonl, or None when the engine reports no steps
    notes: list[str] = field(default_factory=list)  # what is missing or odd, shown in the report

    @property
    def run_id(self) -> str:
        return self.run.get("run_id") or self.path.name

    @property
    def label(self) -> str:
        """Short name for legends: backend, engine args, rate, and the run id's random suffix."""
        cfg = self.run.get("config", {})
        bits = [str(cfg.get("backend", "?"))]
        bits += [f"{k}={v}" for k, v in (cfg.get("engine_args") or {}).items()]
        rate = rate_of(self)
        if rate is not None:
            bits.append(f"{rate:g} req/s")
        return f"{' '.join(bits)} [{self.run_id[-6:]}]"


def rate_of(data: RunData) -> float | None:
    """The offered request rate; None when everything arrived at t=0."""
    rate = data.run.get("workload", {}).get("schedule", {}).get("request_rate")
    return None if rate is None or (isinstance(rate, float) and math.isinf(rate)) else float(rate)


def _records(path: Path) -> list[dict[str, Any]]:
    if (path / "requests.jsonl").is_file():
        return read_records(path / "requests.jsonl")
    if (path / "requests.parquet").is_file():
        frame = pd.read_parquet(path / "requests.parquet")
        rows = frame.to_dict(orient="records")
        for row in rows:  # parquet gives numpy arrays for lists and NaN for missing floats
            for key, value in row.items():
                if hasattr(value, "tolist"):
                    row[key] = value.tolist()
                elif isinstance(value, float) and math.isnan(value):
                    row[key] = None
        return rows
    return []


def _steps(path: Path, notes: list[str]) -> pd.DataFrame | None:
    file = path / "steps.jsonl"
    if not file.is_file():
        notes.append("no steps.jsonl: this engine reports no per-step statistics")
        return None
    frame = pd.DataFrame(read_records(file))
    if frame.empty or "t_s" not in frame:
        notes.append("steps.jsonl has no steps with a `t_s` time")
        return None
    return frame.sort_values("t_s", kind="stable").reset_index(drop=True)


def load(path: Path, slos_ms: Mapping[str, float] | None = None) -> RunData:
    """Read one run folder; `slos_ms` overrides the SLOs the run was made with (for goodput)."""
    if not (path / "run.json").is_file():
        raise store.RunNotFound(f"no run at {path} (no run.json)")
    run = store.load_run(path)
    notes: list[str] = []
    records = _records(path)
    if not records:
        notes.append("no request records (requests.jsonl / requests.parquet missing or empty)")
    if run.get("status") != "completed":
        notes.append(f"run status is {run.get('status')!r}: {run.get('error') or 'no error recorded'}")
    slos = dict(slos_ms) if slos_ms else dict(run.get("config", {}).get("slos_ms") or {})
    summary = summarize(records, slos_ms=slos or None)
    done = completed(records)
    return RunData(
        path=path,
        run=run,
        records=records,
        summary=summary,
        latencies=[request_latencies(r) for r in done],
        done=done,
        steps=_steps(path, notes),
        notes=notes,
    )


def load_all(
    refs: list[str], output_dir: Path, baseline: str | None = None, slos_ms: Mapping[str, float] | None = None
) -> list[RunData]:
    """Runs in the given order, the baseline first (added if it is not among `refs`)."""
    paths = [store.resolve_run(ref, output_dir) for ref in refs]
    if baseline is not None:
        base = store.resolve_run(baseline, output_dir)
        paths = [base] + [p for p in paths if p.resolve() != base.resolve()]
    unique: dict[Path, Path] = {}
    for p in paths:  # a run given twice is loaded once, at its first place
        unique.setdefault(p.resolve(), p)
    return [load(p, slos_ms) for p in unique.values()]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
