"""What an A/B job says: one verdict sentence, a console table, and the markdown for GitHub's job summary."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def verdict_line(result: dict[str, Any]) -> str:
    """The verdict with its size: a pass states the largest regression it rules out, any verdict the resolution."""
    n = result.get("rounds_run", len(result.get("rounds", [])))
    if result.get("reason"):
        return f"REGRESSION: {result['reason']}"
    judged = [v for v in result.get("verdicts", []) if "ratio" in v]
    resolution = ", ".join(f"{v['metric']} ±{v['resolution_pct']:.1f}%" for v in judged)
    if result["verdict"] == "regression":
        names = ", ".join(f"{v['metric']} B/A {v['ratio']:.3f}" for v in judged if v["verdict"] == "regression")
        return f"REGRESSION after {n} rounds: {names} beyond the threshold"
    if result["verdict"] == "pass":
        worst = ", ".join(f"{v['metric']} {v['worst_regression_pct']:.1f}%" for v in judged)
        return f"pass after {n} rounds: no regression larger than {worst} (resolution {resolution})"
    if not judged:
        return f"inconclusive after {n} rounds: too few rounds to judge"
    return (
        f"inconclusive after {n} rounds: the noise (resolution {resolution}) cannot tell the thresholds "
        "apart from no change; more --max-rounds or a wider threshold"
    )


_COLUMNS = ("metric", "threshold", "A mean", "B mean", "B/A", "interval", "resolution", "verdict")


def _rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for v in result.get("verdicts", []):
        if "ratio" not in v:
            rows.append([v["metric"], f"{v['threshold_pct']:+.1f}%", "-", "-", "-", "-", "-", v["verdict"]])
            continue
        rows.append(
            [
                v["metric"],
                f"{v['threshold_pct']:+.1f}%",
                f"{v['mean_a']:.4g}",
                f"{v['mean_b']:.4g}",
                f"{v['ratio']:.3f}",
                f"[{v['low']:.3f}, {v['high']:.3f}]",
                f"±{v['resolution_pct']:.1f}%",
                v["verdict"],
            ]
        )
    return rows


def console_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"benchctl ab: {verdict_line(result)}")
    for col in _COLUMNS:
        table.add_column(col, justify="left" if col in ("metric", "verdict") else "right")
    for row in _rows(result):
        table.add_row(*row)
    plan = result["plan"]
    looks = plan["max_rounds"] - plan["min_rounds"] + 1
    table.caption = (
        f"paired t-interval of B/A over rounds at {plan['look_confidence']:.2%} a look: each verdict "
        f"{plan['confidence']:.0%} sure over up to {looks} looks · runs in {result['job_dir']}"
    )
    return table


def markdown(result: dict[str, Any]) -> str:
    plan = result["plan"]
    lines = [
        f"## benchctl ab: {verdict_line(result)}",
        "",
        f"A: {plan['sources']['a'] or 'this checkout'} `{' '.join(plan['flags']['a'])}` · "
        f"B: {plan['sources']['b'] or 'this checkout'} `{' '.join(plan['flags']['b'])}` · "
        f"{result.get('rounds_run', len(result['rounds']))} rounds, interleaved in random order · paired "
        f"t-interval of B/A, each verdict {plan['confidence']:.0%} sure over all looks",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(result)]
    return "\n".join(lines) + "\n"
