"""Summary table (the workload beside every number) and throughput bars with ratios to the baseline."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from benchctl.console import _num, compare_rows, engine_line, workload_line
from benchctl.envinfo import hardware_line
from benchctl.metrics import LATENCY_METRICS, distribution, flat_metrics, request_counts
from benchctl.report.load import RunData
from benchctl.report.section import Section, run_color

THROUGHPUT_KEYS = (
    ("request_throughput", "requests/s"),
    ("output_tok_s", "output tokens/s"),
    ("total_tok_s", "total tokens/s"),
)
_LAT_LABEL = {"ttft_s": "TTFT", "tpot_s": "TPOT", "itl_s": "ITL", "e2el_s": "E2EL"}
ENGINE_STAT_KEYS = (
    "mean_batch_size",
    "peak_batch_size",
    "peak_kv_blocks_used",
    "kv_waste_pct",
    "preemptions",
    "num_preemptions",
    "padding_waste_pct",
)


def tokens_per_request(data: RunData) -> dict[str, dict[str, Any]]:
    """Measured token counts per completed request (distribution() of the records' counts)."""
    return {
        "input": distribution(r.get("prompt_tokens") for r in data.done),
        "output": distribution(r.get("output_tokens") for r in data.done),
    }


def _dist_text(stats: dict[str, Any]) -> str:
    if not stats.get("count"):
        return "—"
    return (
        f"mean {_num(stats.get('mean'), 1)} · p50 {_num(stats.get('p50'), 0)} · p99 {_num(stats.get('p99'), 0)}"
        f" · min {_num(stats.get('min'), 0)} · max {_num(stats.get('max'), 0)}"
    )


def _arrival_text(run: dict) -> str:
    sched = run.get("workload", {}).get("schedule", {})
    rate = sched.get("request_rate")
    text = (
        "all at t=0" if rate is None else f"{sched.get('kind')} {rate:g} req/s (burstiness {sched.get('burstiness')})"
    )
    conc = sched.get("max_concurrency")
    return text + (f" · max concurrency {conc}" if conc else " · no concurrency cap")


def per_request_suffix(data: RunData) -> str:
    tok = tokens_per_request(data)
    return (
        f"{_num(tok['input'].get('mean'), 1)} in + {_num(tok['output'].get('mean'), 1)} out tokens/request, "
        f"{data.summary.get('completed')} requests"
    )


def summary_table(runs: list[RunData]) -> pd.DataFrame:
    """Rows: workload, engine, hardware, then every headline number; one column per run."""
    columns = {}
    for data in runs:
        run, s = data.run, data.summary
        cfg, wl = run.get("config", {}), run.get("workload", {})
        env = run.get("environment", {})
        tok = tokens_per_request(data)
        flat = flat_metrics(s)
        counts = request_counts(s)
        col: dict[str, str] = {
            "run": f"{data.run_id} ({run.get('status')})",
            "label": run.get("label") or "—",
            "workload": f"{wl.get('num_requests')} requests · {wl.get('dataset')} (seed {wl.get('seed')})",
            "input tokens/request (spec)": _dist_text(wl.get("input_tokens", {})),
            "output tokens/request (spec)": _dist_text(wl.get("output_tokens", {})),
            "output tokens/request (measured)": _dist_text(tok["output"]),
            "arrivals": _arrival_text(run),
            "model": str((cfg.get("model") or {}).get("name")),
            "engine": engine_line(run),
            "hardware": hardware_line(env.get("hardware", {})),
            "versions": f"python {env.get('python')} · benchctl git {env.get('git_sha')}",
            "completed / failed": f"{_num(counts['completed'])} / {_num(counts['failed'])}",
            "outputs shorter / longer than asked for": f"{_num(counts['output_tokens_short'])} / "
            f"{_num(counts['output_tokens_over'])}",
            "duration (s)": _num(s.get("duration_s")),
            "requests/s": f"{_num(s.get('request_throughput'), 3)} ({per_request_suffix(data)})",
            "input tokens/s": _num(s.get("input_tok_s")),
            "output tokens/s": _num(s.get("output_tok_s")),
            "total tokens/s": _num(s.get("total_tok_s")),
        }
        col["goodput (req/s)"] = (
            f"{_num(s['goodput_req_s'], 3)} ({s.get('good_requests')} of {s.get('completed')} "
            f"requests meet SLOs {s.get('slos_ms')} ms)"
            if "goodput_req_s" in s
            else "no SLOs (benchctl report --goodput ttft:MS ...)"
        )
        for name in LATENCY_METRICS:
            short = name.removesuffix("_s")
            if f"{short}_mean_ms" in flat:
                col[f"{_LAT_LABEL[name]} mean / p50 / p99 (ms)"] = " / ".join(
                    _num(flat[f"{short}_{k}_ms"]) for k in ("mean", "p50", "p99")
                )
        stats = run.get("engine_stats") or {}
        for key in ENGINE_STAT_KEYS:
            if isinstance(stats.get(key), int | float):
                col[f"engine: {key}"] = _num(stats[key])
        columns[data.label] = col
    return pd.DataFrame(columns).astype(object).fillna("—")


def same_workload(runs: list[RunData]) -> bool:
    return len({workload_line(d.run.get("workload", {})) for d in runs}) == 1


def same_requests(runs: list[RunData]) -> bool:
    """Same prompts and lengths, whatever the arrival schedule (a rate sweep)."""
    return len({workload_line({**d.run.get("workload", {}), "schedule": {}}) for d in runs}) == 1


def throughput_ratios(runs: list[RunData]) -> dict[str, list[float | None]]:
    """Ratio of each run to the first (the baseline), from console.compare_rows on the report's summaries."""
    rows = compare_rows([{**d.run, "summary": d.summary} for d in runs])
    return {row["metric"]: row["ratios"] for row in rows}


def throughput_figure(runs: list[RunData]) -> go.Figure:
    ratios = throughput_ratios(runs)
    fig = make_subplots(rows=1, cols=len(THROUGHPUT_KEYS), subplot_titles=[t for _, t in THROUGHPUT_KEYS])
    for col, (key, title) in enumerate(THROUGHPUT_KEYS, start=1):
        values = [flat_metrics(d.summary).get(key) for d in runs]
        text = [
            f"{v:,.3g}" + (f"<br>{q:.2f}× baseline" if q is not None and i else "<br>baseline")
            if v is not None
            else "—"
            for i, (v, q) in enumerate(zip(values, ratios[key]))
        ]
        fig.add_trace(
            go.Bar(
                x=[d.label.replace(" [", "<br>[") for d in runs],
                y=values,
                text=text,
                textposition="auto",
                name=title,
                marker_color=[run_color(i) for i in range(len(runs))],
                customdata=ratios[key],
                hovertext=[per_request_suffix(d) for d in runs],
                hovertemplate="%{x}<br>%{y:.4g} " + title + "<br>%{hovertext}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(showticklabels=len(runs) <= 6, tickangle=0, tickfont_size=10)
    fig.update_layout(height=420, title="Throughput (ratio to the baseline = first run)")
    return fig


def section(runs: list[RunData]) -> Section:
    sec = Section(
        "summary",
        "Summary",
        intro="Every number is computed by benchctl.metrics from the run's request records. "
        f"Baseline for ratios: {runs[0].label}.",
    )
    if not same_workload(runs) and same_requests(runs):
        sec.notes.append("The runs send the same requests on different arrival schedules (rate / concurrency).")
    elif not same_workload(runs):
        sec.notes.append(
            "The runs have DIFFERENT workloads: compare throughput only with the token counts per request in view."
        )
    for data in runs:
        sec.notes += [f"{data.run_id}: {note}" for note in data.notes if "steps.jsonl" not in note]
    sec.tables.append(("Workload, engine, hardware and headline numbers per run", summary_table(runs)))
    sec.add_figure("fig-throughput", throughput_figure(runs))
    return sec
