"""`benchctl regress`: the CI gate over two folders of runs (benchctl.regress decides, this prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchctl import store
from benchctl.cli.output import err, out


def regress(
    baseline: Annotated[str, typer.Option(help="Baseline run folder, or a folder of repeated runs.")],
    candidate: Annotated[str, typer.Option(help="Candidate run folder, or a folder of repeated runs.")],
    metric: Annotated[
        list[str] | None, typer.Option(help="Gate, e.g. output_tok_s:-5% or ttft_p99:+10% (repeatable).")
    ] = None,
    confidence: Annotated[float, typer.Option(help="Confidence of the interval.")] = 0.95,
    allow_other_hardware: Annotated[
        bool, typer.Option(help="Compare runs from different machine classes (CPU, cores, GPUs); the verdict says so.")
    ] = False,
    json_path: Annotated[Path | None, typer.Option("--json-out", help="Write the verdicts as JSON.")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown-out", help="Write a Markdown summary.")] = None,
) -> None:
    """CI gate: exit 0 pass, 1 regression beyond a threshold, 2 bad input, 3 inconclusive (too few repetitions or
    too much noise to tell)."""
    from benchctl import regress as gate

    if not 0.5 <= confidence < 1:
        raise gate.GateInputError(f"--confidence must be in [0.5, 1), got {confidence}")
    gates = [gate.parse_gate(m) for m in (metric or gate.DEFAULT_METRICS)]
    result = gate.compare_sides(baseline, candidate, gates, confidence, allow_other_hardware)
    text = gate.markdown(result)
    if json_path:
        store.write_json_atomic(json_path, store.clean_floats(result))
    if markdown_path:
        markdown_path.write_text(text)
    gate.write_step_summary(text)
    out.print(gate.console_table(result))
    for w in result["warnings"]:
        err.print(f"warning: {w}")
    code = gate.exit_code(result)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command()(regress)
