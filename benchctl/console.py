"""Terminal rendering of results: every number next to the workload that produced it."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from benchctl import hwinfo
from benchctl.dummy import MEANINGLESS, WEIGHTS, is_dummy_run
from benchctl.envinfo import hardware_line
from benchctl.metrics import (
    COUNT_KEYS,
    LATENCY_METRICS,
    flat_metrics,
    ratios_to_first,
    request_counts,
    spec_decode_acceptance,
)
from benchctl.metrics.ceiling import below_best

_LAT_LABEL = {"ttft_s": "TTFT", "tpot_s": "TPOT", "itl_s": "ITL", "e2el_s": "E2EL"}


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _ms(value_s: Any) -> str:
    return _num(value_s * 1000.0 if isinstance(value_s, int | float) else None)


def workload_line(workload: dict) -> str:
    inp, out = workload.get("input_tokens", {}), workload.get("output_tokens", {})
    sched = workload.get("schedule", {})
    rate = sched.get("request_rate")
    rate_text = "all at t=0" if rate is None else f"{sched.get('kind')} {rate:g} req/s"
    if sched.get("max_concurrency"):
        rate_text += f", max concurrency {sched['max_concurrency']}"
    source = workload.get("source") or {}
    requests = f"{workload.get('num_requests')} requests"
    if source.get("conversations"):
        turns = source.get("turns_per_conversation") or {}
        requests += (
            f" ({source['conversations']} conversations, {_num(turns.get('mean'), 1)} turns each on average, "
            f"think time {source.get('think_time_s', 0):g} s)"
        )
    return (
        f"{requests} from {workload.get('dataset')} (seed {workload.get('seed')}) · "
        f"input tokens mean {_num(inp.get('mean'), 0)} p50 {_num(inp.get('p50'), 0)} "
        f"p99 {_num(inp.get('p99'), 0)} · "
        f"output tokens mean {_num(out.get('mean'), 0)} p50 {_num(out.get('p50'), 0)} "
        f"p99 {_num(out.get('p99'), 0)} · {rate_text}"
    )


def engine_line(run: dict) -> str:
    engine = run.get("engine", {})
    cfg = run.get("config", {})
    bits = [cfg.get("backend", "?")]
    versions = engine.get("versions") or {}
    bits += [f"{k} {v}" for k, v in versions.items()]
    for key in ("device", "dtype", "precision", "mode", "batch_size", "threads", "attention_backend", "kv_layout"):
        if key == "precision" and engine.get(key) == engine.get("dtype"):
            continue
        if engine.get(key) is not None:
            bits.append(f"{key}={engine[key]}")
    if cfg.get("engine_args"):
        bits.append(" ".join(f"{k}={v}" for k, v in cfg["engine_args"].items()))
    return " · ".join(bits)


def summary_table(run: dict) -> Table:
    s = run.get("summary") or {}
    counts = request_counts(s)
    title = f"{run.get('run_id')} — {run.get('status')}"
    table = Table(
        title=title,
        caption=f"{workload_line(run.get('workload', {}))}\n{engine_line(run)}\n"
        f"{hardware_line(run.get('environment', {}).get('hardware', {}))}",
        caption_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("requests completed / failed", f"{_num(counts['completed'])} / {_num(counts['failed'])}"),
        (
            "outputs shorter / longer than asked for",
            f"{_num(counts['output_tokens_short'])} / {_num(counts['output_tokens_over'])}",
        ),
        ("duration (s)", _num(s.get("duration_s"))),
        ("input / output tokens", f"{_num(s.get('total_input_tokens'))} / {_num(s.get('total_output_tokens'))}"),
        ("request throughput (req/s)", _num(s.get("request_throughput"), 3)),
        ("input tokens/s", _num(s.get("input_tok_s"))),
        ("output tokens/s", _num(s.get("output_tok_s"))),
        ("total tokens/s", _num(s.get("total_tok_s"))),
    ]
    if "goodput_req_s" in s:
        rows.append((f"goodput (req/s, SLOs {s.get('slos_ms')} ms)", _num(s["goodput_req_s"], 3)))
    if is_dummy_run(run):
        rows.append(("weights", f"{WEIGHTS}: greedy identity and draft acceptance are {MEANINGLESS}"))
    if run.get("energy"):
        rows.append(energy_row(run["energy"]))
    rows += window_rows(run)
    for label, value in rows:
        table.add_row(label, value)
    for name in LATENCY_METRICS:
        stats = s.get(name) or {}
        if stats.get("count"):
            table.add_row(
                f"{_LAT_LABEL[name]} mean / p50 / p99 (ms)",
                " / ".join(_ms(stats.get(k)) for k in ("mean", "median", "p99")),
            )
    conv = s.get("conversations") or {}
    if conv:
        for key, label in (("ttft_first_turn_s", "TTFT first turns"), ("ttft_later_turns_s", "TTFT later turns")):
            stats = conv.get(key) or {}
            if stats.get("count"):
                table.add_row(
                    f"{label} mean / p50 / p99 (ms)", " / ".join(_ms(stats.get(k)) for k in ("mean", "median", "p99"))
                )
        if conv.get("cached_prompt_fraction") is not None:
            table.add_row("prompt tokens from the prefix cache (engine)", f"{conv['cached_prompt_fraction']:.1%}")
    hit = run_server_hit_rate(run)
    if hit is not None:
        table.add_row("prefix-cache hit rate (server /metrics)", f"{hit:.1%}")
    spec = spec_decode(run)
    if spec is not None:
        length = spec.get("spec_decode_mean_acceptance_length")
        table.add_row(
            f"speculative decoding ({spec['source']}): draft tokens accepted",
            f"{spec['spec_decode_acceptance_rate']:.1%}"
            + (f", {length:.2f} tokens per drafted step" if length is not None else "")
            + (" (meaningless: random weights)" if is_dummy_run(run) else ""),
        )
    ceiling = hwinfo.ceiling_for_run(run)
    if ceiling is not None and ceiling["share"] is not None:
        table.add_row(
            "share of the compute ceiling (total tok/s)",
            f"{ceiling['share']:.1%} of {ceiling['ceiling_tok_s']:,.0f} ({ceiling_source(ceiling)})",
        )
        if below_best(ceiling):
            table.add_row(
                "share of the CPU's best measured ceiling",
                f"{ceiling['share_of_best']:.1%} (fp32 GEMM {ceiling['best_gemm_flop_s'] / 1e9:.1f} "
                f"GFLOP/s at {ceiling['best_measured_at']}: {BELOW_BEST_WARNING})",
            )
    stats = run.get("engine_stats") or {}
    for key in ("padding_waste_pct", "kv_waste_pct", "peak_kv_blocks_used", "mean_batch_size", "preemptions"):
        if stats.get(key) is not None:
            table.add_row(f"engine: {key}", _num(stats[key]))
    return table


def energy_row(energy: dict) -> tuple[str, str]:
    """run.json's energy (benchctl.telemetry): joules, and per output and per input + output token; or why not."""
    if energy.get("energy_j") is None:
        return "energy", f"unavailable ({energy.get('unavailable') or 'not measured'})"
    per = [
        f"{energy['j_per_output_token']:.3g} J / output token" if energy.get("j_per_output_token") else None,
        f"{energy['j_per_total_token']:.3g} J / token (input + output)" if energy.get("j_per_total_token") else None,
    ]
    return f"energy ({energy.get('source')})", " · ".join([f"{energy['energy_j']:,.1f} J", *filter(None, per)])


