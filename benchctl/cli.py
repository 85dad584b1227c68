"""`benchctl`: run, backends, datasets, show, compare."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchctl import console as render
from benchctl import hwinfo
from benchctl import store
from benchctl.backend import BackendError, list_backends
from benchctl.engines_cli import engines_app
from benchctl.kernelbench import bench_attention_command
from benchctl.models import DEFAULT_MODEL, ModelError, resolve_model
from benchctl.metrics import flat_metrics
from benchctl.regress import GateInputError
from benchctl.report import report_command
from benchctl.sweep import SweepSpecError
from benchctl.runner import RunConfig, RunFailed, parse_engine_args, run_benchmark
from benchctl.runner import Progress as RunProgress
from benchctl.serving.commands import register_commands
from benchctl.workload import DEFAULT_DATASET, WorkloadError, WorkloadOptions, load_tokenizer, resolve_dataset
from benchctl.workload.sharegpt import load_conversations

# typer may vendor click: find its ClickException through typer's own BadParameter.
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
USER_ERRORS = (ModelError, WorkloadError, BackendError, store.RunNotFound, GateInputError, SweepSpecError)

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="Benchmark LLM inference engines on one workload with one set of metric definitions.")
app.add_typer(engines_app, name="engines")
# Without a terminal (CI logs, pipes) rich would wrap at 80 columns; tables read better wider.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _error_line(text: str) -> None:
    """One line, never wrapped: scripts grep for it."""
    sys.stderr.write("benchctl: error: " + " ".join(text.split()) + "\n")


class _RichProgress(RunProgress):
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: Progress | None = None
        self.task = None
        self.output_tokens = 0

    def stage(self, text: str) -> None:
        if self.enabled:
            err.print(f"[dim]·[/dim] {text}")

    def start_requests(self, total: int) -> None:
        if not self.enabled:
            return
        self.bar = Progress(TextColumn("requests"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[tokens]} output tokens"), TimeElapsedColumn(),
                            console=err, transient=True)
        self.task = self.bar.add_task("run", total=total, tokens=0)
        self.bar.start()

    def request_done(self, record: dict) -> None:
        self.output_tokens += record.get("output_tokens") or 0
        if self.bar is not None:
            self.bar.update(self.task, advance=1, tokens=self.output_tokens)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _parse_goodput(items: list[str]) -> dict[str, float]:
    slos = {}
    for item in items:
        key, sep, value = item.partition(":")
        try:
            if not sep or key not in ("ttft", "tpot", "e2el") or not 0 < float(value) < math.inf:
                raise ValueError
            slos[key] = float(value)
        except ValueError:
            raise typer.BadParameter(f"expected ttft|tpot|e2el:MILLISECONDS, got {item!r}",
                                     param_hint="--goodput") from None
    return slos


@app.command()
def run(
    backend: Annotated[str, typer.Option(help="Engine to benchmark (see `benchctl backends`).")] = "reference",
    model: Annotated[str, typer.Option(help="Alias, GGUF file, or HF folder (config.json + safetensors).")] = DEFAULT_MODEL,
    dataset: Annotated[str, typer.Option(help="Bundled name, a ShareGPT JSON path, sharegpt:PATH, or random.")] = DEFAULT_DATASET,
    num_prompts: Annotated[int, typer.Option(help="Number of requests (of conversations with --workload conversations).")] = 16,
    seed: Annotated[int, typer.Option(help="Seed for sampling prompts, lengths and arrivals.")] = 0,
    workload: Annotated[str, typer.Option(help="single-turn (a prompt and its answer per entry) or conversations (whole multi-turn ShareGPT conversations, each turn sent with the history after the previous answer).")] = "single-turn",
    max_turns: Annotated[Optional[int], typer.Option(help="conversations: at most this many turns per conversation.")] = None,
    think_time: Annotated[float, typer.Option(help="conversations: seconds between an answer and the next user turn.")] = 0.0,
    history: Annotated[str, typer.Option(help="conversations: earlier answers sent back as recorded in the dataset (identical prompts for every engine) or as generated (what a chat client sends).")] = "recorded",
    mode: Annotated[str, typer.Option(help="offline (engine in a worker process) or serving.")] = "offline",
    request_rate: Annotated[float, typer.Option(help="Requests per second; inf sends everything at t=0.")] = math.inf,
    burstiness: Annotated[float, typer.Option(help="Gamma shape of inter-arrival gaps (1 = Poisson).")] = 1.0,
    arrival: Annotated[str, typer.Option(help="Arrival process for a finite rate: poisson, gamma or constant.")] = "poisson",
    max_concurrency: Annotated[Optional[int], typer.Option(help="Cap on requests in flight.")] = None,
    random_input_len: Annotated[int, typer.Option(help="random dataset: mean input tokens.")] = 144,
    random_output_len: Annotated[int, typer.Option(help="random dataset: mean output tokens.")] = 144,
    random_range_ratio: Annotated[float, typer.Option(help="random dataset: lengths uniform in len*(1±ratio).")] = 0.0,
    random_prefix_len: Annotated[int, typer.Option(help="random dataset: shared prefix tokens.")] = 0,
    sharegpt_output_len: Annotated[Optional[int], typer.Option(help="Fixed output length for ShareGPT.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Static batch size (backends that batch statically).")] = None,
    engine_arg: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE passed to the engine (repeatable).")] = None,
    goodput: Annotated[Optional[list[str]], typer.Option(help="SLO for goodput, e.g. ttft:500 (ms; repeatable).")] = None,
    output_dir: Annotated[Path, typer.Option(help="Where run folders are written.")] = Path("results"),
    label: Annotated[Optional[str], typer.Option(help="Free-text label stored with the run.")] = None,
    base_url: Annotated[Optional[list[str]], typer.Option(help="serving: attach to this OpenAI-compatible server instead of launching one; repeat for several servers (requests go round-robin).")] = None,
    endpoint: Annotated[str, typer.Option(help="serving: completions or chat.")] = "completions",
    api_key: Annotated[Optional[str], typer.Option(envvar="OPENAI_API_KEY", show_envvar=False, help="serving: bearer token for the server (or $OPENAI_API_KEY).")] = None,
    warmup_requests: Annotated[int, typer.Option(help="serving: requests sent before the run, excluded from metrics.")] = 0,
    request_timeout: Annotated[float, typer.Option(help="serving: seconds a request may take before it counts as failed.")] = 600.0,
    client_processes: Annotated[int, typer.Option(help="serving: load client processes (for rates one event loop cannot send).")] = 1,
    quantization: Annotated[Optional[str], typer.Option(help="Weight quantization where the backend offers it (hf: bnb-4bit, bnb-8bit; CUDA only). Same as --engine-arg quantization=...")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print run.json to stdout instead of a table.")] = False,
    profile: Annotated[str, typer.Option(help="none, torch (torch.profiler trace) or nsys (Nsight Systems).")] = "none",
    measure_ceiling: Annotated[bool, typer.Option(
        help="Measure the machine's ceilings (benchctl hwinfo, a few seconds) right before and after the run and "
             "keep them in run.json: its share of the compute ceiling is then the machine's at the time.")] = False,
) -> None:
    """Run a benchmark and write results/<run-id>/ (run.json, requests.jsonl, requests.parquet)."""
    engine_args = parse_engine_args(engine_arg or [])
    if quantization is not None:
        if engine_args.setdefault("quantization", quantization) != quantization:
            raise typer.BadParameter("--quantization and --engine-arg quantization=... disagree")
    config = RunConfig(
        backend=backend, model=model, mode=mode, batch_size=batch_size,
        engine_args=engine_args, output_dir=output_dir,
        slos_ms=_parse_goodput(goodput or []), label=label, profile=profile, base_url=(base_url or [None])[0],
        extra_base_urls=list(base_url or [])[1:], endpoint=endpoint,
        api_key=api_key, warmup_requests=warmup_requests, request_timeout_s=request_timeout,
        client_processes=client_processes, workload=WorkloadOptions(
            dataset=dataset, num_prompts=num_prompts, seed=seed, sharegpt_output_len=sharegpt_output_len,
            kind=workload, max_turns=max_turns, think_time_s=think_time, history=history,
            random_input_len=random_input_len, random_output_len=random_output_len,
            random_range_ratio=random_range_ratio, random_prefix_len=random_prefix_len,
            request_rate=request_rate, burstiness=burstiness, arrival=arrival, max_concurrency=max_concurrency))
    if measure_ceiling:
        _measure_ceiling("before the run", json_out)
    progress = _RichProgress(enabled=not json_out)
    try:
        run_dir = run_benchmark(config, progress)
    except RunFailed as e:
        progress.close()
        err.print(f"[red]benchctl: run failed:[/red] {e}\nfinished records kept in {e.run_dir}")
        if e.log_tail:
            err.print(f"[dim]worker log (tail):\n{e.log_tail}[/dim]", markup=False)
        raise typer.Exit(1) from None
    progress.close()
    run = store.load_run(run_dir)
    if measure_ceiling and _measure_ceiling("after the run", json_out):
        run.setdefault("environment", {})["hwinfo"] = hwinfo.near_run(run)
        store.write_json_atomic(run_dir / "run.json", store.clean_floats(run))
    _print_run(run, json_out)
    if not json_out:
        err.print(f"results: {run_dir}")


def _measure_ceiling(when: str, quiet: bool) -> bool:
    """benchctl hwinfo --refresh in a child process; a failure is a warning, never the run's end."""
    if not quiet:
        err.print(f"· measuring the machine's ceilings {when} (benchctl hwinfo)")
    result, why = hwinfo.measure_in_subprocess()
    if result is None:
        err.print(f"[yellow]benchctl: warning:[/yellow] could not measure the ceilings {when}: {why}")
    return result is not None


