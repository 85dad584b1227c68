"""`benchctl regress`: the CI gate over two folders of runs (benchctl.regress decides, this prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from benchctl import store
from benchctl.cli.output import err, out


def regress(
    baseline: Annotated[str, typer.Option(help="Baseline run folder, or a folder of repeated runs.")],
    candidate: Annotated[str, typer.Option(help="Candidate run folder, or a folder of repeated runs.")],
    metric: Annotated[Optional[list[str]], typer.Option(
        help="Gate, e.g. output_tok_s:-5% or ttft_p99:+10% (repeatable).")] = None,
    confidence: Annotated[float, typer.Option(help="Confidence of the bootstrap interval.")] = 0.95,
    json_path: Annotated[Optional[Path], typer.Option("--json-out", help="Write the verdicts as JSON.")] = None,
    markdown_path: Annotated[Optional[Path], typer.Option("--markdown-out", help="Write a Markdown summary.")] = None,
) -> None:
    """CI gate: exit 1 on a significant regression beyond a threshold, 0 otherwise, 2 on bad input."""
    import os

    from benchctl import regress as gate

    if not 0.5 <= confidence < 1:
        raise gate.GateInputError(f"--confidence must be in [0.5, 1), got {confidence}")
    gates = [gate.parse_gate(m) for m in (metric or gate.DEFAULT_METRICS)]
    result = gate.compare_sides(baseline, candidate, gates, confidence)
    text = gate.markdown(result)
    if json_path:
        store.write_json_atomic(json_path, store.clean_floats(result))
    if markdown_path:
        markdown_path.write_text(text)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as f:
            f.write(text)
    table = Table(title="benchctl regress: " + ("REGRESSION" if result["regression"] else "pass"))
    for col in ("metric", "threshold", "baseline", "candidate", "ratio", "CI", "p", "verdict"):
        table.add_column(col, justify="right" if col not in ("metric", "verdict") else "left")
    for v in result["verdicts"]:
        verdict = "regression" if v["regression"] else ("improvement" if v["improvement"] else "no significant change")
        table.add_row(v["metric"], f"{v['threshold_pct']:+.1f}%", f"{v['baseline_mean']:.4g}",
                      f"{v['candidate_mean']:.4g}", f"{v['ratio']:.3f}", f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]",
                      f"{v['p_value']:.3g}", verdict)
    out.print(table)
    for w in result["warnings"]:
        err.print(f"warning: {w}")
    if result["regression"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(regress)
