"""`benchctl backends` and `benchctl datasets`: what can run here, and what a dataset holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from benchctl import console as render
from benchctl.backend import list_backends
from benchctl.cli.output import err, out
from benchctl.models import DEFAULT_MODEL, resolve_model
from benchctl.workload import DEFAULT_DATASET, dataset_stats, load_tokenizer


def backends(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered backends and whether they can run on this machine."""
    found = list_backends()
    rows: list[dict[str, Any]] = []
    for name, b in found.items():
        if isinstance(b, str):
            rows.append(
                {
                    "name": name,
                    "available": False,
                    "reason": b,
                    "description": "",
                    "capabilities": [],
                    "extra": None,
                    "engine_args": {},
                }
            )
            continue
        reason = b.unavailable_reason()
        caps = [k for k, v in b.capabilities.__class__.__dataclass_fields__.items() if getattr(b.capabilities, k)]
        rows.append(
            {
                "name": name,
                "available": reason is None,
                "reason": reason,
                "description": b.description,
                "capabilities": caps,
                "extra": b.extra,
                "engine_args": b.engine_args,
            }
        )
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="benchctl backends")
    for col in ("backend", "available", "capabilities", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"], "yes" if r["available"] else f"no: {r['reason']}", ", ".join(r["capabilities"]), r["description"]
        )
    out.print(table)


def datasets(
    dataset: Annotated[str, typer.Argument(help="Bundled name or ShareGPT JSON path.")] = DEFAULT_DATASET,
    model: Annotated[str, typer.Option(help="Tokenizer of this model counts the tokens.")] = DEFAULT_MODEL,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Token-length statistics of a ShareGPT-format dataset under a model's tokenizer (and after vLLM's filters)."""
    tokenizer = load_tokenizer(str(resolve_model(model, progress=err.print).hf_dir))
    stats = dataset_stats(dataset, tokenizer)
    if json_out:
        typer.echo(json.dumps(stats, indent=2))
        return
    table = Table(
        title=f"{Path(stats['path']).name}: {stats['conversations']} conversations, "
        f"{stats['pairs']} with >= 2 turns, {stats['pairs_passing_filters']} pass vLLM's filters"
    )
    for col in ("", "mean", "p50", "p90", "p99", "max"):
        table.add_column(col, justify="right")
    for name in ("turns", "prompt_tokens", "output_tokens", "filtered_prompt_tokens", "filtered_output_tokens"):
        s = stats[name]
        table.add_row(name, *(render._num(s.get(k), 1) for k in ("mean", "p50", "p90", "p99", "max")))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(backends)
    app.command()(datasets)
