"""`benchctl ab`: the interleaved A/B gate (benchctl.ab runs and decides, this prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchctl import store
from benchctl.cli.output import err, out

HELP = """Gate B against A on this machine: A and B run round-robin, in random order each round, and every gated
metric's ratio B/A is judged on a paired t-interval of the per-round log-ratios (the pairing cancels the machine's
drift; the t-interval is valid at 3-10 rounds, and each look is Bonferroni-corrected so stopping early keeps the
confidence). Exit 0 pass (no regression larger than the stated size), 1 regression, 2 bad input, 3 inconclusive.

Every option not listed here is a `benchctl run` flag both sides share (workload, backend, model, mode);
--a / --b add each side's own run flags, shell-quoted: --b "--engine-arg sampler=per_seq".
"""


def ab(
    ctx: typer.Context,
    a: Annotated[str, typer.Option("--a", help="Side A's own run flags (shell-quoted).")] = "",
    b: Annotated[str, typer.Option("--b", help="Side B's own run flags (shell-quoted).")] = "",
    a_source: Annotated[
        str | None,
        typer.Option(help="Run A's engine from this checkout folder or git revision (a temporary worktree)."),
    ] = None,
    b_source: Annotated[str | None, typer.Option(help="The same for B.")] = None,
    metric: Annotated[
        list[str] | None, typer.Option(help="Gate, e.g. output_tok_s:-5% or ttft_p99:+10% (repeatable).")
    ] = None,
    confidence: Annotated[float, typer.Option(help="Confidence over all looks.")] = 0.95,
    min_rounds: Annotated[int, typer.Option(help="Rounds before the first look.")] = 3,
    max_rounds: Annotated[int, typer.Option(help="Rounds at most; still unclear then: inconclusive.")] = 10,
    order_seed: Annotated[int, typer.Option(help="Seed of each round's A/B order.")] = 0,
    output_dir: Annotated[Path, typer.Option(help="Where the job's folder (all its runs) is written.")] = Path(
        "results/ab"
    ),
    json_path: Annotated[Path | None, typer.Option("--json-out", help="Write the result as JSON.")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown-out", help="Write a Markdown summary.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Check the inputs and print the plan; run nothing.")] = False,
) -> None:
    from benchctl import ab as job
    from benchctl.ab import report
    from benchctl.regress import write_step_summary

    plan = job.make_plan(
        list(ctx.args), a, b, a_source, b_source, metric, confidence, min_rounds, max_rounds, order_seed, output_dir
    )
    if dry_run:
        out.print(job.dry_run_text(plan), markup=False, highlight=False)
        return
    result = job.run_ab(plan, say=lambda line: err.print(line, markup=False, highlight=False))
    text = report.markdown(result)
    if json_path:
        store.write_json_atomic(json_path, store.clean_floats(result))
    if markdown_path:
        markdown_path.write_text(text)
    write_step_summary(text)
    out.print(report.console_table(result))
    if result["exit_code"]:
        raise typer.Exit(result["exit_code"])


def register(app: typer.Typer) -> None:
    app.command(help=HELP, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(ab)