def _print_run(run: dict, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(run, indent=2))
    else:
        out.print(render.summary_table(run))


@app.command()
def show(run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run folder or run id.")],
         output_dir: Annotated[Path, typer.Option(help="Where to look up run ids.")] = Path("results"),
         json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a finished (or failed) run's summary."""
    _print_run(store.load_run(store.resolve_run(run_ref, output_dir)), json_out)


@app.command()
def compare(run_refs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Two or more runs; the first is the baseline.")],
            output_dir: Annotated[Path, typer.Option(help="Where to look up run ids.")] = Path("results"),
            json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Side-by-side table of runs with ratios to the first."""
    if len(run_refs) < 2:
        raise typer.BadParameter("give at least two runs", param_hint="RUN...")
    runs = [store.load_run(store.resolve_run(ref, output_dir)) for ref in run_refs]
    if json_out:
        typer.echo(json.dumps({"runs": [r["run_id"] for r in runs], "rows": render.compare_rows(runs)}, indent=2))
    else:
        out.print(render.compare_table(runs))


@app.command()
def backends(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered backends and whether they can run on this machine."""
    found = list_backends()
    rows = []
    for name, b in found.items():
        if isinstance(b, str):
            rows.append({"name": name, "available": False, "reason": b, "description": "", "capabilities": [],
                         "extra": None, "engine_args": {}})
            continue
        reason = b.unavailable_reason()
        caps = [k for k, v in b.capabilities.__class__.__dataclass_fields__.items() if getattr(b.capabilities, k)]
        rows.append({"name": name, "available": reason is None, "reason": reason, "description": b.description,
                     "capabilities": caps, "extra": b.extra, "engine_args": b.engine_args})
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="benchctl backends")
    for col in ("backend", "available", "capabilities", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], "yes" if r["available"] else f"no: {r['reason']}", ", ".join(r["capabilities"]),
                      r["description"])
    out.print(table)


