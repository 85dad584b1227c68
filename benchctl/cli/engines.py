"""`benchctl engines install|list`: the managed engine environments of benchctl.engines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchctl import engines
from benchctl.cli.output import err, out

engines_app = typer.Typer(no_args_is_help=True, help="Install and list engine virtualenvs (vllm, llamacpp, exllamav2).")


class RichInstallProgress(engines.InstallProgress):
    """One spinner line per step; pip's latest output line under it."""

    def __init__(self, engine: str):
        self.engine = engine
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[engine]}[/bold] {task.description}"),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[detail]}[/dim]"),
            console=err,
            transient=False,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> RichInstallProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.bar.update(self.task, detail="")
            self.bar.stop_task(self.task)
        self.bar.stop()

    def step(self, text: str) -> None:
        if self.task is not None:
            self.bar.update(self.task, detail="")
            self.bar.stop_task(self.task)
        self.task = self.bar.add_task(text, engine=self.engine, detail="", total=None)

    def output(self, line: str) -> None:
        if self.task is not None:
            self.bar.update(self.task, detail=line.strip()[:90])


def _versions_text(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {v}" for name, v in versions.items())


@engines_app.command()
def install(
    engine: Annotated[
        list[str], typer.Argument(metavar="ENGINE...", help=f"One or more of: {', '.join(engines.ENGINES)}.")
    ],
    force: Annotated[bool, typer.Option(help="Rebuild even if a completed environment exists.")] = False,
    find_links: Annotated[
        list[Path] | None,
        typer.Option(help="Extra folder of wheels for pip (a speed-up; skipped when the folder does not exist)."),
    ] = None,
) -> None:
    """Create each engine's virtualenv with pinned versions for this host (reused when already complete)."""
    for name in engine:  # every name is checked before anything is built
        try:
            engines.plan(name)
        except engines.EngineError as e:
            raise typer.BadParameter(str(e), param_hint="ENGINE") from None
    links = tuple(find_links or ())
    for d in links:
        if not d.is_dir():
            err.print(f"[dim]· --find-links {d} does not exist; not used[/dim]")
    install_each(
        engine,
        lambda name, progress: engines.install(name, progress, force=force, find_links=links),
        lambda env: _versions_text(env.versions),
    )


def install_each(names: list[str], install: Callable, describe: Callable) -> None:
    """Install one environment after another with a spinner each (engines and tools alike): the first failure
    is one error line with its log, exit 1; each success one line saying where and which versions."""
    for name in names:
        with RichInstallProgress(name) as progress:
            try:
                env, reused = install(name, progress)
            except engines.InstallFailed as e:
                progress.step("[red]failed[/red]")
                err.print(
                    f"benchctl: error: installing {name} failed: {e}\nfull log: {e.log_path}",
                    markup=False,
                    highlight=False,
                )
                raise typer.Exit(1) from None
        state = "already installed" if reused else f"installed in {env.manifest.get('install_s', 0):.0f} s"
        err.print(f"{name}: {state}: {env.path} ({describe(env)})", highlight=False)


@engines_app.command("list")
def list_(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Engine environments on this machine: where, which versions, and which one benchctl uses."""
    found = engines.list_installed()
    current: dict[str, str | None] = {}
    for name in engines.ENGINES:
        try:
            current[name] = engines.plan(name).key
        except engines.EngineError as e:
            current[name] = None
            current[f"{name}:reason"] = str(e)
    rows = [
        {
            "engine": env.engine,
            "key": env.manifest["key"],
            "path": str(env.path),
            "python": str(env.python),
            "python_version": env.manifest.get("python_version"),
            "versions": env.versions,
            "installed_at": env.manifest.get("installed_at"),
            "used": current.get(env.engine) == env.manifest["key"],
        }
        for env in found
    ]
    missing = [
        {"engine": name, "key": current[name], "reason": current.get(f"{name}:reason")}
        for name in engines.ENGINES
        if not any(r["used"] and r["engine"] == name for r in rows)
    ]
    if json_out:
        typer.echo(
            json.dumps(
                {"engines_dir": str(engines.engines_dir()), "installed": rows, "not_installed": missing}, indent=2
            )
        )
        return
    table = Table(title=f"benchctl engines ({engines.engines_dir()})")
    for col in ("engine", "environment", "versions", "python", "used"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["engine"],
            r["path"],
            _versions_text(r["versions"]),
            r["python_version"] or "?",
            "yes" if r["used"] else "no (other pin)",
        )
    for m in missing:
        why = m["reason"] or f"not installed: `benchctl engines install {m['engine']}`"
        table.add_row(m["engine"], "-", "-", "-", why)
    out.print(table)
