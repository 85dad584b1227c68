"""`benchctl show` and `benchctl compare`: a run's summary, runs side by side (benchctl.console draws them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchctl import console as render
from benchctl import store
from benchctl.cli.imports import side_by_side_table
from benchctl.cli.output import out
from benchctl.cli.run import print_run


def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run folder or run id.")],
    output_dir: Annotated[Path, typer.Option(help="Where to look up run ids.")] = Path("results"),
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a finished (or failed) run's summary; for an imported run, the tool's own figures beside benchctl's."""
    run = store.load_run(store.resolve_run(run_ref, output_dir))
    print_run(run, json_out)
    if run.get("source") and not json_out:
        out.print(side_by_side_table(run))


def compare(
    run_refs: Annotated[
        list[str], typer.Argument(metavar="RUN...", help="Two or more runs; the first is the baseline.")
    ],
    output_dir: Annotated[Path, typer.Option(help="Where to look up run ids.")] = Path("results"),
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Side-by-side table of runs with ratios to the first."""
    if len(run_refs) < 2:
        raise typer.BadParameter("give at least two runs", param_hint="RUN...")
    runs = [store.load_run(store.resolve_run(ref, output_dir)) for ref in run_refs]
    if json_out:
        typer.echo(json.dumps({"runs": [r["run_id"] for r in runs], "rows": render.compare_rows(runs)}, indent=2))
    else:
        out.print(render.compare_table(runs))


def register(app: typer.Typer) -> None:
    app.command()(show)
    app.command()(compare)