@app.command()
def datasets(
    dataset: Annotated[str, typer.Argument(help="Bundled name or ShareGPT JSON path.")] = DEFAULT_DATASET,
    model: Annotated[str, typer.Option(help="Tokenizer of this model counts the tokens.")] = DEFAULT_MODEL,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Token-length statistics of a ShareGPT-format dataset under a model's tokenizer."""
    from benchctl.workload import bundled_datasets, length_stats

    kind, path = resolve_dataset(dataset)
    if kind != "sharegpt":
        raise WorkloadError("`benchctl datasets` describes ShareGPT files; random datasets have no file")
    conversations = load_conversations(path)
    tokenizer = load_tokenizer(str(resolve_model(model, progress=err.print).hf_dir))
    pairs = [c["conversations"] for c in conversations if len(c["conversations"]) >= 2]
    prompt_lens = [len(t) for t in tokenizer.encode_batch([p[0]["value"] for p in pairs])]
    output_lens = [len(t) for t in tokenizer.encode_batch([p[1]["value"] for p in pairs])]
    turns = [len(c["conversations"]) for c in conversations]
    stats = {"path": str(path), "conversations": len(conversations), "pairs": len(pairs),
             "turns": length_stats(turns), "prompt_tokens": length_stats(prompt_lens),
             "output_tokens": length_stats(output_lens), "bundled": sorted(bundled_datasets())}
    if json_out:
        typer.echo(json.dumps(stats, indent=2))
        return
    table = Table(title=f"{path.name}: {len(conversations)} conversations, {len(pairs)} with >= 2 turns")
    for col in ("", "mean", "p50", "p90", "p99", "max"):
        table.add_column(col, justify="right")
    for name in ("turns", "prompt_tokens", "output_tokens"):
        s = stats[name]
        table.add_row(name, *(render._num(s.get(k), 1) for k in ("mean", "p50", "p90", "p99", "max")))
    out.print(table)


@app.command()
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


@app.command()
def sweep(
    spec_file: Annotated[Optional[Path], typer.Argument(metavar="[SPEC.yaml]", help="Sweep spec (YAML); flags build one otherwise.")] = None,
    backend: Annotated[Optional[list[str]], typer.Option(help="Backend(s) to sweep (repeatable).")] = None,
    request_rate: Annotated[Optional[list[float]], typer.Option(help="Request rate(s) (repeatable; inf allowed).")] = None,
    max_concurrency: Annotated[Optional[list[int]], typer.Option(help="Concurrency cap(s) (repeatable).")] = None,
    engine_arg_grid: Annotated[Optional[list[str]], typer.Option(help="KEY=V1,V2 swept engine option (repeatable).")] = None,
    engine_arg: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE fixed for every cell (repeatable).")] = None,
    repetitions: Annotated[int, typer.Option(help="Runs per cell.")] = 1,
    model: Annotated[str, typer.Option()] = DEFAULT_MODEL,
    mode: Annotated[str, typer.Option()] = "offline",
    dataset: Annotated[str, typer.Option()] = DEFAULT_DATASET,
    num_prompts: Annotated[int, typer.Option()] = 16,
    seed: Annotated[int, typer.Option()] = 0,
    random_input_len: Annotated[int, typer.Option()] = 144,
    random_output_len: Annotated[int, typer.Option()] = 144,
    random_range_ratio: Annotated[float, typer.Option()] = 0.0,
    goodput: Annotated[Optional[list[str]], typer.Option(help="SLO, e.g. ttft:500 (ms; repeatable).")] = None,
    executor: Annotated[str, typer.Option(help="local (one cell at a time here) or ray (an existing cluster).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: RAY_ADDRESS or a local instance).")] = None,
    num_cpus: Annotated[float, typer.Option(help="Ray: CPUs each cell requests.")] = 1.0,
    num_gpus: Annotated[float, typer.Option(help="Ray: GPUs each cell requests.")] = 0.0,
    saturate: Annotated[bool, typer.Option(help="Bisect for the highest rate whose goodput SLOs still hold.")] = False,
    rate_low: Annotated[float, typer.Option(help="Saturation search: lowest rate (req/s).")] = 0.25,
    rate_high: Annotated[float, typer.Option(help="Saturation search: highest rate (req/s).")] = 16.0,
    target: Annotated[float, typer.Option(help="Saturation search: fraction of requests that must meet the SLOs.")] = 0.9,
    output_dir: Annotated[Path, typer.Option(help="Where the sweep folder is written.")] = Path("results/sweeps"),
) -> None:
    """Run a matrix of benchmarks (or a saturation search); each cell is an ordinary run folder."""
    from benchctl import sweep as sw

    if spec_file is not None:
        spec = sw.load_spec(spec_file)
    else:
        grid = {}
        for item in engine_arg_grid or []:
            key, sep, values = item.partition("=")
            if not sep or not key:
                raise sw.SweepSpecError(f"--engine-arg-grid expects KEY=V1,V2, got {item!r}")
            grid[key] = values.split(",")
        spec = sw.spec_from_dict({
            "backends": backend or ["reference"], "request_rates": request_rate or [math.inf],
            "max_concurrency": max_concurrency or [None], "engine_args": grid,
            "fixed_engine_args": parse_engine_args(engine_arg or []), "repetitions": repetitions,
            "model": model, "mode": mode, "slos_ms": _parse_goodput(goodput or []),
            "workload": {"dataset": dataset, "num_prompts": num_prompts, "seed": seed,
                         "random_input_len": random_input_len, "random_output_len": random_output_len,
                         "random_range_ratio": random_range_ratio}}, "flags")
    if saturate:
        result = sw.saturate(spec, output_dir, rate_low, rate_high, target,
                             on_probe=lambda r, a: err.print(f"rate {r:.3g} req/s: {a:.0%} of requests met the SLOs"))
        rate = result.get("saturation_rate")
        out.print(f"saturation rate: {rate:.3g} req/s" if rate else f"no saturation rate: {result.get('note')}")
        err.print(f"sweep: {result['sweep_dir']}")
        return
    if executor not in ("local", "ray"):
        raise sw.SweepSpecError(f"--executor must be local or ray, got {executor!r}")
    runner = sw.LocalExecutor() if executor == "local" else sw.RayExecutor(ray_address, num_cpus, num_gpus)
    total = len(sw.cells(spec))
    sweep_dir = sw.run_sweep(spec, output_dir, runner, on_cell=lambda c, r: err.print(
        f"[{c.index + 1}/{total}] {c.label()}: {r['status']} -> {r['run_dir'].name}"))
    index = store.load_run_index(sweep_dir)
    table = Table(title=f"sweep {sweep_dir.name}")
    for col in ("cell", "status", "req/s", "output tok/s", "vs first", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms"):
        table.add_column(col)
    baseline = None
    for c in index["cells"]:
        run = store.load_run(sweep_dir / c["run"])
        f = flat_metrics(run.get("summary", {}))
        tok_s = f.get("output_tok_s")
        baseline = baseline or tok_s
        ratio = f"{tok_s / baseline:.2f}x" if tok_s and baseline else "-"
        table.add_row(c["label"], c["status"], render._num(f.get("request_throughput")), render._num(tok_s), ratio,
                      *(render._num(f.get(k)) for k in ("ttft_median_ms", "ttft_p99_ms", "tpot_median_ms")))
    out.print(table)
    err.print(f"sweep: {sweep_dir}")


register_commands(app)  # serve, bench-client
app.command("report")(report_command)
app.command("hwinfo")(hwinfo.hwinfo_command)
app.command("bench-attention")(bench_attention_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit code 2, never a traceback."""
    try:
        code = app(args=argv, standalone_mode=False)  # without standalone mode, typer.Exit comes back as a code
    except USER_ERRORS as e:
        _error_line(str(e))
        return 2
    except _CLICK_ERROR as e:  # bad option values, unknown options, missing arguments
        _error_line(e.format_message())
        return 2
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err.print("benchctl: interrupted; finished records are kept in the run folder")
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