def window_rows(run: dict) -> list[tuple[str, str]]:
    """The rows above are the whole run's; with windows or stages (benchctl.metrics.windows) their own numbers follow,
    then a reasoning model's time to its answer and an early stop (benchctl.saturation)."""
    s, rows = run.get("summary") or {}, []
    steady = s.get("steady_state")
    if steady:
        start, end = steady.get("window_s") or (None, None)
        rows.append(("throughput and latencies above", "whole run, the drain after the last arrival included"))
        rows.append(
            (
                f"steady state ({_num(start)}-{_num(end)} s): req/s · output tokens/s · TTFT p99 (ms)",
                f"{_num(steady.get('request_throughput'), 3)} · {_num(steady.get('output_tok_s'))} · "
                f"{_ms((steady.get('ttft_s') or {}).get('p99'))}",
            )
        )
    for stage in s.get("stages") or []:
        rows.append(
            (
                f"stage {stage['stage']} ({_num(stage.get('offered_request_rate'))} req/s offered): req/s · "
                f"TTFT p99 (ms)",
                f"{_num(stage.get('request_throughput'), 3)} · {_ms((stage.get('ttft_s') or {}).get('p99'))}",
            )
        )
    answer = ((s.get("reasoning") or {}).get("ttft_answer_s")) or {}
    if answer.get("count"):
        rows.append(
            (
                "time to first answer token mean / p50 / p99 (ms)",
                " / ".join(_ms(answer.get(k)) for k in ("mean", "median", "p99")),
            )
        )
    stop = (run.get("serving_stats") or {}).get("saturation_stop")
    if stop:
        rows.append(("stopped early", f"{stop['reason']} at {stop['t_s']:.1f} s: {stop['detail']}"))
    return rows


