"""What every importer shares: the error class, the parsed form of a result, and the run folder it becomes.

An importer turns one tool's file into `Imported` results (one per benchmark in the file): per-request records in
benchctl's RequestRecord fields, the tool's own summary figures mapped onto benchctl's metric names, and where the
numbers came from. `write_run` makes a complete run folder of it (run.json, requests.jsonl, requests.parquet), every
metric recomputed by benchctl.metrics from the records, so compare, report and regress read it like a native run.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchctl import metrics, store
from benchctl.manifest import RunManifest
from benchctl.run.config import Progress
from benchctl.run.folder import RunFolder
from benchctl.workload.base import length_stats

SAME = "same definition, same records: differs by float rounding only"
# Figures compared for equality: rounding of the tool's float arithmetic, never a definition.
REL_TOLERANCE = 1e-6
ABS_TOLERANCE = 1e-6


class ImportFormatError(ValueError):
    """The file cannot become a benchctl run: unknown tool or version, no per-request data, mismatched units.
    The message is one line naming the file and, where there is one, what the tool needed (the CLI exits 2)."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One of the tool's own summary numbers, in benchctl's name and unit (latencies ms, rates per second)."""

    metric: str  # a benchctl figure name: ttft_mean_ms, output_tok_s, completed, duration_s, ...
    tool_name: str  # where it sits in the tool's file, in the tool's words
    tool_value: float
    same_definition: bool  # True: benchctl's recomputation must equal it within rounding
    why: str = SAME

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "tool_name": self.tool_name,
            "tool_value": self.tool_value,
            "same_definition": self.same_definition,
            "why": self.why,
        }


@dataclass(slots=True)
class Imported:
    """One benchmark of a tool's result file, ready to become a run folder."""

    tool: str  # vllm | guidellm | aiperf
    tool_version: str  # "not recorded" when the file does not say
    records: list[dict[str, Any]]  # RequestRecord fields, times in seconds from the first arrival
    figures: list[Figure]
    source: dict[str, Any]  # path, sha256, command line or settings, the tool's summary verbatim
    reconstructed: dict[str, str]  # record field -> how it was derived from what the tool stores
    workload: dict[str, Any]  # dataset, seed, schedule as far as the file says
    model: str | None = None
    base_url: str | None = None
    endpoint: str | None = None
    label: str | None = None
    notes: list[str] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_source(path: Path, fmt: str) -> dict[str, Any]:
    return {"path": str(path.resolve()), "format": fmt, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def stat_figures(
    stats: dict[str, float],
    metric: str,
    name_format: str,
    scale: float,
    same: bool,
    why: str = SAME,
    keys: dict[str, str] | None = None,
) -> list[Figure]:
    """Figures of one latency distribution: `keys` maps the tool's statistic names to benchctl's (mean, median, std,
    min, max, pNN), `name_format` gives the tool's name of each ({stat}), `scale` converts its unit to ms."""
    out = []
    for tool_key, ours in (keys or {}).items():
        value = stats.get(tool_key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(
                Figure(f"{metric}_{ours}_ms", name_format.format(stat=tool_key), float(value) * scale, same, why)
            )
    return out


def percentile_keys(names: list[str], pattern: str) -> dict[str, str]:
    """The tool's percentile names (p99, ...) that benchctl's summary also has (metrics.PERCENTILES) -> pNN."""
    found = {}
    for name in names:
        m = re.fullmatch(pattern, name)
        if m and float(m.group(1)) in metrics.PERCENTILES:
            found[name] = f"p{int(float(m.group(1)))}"
    return found


def benchctl_figures(summary: dict[str, Any]) -> dict[str, float]:
    """benchctl's numbers under the names Figure.metric uses (benchctl.metrics.flat_metrics plus counts and the
    latency per token)."""
    flat = metrics.flat_metrics(summary)
    for key in ("completed", "failed", "num_requests", "total_input_tokens", "total_output_tokens", "duration_s"):
        if summary.get(key) is not None:
            flat[key] = float(summary[key])
    for key, value in (summary.get("latency_per_token_s") or {}).items():
        if key != "count":
            flat[f"latency_per_token_{key}_ms"] = value * 1000.0
    return flat


def tool_vs_benchctl(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per figure of the tool's own summary: its value, benchctl's recomputation from the records, the difference
    and why they differ (or that they must not). Empty for a run that was not imported."""
    source = run.get("source") or {}
    ours = benchctl_figures(run.get("summary") or {})
    rows = []
    for fig in source.get("figures") or []:
        value = ours.get(fig["metric"])
        diff = value - fig["tool_value"] if value is not None else None
        rel = diff / fig["tool_value"] if diff is not None and fig["tool_value"] else None
        rows.append(
            {
                "metric": fig["metric"],
                "tool": source.get("tool"),
                "tool_name": fig["tool_name"],
                "tool_value": fig["tool_value"],
                "benchctl_value": value,
                "diff": diff,
                "rel_diff": rel,
                "same_definition": fig["same_definition"],
                "agrees": value is not None
                and math.isclose(value, fig["tool_value"], rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE),
                "why": fig["why"] if value is not None else "benchctl has no such figure for these records",
            }
        )
    return rows


def _workload_spec(imp: Imported) -> dict[str, Any]:
    records = imp.records
    arrivals = [r["arrival_s"] for r in records]
    schedule = {
        "kind": None,
        "request_rate": None,
        "burstiness": None,
        "max_concurrency": None,
        **imp.workload.get("schedule", {}),
        "last_arrival_s": round(max(arrivals, default=0.0), 6),
    }
    expected = [r["expected_output_tokens"] for r in records]
    return {
        "dataset": imp.workload.get("dataset"),
        "num_requests": len(records),
        "seed": imp.workload.get("seed"),
        "input_tokens": length_stats([r["prompt_tokens"] for r in records]),
        "output_tokens": length_stats(expected),
        "schedule": schedule,
        "source": {"imported_from": imp.tool, **imp.workload.get("source", {})},
    }


def write_run(imp: Imported, output_dir: Path) -> Path:
    """A complete run folder for one imported benchmark, through RunFolder (the one writer of run.json)."""
    path = store.new_run_dir(Path(output_dir), f"import-{imp.tool}")
    run = RunManifest(
        run_id=path.name,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        label=imp.label,
        # backend names the client that measured: the server behind it is whatever the tool was pointed at
        config={
            "backend": TOOL_BACKENDS[imp.tool],
            "model": {"name": imp.model, "hf_dir": None, "gguf_path": None},
            "mode": "serving",
            "batch_size": None,
            "engine_args": {},
            "slos_ms": {},
            "serving": {"base_url": imp.base_url, "endpoint": imp.endpoint},
            "imported": True,
        },
        workload=_workload_spec(imp),
        # the importing machine is not the one that ran the benchmark, and the tools' files do not name it
        environment={"hardware": {}, "note": f"not recorded by {imp.tool}: the machine that ran it is unknown"},
        extra={
            "source": {
                "tool": imp.tool,
                "tool_version": imp.tool_version,
                **imp.source,
                "figures": [f.to_json() for f in imp.figures],
                "reconstructed": imp.reconstructed,
                "notes": imp.notes,
            }
        },
    )
    folder = RunFolder(path, run)
    with folder.sink(Progress()) as sink:
        sink.add_many(imp.records)
    folder.finalize(sink.rows, status="completed", error=None)
    return path


TOOL_BACKENDS = {"vllm": "vllm-bench", "guidellm": "guidellm", "aiperf": "aiperf"}
