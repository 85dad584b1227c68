"""`benchctl report`: runs → one self-contained HTML file (plotly.js embedded once, no network to view)."""

from __future__ import annotations

from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import jinja2
import plotly.offline

from benchctl.report import (
    ablation,
    conversations,
    energy,
    internals,
    latency,
    load_shapes,
    overview,
    pareto,
    profiles,
    roofline,
    sweep,
    timeline,
)
from benchctl.report.load import RunData
from benchctl.report.section import Section

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def build_sections(runs: list[RunData], hw: dict | None) -> list[Section]:
    sections = [
        overview.section(runs),
        latency.section(runs),
        timeline.section(runs),
        internals.section(runs),
        roofline.section(runs, hw),
    ]
    for optional in (
        conversations.section(runs),
        sweep.section(runs),
        ablation.section(runs),
        profiles.section(runs),
        energy.section(runs),
        load_shapes.section(runs),
        pareto.section(runs),
    ):
        if optional is not None:
            sections.append(optional)
    return sections


def _hw_text(hw: dict | None) -> str:
    if hw is None:
        return f"Machine ceilings: not measured — {roofline.HWINFO_HINT}."
    return (
        f"Machine ceilings (benchctl hwinfo, {hw.get('measured_at')}, {hw.get('threads')} threads, "
        f"{hw.get('hardware', {}).get('cpu')}): memory read {hw['read_bandwidth_gb_s']:.1f} GB/s, "
        f"fp32 GEMM {hw['gemm_fp32_flop_s'] / 1e9:.1f} GFLOP/s."
    )


def render_html(runs: list[RunData], hw: dict | None, title: str = "benchctl report") -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("benchctl.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    sections = build_sections(runs, hw)
    view = []
    for sec in sections:
        view.append(
            {
                "id": sec.id,
                "title": sec.title,
                "intro": sec.intro,
                "notes": sec.notes,
                "tables": [
                    (caption, table.to_html(classes="dataframe", border=0, na_rep="—", escape=True))
                    for caption, table in sec.tables
                ],
                # plotly.js is inlined once in the template's <head>; the figures only carry their data.
                "figures": [
                    fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOTLY_CONFIG)
                    for div_id, fig in sec.figures
                ],
            }
        )
    try:
        own_version = version("benchctl")
    except PackageNotFoundError:
        own_version = "?"
    return env.get_template("report.html.j2").render(
        title=title,
        runs=[d.run_id for d in runs],
        sections=view,
        hw_text=_hw_text(hw),
        version=own_version,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        plotly_js=plotly.offline.get_plotlyjs(),
    )


def figure_ids(runs: list[RunData], hw: dict | None) -> list[str]:
    """The figure div ids a report on these runs contains (what a browser test expects to find)."""
    return [div_id for sec in build_sections(runs, hw) for div_id, _ in sec.figures]