COMPARE_KEYS = (
    "request_throughput",
    "input_tok_s",
    "output_tok_s",
    "total_tok_s",
    "ttft_mean_ms",
    "ttft_p99_ms",
    "tpot_mean_ms",
    "tpot_p99_ms",
    "itl_mean_ms",
    "itl_p99_ms",
    "e2el_mean_ms",
    "e2el_p99_ms",
)


# multi-turn runs add these (benchctl.metrics.conversation_summary; the server's own hit rate from /metrics)
CONVERSATION_KEYS = (
    "ttft_first_turn_median_ms",
    "ttft_later_turns_median_ms",
    "ttft_later_turns_p99_ms",
    "cached_prompt_fraction",
    "server_prefix_cache_hit_rate",
)


SPEC_DECODE_KEYS = ("spec_decode_acceptance_rate", "spec_decode_mean_acceptance_length")


def spec_decode(run: dict) -> dict | None:
    """Speculative decoding's acceptance (metrics.spec_decode_acceptance), from the engine's own counters (offline)
    or the server's /metrics counters (serving); None when the run drafted nothing."""
    stats = run.get("engine_stats") or {}
    counts = ("drafts", "draft_tokens", "accepted_tokens")
    found = spec_decode_acceptance(*(stats.get(f"spec_decode_num_{n}") for n in counts))
    source = "engine"
    if found is None:
        found, source = (run.get("serving_stats") or {}).get("spec_decode"), "server /metrics"
    if not found:
        return None
    return {
        "source": source,
        "spec_decode_acceptance_rate": found["acceptance_rate"],
        "spec_decode_mean_acceptance_length": found.get("mean_acceptance_length"),
    }


def run_server_hit_rate(run: dict) -> float | None:
    """The server's prefix-cache hit rate stored with a serving run (metrics.server_prefix_cache_hit_rate)."""
    cache = (run.get("serving_stats") or {}).get("prefix_cache") or {}
    return cache.get("hit_rate")


# with a `benchctl hwinfo` measurement of the run's CPU and its model on disk (hwinfo.ceiling_for_run)
CEILING_KEYS = ("compute_ceiling_tok_s", "compute_ceiling_share", "compute_ceiling_share_of_best")

BELOW_BEST_WARNING = (
    "the measurement near the run is well below this CPU's best (its host was busy?), so the "
    "share against it flatters the run"
)  # shown where metrics.ceiling.below_best holds


STALE_CEILING_MIN = 30
STALE_CEILING_WARNING = (
    f"a ceiling measured over {STALE_CEILING_MIN} min from its run may not be the machine's speed "
    "then (shared and virtual machines drift): `benchctl hwinfo --refresh` next to the runs"
)


def ceiling_source(ceiling: dict[str, Any]) -> str:
    stale = " — stale" if ceiling["minutes_away"] > STALE_CEILING_MIN else ""
    return (
        f"fp32 GEMM {ceiling['gemm_flop_s'] / 1e9:.1f} GFLOP/s, benchctl hwinfo {ceiling['measured_at']}, "
        f"{ceiling['minutes_away']:.0f} min from the run{stale}"
    )


