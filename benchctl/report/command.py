"""The `benchctl report` command: arguments, output file, user errors (plotting lives in render.py).

Imported by the CLI on every start, so it imports plotly (the `report` extra) only when it runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from benchctl.metrics import parse_slos


def write_report(html: str, output: Path) -> None:
    if output.is_dir():
        raise typer.BadParameter(f"{output} is a directory; give a file name", param_hint="--output")
    if not output.parent.is_dir():
        raise typer.BadParameter(f"folder {output.parent} does not exist", param_hint="--output")
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise typer.BadParameter(f"cannot write {output}: {e.strerror}", param_hint="--output") from None


def report_command(
    run_refs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Run folders or run ids.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("report.html"),
    baseline: Annotated[str | None, typer.Option(help="Run the ratios are taken to (default: the first).")] = None,
    goodput: Annotated[
        list[str] | None,
        typer.Option(help="SLO for goodput, e.g. ttft:500 (ms; repeatable); default: the SLOs each run was made with."),
    ] = None,
    output_dir: Annotated[Path, typer.Option(help="Where to look up run ids.")] = Path("results"),
    title: Annotated[str, typer.Option(help="Report title.")] = "benchctl report",
) -> None:
    """One self-contained HTML report (plotly) for one run or a comparison of several."""
    try:
        slos_ms = parse_slos(goodput or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--goodput") from None
    try:
        from benchctl import hwinfo
        from benchctl.report.load import load_all
        from benchctl.report.render import render_html
    except ImportError as e:
        raise typer.BadParameter(f"{e.name} is missing: pip install 'benchctl[report]' (plotly, jinja2)") from None
    runs = load_all(run_refs, output_dir, baseline=baseline, slos_ms=slos_ms)
    write_report(render_html(runs, hwinfo.load_cached(), title), output)
    typer.echo(f"report: {output} ({output.stat().st_size / 1e6:.1f} MB, {len(runs)} runs)", err=True)
