"""`benchctl import PATH` (other tools' results as run folders) and `benchctl tools install|list` (their pinned
environments): thin over benchctl.importers and benchctl.tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from benchctl import engines, importers, store, tools
from benchctl.cli.engines import install_each
from benchctl.cli.output import err, error_line, out

tools_app = typer.Typer(no_args_is_help=True, help="Install and list other benchmark tools (guidellm, aiperf).")


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:,.4g}"


def side_by_side_table(run: dict[str, Any]) -> Table:
    """The tool's own figures beside benchctl's recomputation from the same records (importers.tool_vs_benchctl)."""
    source = run.get("source") or {}
    table = Table(
        title=f"{run.get('run_id')}: {source.get('tool')} {source.get('tool_version')} vs benchctl",
        caption="=: same definition, must agree within rounding; ≠: definitions differ (why)",
        caption_justify="left",
    )
    for col in ("metric", "tool's name", "tool", "benchctl", "diff", "", "why"):
        table.add_column(col, justify="right" if col in ("tool", "benchctl", "diff") else "left", overflow="fold")
    for r in importers.tool_vs_benchctl(run):
        mark = ("=" if r["agrees"] else "[red]≠ DISAGREES[/red]") if r["same_definition"] else "≠"
        why = "" if r["same_definition"] and r["agrees"] else r["why"]
        table.add_row(
            r["metric"], r["tool_name"], _num(r["tool_value"]), _num(r["benchctl_value"]), _num(r["diff"]), mark, why
        )
    return table


def import_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="vLLM bench JSON, guidellm benchmarks JSON, or aiperf profile_export.jsonl (or its artifact folder)."
        ),
    ],
    tool: Annotated[str | None, typer.Option(help="vllm, guidellm or aiperf (detected when omitted).")] = None,
    output_dir: Annotated[Path, typer.Option(help="Where run folders are written.")] = Path("results"),
    json_out: Annotated[bool, typer.Option("--json", help="Print the run folders and side-by-side rows.")] = False,
) -> None:
    """Turn another tool's per-request results into benchctl run folders; every metric recomputed."""
    try:
        run_dirs = importers.import_result(path, tool=tool, output_dir=output_dir)
    except importers.ImportFormatError as e:
        error_line(str(e))
        raise typer.Exit(2) from None
    runs = [store.load_run(d) for d in run_dirs]
    if json_out:
        typer.echo(
            json.dumps(
                [{"run_dir": str(d), "rows": importers.tool_vs_benchctl(r)} for d, r in zip(run_dirs, runs)], indent=2
            )
        )
        return
    for run_dir, run in zip(run_dirs, runs):
        s = run["summary"]
        err.print(
            f"imported {run['source']['tool']} ({s['completed']} completed, {s['failed']} failed) -> {run_dir}",
            highlight=False,
        )
        out.print(side_by_side_table(run))


@tools_app.command()
def install(
    tool: Annotated[list[str], typer.Argument(metavar="TOOL...", help=f"One or more of: {', '.join(tools.TOOLS)}.")],
    force: Annotated[bool, typer.Option(help="Rebuild even if a completed environment exists.")] = False,
) -> None:
    """Create each tool's virtualenv at its pinned version (reused when already complete)."""
    for name in tool:  # every name is checked before anything is built
        try:
            tools.plan(name)
        except engines.EngineError as e:
            raise typer.BadParameter(str(e), param_hint="TOOL") from None
    install_each(
        tool,
        lambda name, progress: tools.install(name, progress, force=force),
        lambda env: f"{env.engine} {tools.version(env)}",
    )


@tools_app.command("list")
def list_(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The tools benchctl can install, their pins, and where they are installed."""
    rows = tools.list_tools()
    if json_out:
        typer.echo(json.dumps({"tools_dir": str(tools.tools_dir()), "tools": rows}, indent=2))
        return
    table = Table(
        title=f"benchctl tools ({tools.tools_dir()}); vLLM's bench comes with `benchctl engines install vllm`"
    )
    for col in ("tool", "pinned", "environment"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["tool"], r["version"], r["path"] or f"not installed: `benchctl tools install {r['tool']}`")
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
    app.add_typer(tools_app, name="tools")