def compare_rows(runs: list[dict], ceilings: list[dict | None] | None = None) -> list[dict[str, Any]]:
    """One row per metric: value per run and ratio to the first run (the baseline). First what became of the
    requests (metrics.COUNT_KEYS: counts, no ratios); a value a run lacks (a failed run's) is None."""
    flats: list[dict[str, float | None]] = [dict(flat_metrics(r.get("summary"))) for r in runs]
    for run, flat in zip(runs, flats):
        if run_server_hit_rate(run) is not None:
            flat["server_prefix_cache_hit_rate"] = run_server_hit_rate(run)
    keys: tuple[str, ...] = COMPARE_KEYS
    if any("conversations" in (r.get("summary") or {}) for r in runs):
        keys += CONVERSATION_KEYS
    specs = [spec_decode(r) for r in runs]
    if any(specs):
        keys += SPEC_DECODE_KEYS
        for flat, spec in zip(flats, specs):
            flat.update({k: spec[k] for k in SPEC_DECODE_KEYS} if spec else {})
    ceilings = [hwinfo.ceiling_for_run(r) for r in runs] if ceilings is None else ceilings
    if any(ceilings):
        keys += CEILING_KEYS
        for flat, ceiling in zip(flats, ceilings):
            if ceiling is not None:
                flat["compute_ceiling_tok_s"] = ceiling["ceiling_tok_s"]
                flat["compute_ceiling_share"] = ceiling["share"]
                flat["compute_ceiling_share_of_best"] = ceiling.get("share_of_best")
    counts = [request_counts(r.get("summary")) for r in runs]
    rows: list[dict[str, Any]] = [
        {"metric": key, "values": [c[key] for c in counts], "ratios": [None] * len(runs)} for key in COUNT_KEYS
    ]
    for key in keys:
        values = [f.get(key) for f in flats]
        rows.append({"metric": key, "values": values, "ratios": ratios_to_first(values)})
    return rows


def compare_table(runs: list[dict]) -> Table:
    table = Table(title="benchctl compare (ratio to the first run)")
    ceilings = [hwinfo.ceiling_for_run(r) for r in runs]
    rows = compare_rows(runs, ceilings)
    # metric names are never cut short: with many runs, "compute_ceiling_sha…" would name two rows
    table.add_column("metric", no_wrap=True, min_width=max(len(row["metric"]) for row in rows))
    for r in runs:
        cfg = r.get("config", {})
        args = " ".join(f"{k}={v}" for k, v in (cfg.get("engine_args") or {}).items())
        table.add_column(f"{r.get('run_id')}\n{cfg.get('backend')} {args}".strip(), justify="right")
    for row in rows:
        cells = [
            f"{_num(v)}" + (f" ({q:.2f}x)" if q is not None and i else "")
            for i, (v, q) in enumerate(zip(row["values"], row["ratios"]))
        ]
        table.add_row(row["metric"], *cells)
    workloads = {workload_line(r.get("workload", {})) for r in runs}
    hw = {hardware_line(r.get("environment", {}).get("hardware", {})) for r in runs}
    note = "same workload" if len(workloads) == 1 else "DIFFERENT workloads"
    table.caption = f"{note}: " + " | ".join(sorted(workloads)) + "\n" + " | ".join(sorted(hw))
    found = [c for c in ceilings if c is not None]
    if found:
        sources = sorted({f"{c['gemm_flop_s'] / 1e9:.1f} GFLOP/s at {c['measured_at']}" for c in found})
        farthest = max(c["minutes_away"] for c in found)
        table.caption += (
            "\ncompute ceiling = fp32 GEMM FLOP/s ÷ (2 × parameters) tokens/s, share = total tok/s ÷ "
            f"ceiling; benchctl hwinfo near each run (the fastest within {hwinfo.NEAR_RUN_MIN} min, "
            f"else the nearest; at most {farthest:.0f} min away): " + " | ".join(sources)
        )
        if farthest > STALE_CEILING_MIN:
            table.caption += f"\n{STALE_CEILING_WARNING}"
        best = max(found, key=lambda c: c.get("best_gemm_flop_s") or 0)
        if best.get("best_gemm_flop_s"):
            table.caption += (
                f"\nshare_of_best: against this CPU's fastest measurement, "
                f"{best['best_gemm_flop_s'] / 1e9:.1f} GFLOP/s at {best['best_measured_at']}"
            )
            if any(below_best(c) for c in found):
                table.caption += f"; {BELOW_BEST_WARNING}"
    table.caption_justify = "left"
    return table


def make_console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, width=None if not stderr else None)
