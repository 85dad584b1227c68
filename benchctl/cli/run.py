"""`benchctl run`: options -> RunConfig -> benchctl.run, with a progress bar and the summary table."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from benchctl import console as render
from benchctl import hwinfo, metrics, store
from benchctl.cli.output import err, out
from benchctl.models import DEFAULT_MODEL
from benchctl.run import Interrupted, RunConfig, RunFailed, parse_engine_args, run_benchmark
from benchctl.run import Progress as RunProgress
from benchctl.run.folder import RunFolder
from benchctl.workload import DEFAULT_DATASET, WorkloadOptions


class RichProgress(RunProgress):
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.output_tokens = 0

    def stage(self, text: str) -> None:
        if self.enabled:
            err.print(f"[dim]·[/dim] {text}")

    def start_requests(self, total: int) -> None:
        if not self.enabled:
            return
        self.bar = Progress(
            TextColumn("requests"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[tokens]} output tokens"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        self.task = self.bar.add_task("run", total=total, tokens=0)
        self.bar.start()

    def request_done(self, record: dict) -> None:
        self.output_tokens += record.get("output_tokens") or 0
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=1, tokens=self.output_tokens)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def parse_goodput(items: list[str]) -> dict[str, float]:
    """--goodput values by benchctl.metrics' one rule, its complaint as the option's error."""
    try:
        return metrics.parse_slos(items)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--goodput") from None


def run(
    backend: Annotated[str, typer.Option(help="Engine to benchmark (see `benchctl backends`).")] = "reference",
    model: Annotated[
        str, typer.Option(help="Alias, GGUF file, or HF folder (config.json + safetensors).")
    ] = DEFAULT_MODEL,
    dataset: Annotated[
        str, typer.Option(help="Bundled name, a ShareGPT JSON path, sharegpt:PATH, or random.")
    ] = DEFAULT_DATASET,
    num_prompts: Annotated[
        int | None,
        typer.Option(
            help="Number of requests (of conversations with --workload conversations); default 16, a trace's whole "
            "window, or what --duration / --stages schedule."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling prompts, lengths and arrivals.")] = 0,
    workload: Annotated[
        str,
        typer.Option(
            help="single-turn (a prompt and its answer per entry) or conversations (whole multi-turn ShareGPT "
            "conversations, each turn sent with the history after the previous answer)."
        ),
    ] = "single-turn",
    max_turns: Annotated[
        int | None, typer.Option(help="conversations: at most this many turns per conversation.")
    ] = None,
    think_time: Annotated[
        float, typer.Option(help="conversations: seconds between an answer and the next user turn.")
    ] = 0.0,
    history: Annotated[
        str,
        typer.Option(
            help="conversations: earlier answers sent back as recorded in the dataset (identical prompts for "
            "every engine) or as generated (what a chat client sends)."
        ),
    ] = "recorded",
    mode: Annotated[str, typer.Option(help="offline (engine in a worker process) or serving.")] = "offline",
    request_rate: Annotated[float, typer.Option(help="Requests per second; inf sends everything at t=0.")] = math.inf,
    burstiness: Annotated[float, typer.Option(help="Gamma shape of inter-arrival gaps (1 = Poisson).")] = 1.0,
    arrival: Annotated[
        str, typer.Option(help="Arrival process for a finite rate: poisson, gamma or constant.")
    ] = "poisson",
    max_concurrency: Annotated[int | None, typer.Option(help="Cap on requests in flight.")] = None,
    random_input_len: Annotated[int, typer.Option(help="random dataset: mean input tokens.")] = 144,
    random_output_len: Annotated[int, typer.Option(help="random dataset: mean output tokens.")] = 144,
    random_range_ratio: Annotated[float, typer.Option(help="random dataset: lengths uniform in len*(1±ratio).")] = 0.0,
    random_prefix_len: Annotated[int, typer.Option(help="random dataset: shared prefix tokens.")] = 0,
    sharegpt_output_len: Annotated[int | None, typer.Option(help="Fixed output length for ShareGPT.")] = None,
    oversample: Annotated[
        bool,
        typer.Option(
            help="ShareGPT: when fewer pairs pass the filters than --num-prompts, repeat picks as vllm bench does "
            "(repeated prompts meet a prefix cache) instead of refusing."
        ),
    ] = False,
    batch_size: Annotated[int | None, typer.Option(help="Static batch size (backends that batch statically).")] = None,
    engine_arg: Annotated[list[str] | None, typer.Option(help="KEY=VALUE passed to the engine (repeatable).")] = None,
    goodput: Annotated[list[str] | None, typer.Option(help="SLO for goodput, e.g. ttft:500 (ms; repeatable).")] = None,
    output_dir: Annotated[Path, typer.Option(help="Where run folders are written.")] = Path("results"),
    label: Annotated[str | None, typer.Option(help="Free-text label stored with the run.")] = None,
    base_url: Annotated[
        list[str] | None,
        typer.Option(
            help="serving: attach to this OpenAI-compatible server instead of launching one; repeat for several "
            "servers (requests go round-robin)."
        ),
    ] = None,
    endpoint: Annotated[str, typer.Option(help="serving: completions or chat.")] = "completions",
    api_key: Annotated[
        str | None,
        typer.Option(
            help="serving: bearer token for the server. Without it $OPENAI_API_KEY is sent, but only over https, to "
            "this machine, or to a server benchctl launches."
        ),
    ] = None,
    warmup_requests: Annotated[
        int, typer.Option(help="serving: requests sent before the run, excluded from metrics.")
    ] = 0,
    request_timeout: Annotated[
        float, typer.Option(help="serving: seconds a request may take before it counts as failed.")
    ] = 600.0,
    client_processes: Annotated[
        int, typer.Option(help="serving: load client processes (for rates one event loop cannot send).")
    ] = 1,
    force: Annotated[
        bool, typer.Option(help="serving: run more --client-processes than this machine has CPUs.")
    ] = False,
    load_generators: Annotated[
        str | None,
        typer.Option(
            help="serving: the load client on a Ray cluster, ray or ray:ADDRESS (ray:auto, ray:HOST:6379); "
            "docs/distributed.md."
        ),
    ] = None,
    generator_nodes: Annotated[
        int, typer.Option(help="serving, with --load-generators: one load generator per node on this many nodes.")
    ] = 1,
    stall_timeout: Annotated[
        float,
        typer.Option(
            help="offline: seconds without any event from the engine (a finished request or a step) before the run "
            "fails as stalled; inf waits for ever."
        ),
    ] = 600.0,
    quantization: Annotated[
        str | None,
        typer.Option(
            help="Weight quantization where the backend offers it (hf: bnb-4bit, bnb-8bit; CUDA only). Same as "
            "--engine-arg quantization=..."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print run.json to stdout instead of a table.")] = False,
    profile: Annotated[
        str,
        typer.Option(help="none, torch (torch.profiler trace), nsys (Nsight Systems) or ncu (Nsight Compute kernels)."),
    ] = "none",
    measure_ceiling: Annotated[
        bool,
        typer.Option(
            help="Measure the machine's ceilings (benchctl hwinfo, a few seconds) right before and after the run and "
            "keep them in run.json: its share of the compute ceiling is then the machine's at the time."
        ),
    ] = False,
    trace_speed: Annotated[float, typer.Option(help="--dataset trace:PATH: replay this many times faster.")] = 1.0,
    trace_window: Annotated[
        str | None, typer.Option(help="trace: replay START:END, seconds after its first timestamp.")
    ] = None,
    trace_model: Annotated[str | None, typer.Option(help="trace (BurstGPT CSV): keep this Model's rows.")] = None,
    trace_columns: Annotated[
        str | None,
        typer.Option(
            help="trace (JSONL of another layout): timestamp=COL,input=COL,output=COL[,hash_ids=COL][,unit=ms|s]."
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(help="Requests arrive on the schedule until this time (60s, 1.5m), as many as it takes."),
    ] = None,
    warmup: Annotated[
        str | None,
        typer.Option(help="Arrivals of the first 10s (or 20r: requests) are left out of the steady-state metrics."),
    ] = None,
    cooldown: Annotated[
        str | None, typer.Option(help="Arrivals of the last 10s (or 20r) are left out of the steady-state metrics.")
    ] = None,
    ramp_up_strategy: Annotated[
        str | None,
        typer.Option(
            help="linear or exponential: the rate goes from --ramp-up-start-rps to --ramp-up-end-rps (vLLM's)."
        ),
    ] = None,
    ramp_up_start_rps: Annotated[float | None, typer.Option(help="Ramp: the first rate (req/s).")] = None,
    ramp_up_end_rps: Annotated[float | None, typer.Option(help="Ramp: the last rate (req/s).")] = None,
    stages: Annotated[
        str | None, typer.Option(help="Stages of RATE:TIME, e.g. 2:30s,4:30s,8:30s, each reported on its own.")
    ] = None,
    stop_on_saturation: Annotated[
        bool,
        typer.Option(help="serving: stop when the server falls behind the schedule or its TTFT grows without bound."),
    ] = False,
    max_error_rate: Annotated[
        float | None,
        typer.Option(help="serving: stop when more than this fraction of the last finished requests failed."),
    ] = None,
) -> None:
    """Run a benchmark and write results/<run-id>/ (run.json, requests.jsonl, requests.parquet)."""
    engine_args = parse_engine_args(engine_arg or [])
    if quantization is not None:
        if engine_args.setdefault("quantization", quantization) != quantization:
            raise typer.BadParameter("--quantization and --engine-arg quantization=... disagree")
    env_key = os.environ.get("OPENAI_API_KEY") if api_key is None and mode == "serving" else None
    if env_key and importlib.util.find_spec("aiohttp"):  # serving.request needs aiohttp (the serving extra)
        from benchctl.serving.request import effective_api_key

        api_key, warning = effective_api_key(None, env_key, base_url or None)
        if warning:
            err.print(f"benchctl: warning: {warning}", markup=False)
    config = RunConfig(
        backend=backend,
        model=model,
        mode=mode,
        batch_size=batch_size,
        engine_args=engine_args,
        output_dir=output_dir,
        slos_ms=parse_goodput(goodput or []),
        label=label,
        profile=profile,
        base_url=base_url[0] if base_url else None,
        extra_base_urls=list(base_url or [])[1:],
        endpoint=endpoint,
        api_key=api_key,
        warmup_requests=warmup_requests,
        request_timeout_s=request_timeout,
        client_processes=client_processes,
        force=force,
        stall_timeout_s=stall_timeout,
        load_generators=load_generators,
        generator_nodes=generator_nodes,
        workload=WorkloadOptions(
            dataset=dataset,
            num_prompts=num_prompts,
            seed=seed,
            sharegpt_output_len=sharegpt_output_len,
            oversample=oversample,
            kind=workload,
            max_turns=max_turns,
            think_time_s=think_time,
            history=history,
            random_input_len=random_input_len,
            random_output_len=random_output_len,
            random_range_ratio=random_range_ratio,
            random_prefix_len=random_prefix_len,
            request_rate=request_rate,
            burstiness=burstiness,
            arrival=arrival,
            max_concurrency=max_concurrency,
            trace_speed=trace_speed,
            trace_window=trace_window,
            trace_model=trace_model,
            trace_columns=trace_columns,
            duration=duration,
            warmup=warmup,
            cooldown=cooldown,
            ramp_up_strategy=ramp_up_strategy,
            ramp_up_start_rps=ramp_up_start_rps,
            ramp_up_end_rps=ramp_up_end_rps,
            stages=stages,
            stop_on_saturation=stop_on_saturation,
            max_error_rate=max_error_rate,
        ),
    )
    if measure_ceiling:
        _measure_ceiling("before the run", json_out)
    progress = RichProgress(enabled=not json_out)
    try:
        run_dir = run_benchmark(config, progress)
    except RunFailed as e:
        progress.close()
        err.print(f"[red]benchctl: run failed:[/red] {e}\nfinished records kept in {e.run_dir}")
        if e.log_tail:
            err.print(f"[dim]worker log (tail):\n{e.log_tail}[/dim]", markup=False)
        raise typer.Exit(1) from None
    except Interrupted as e:  # SIGINT or SIGTERM: run.json says `failed` with the reason, the records are kept
        progress.close()
        err.print(f"benchctl: {e}; finished records are kept in the run folder")
        raise typer.Exit(e.exit_code) from None
    progress.close()
    if measure_ceiling and _measure_ceiling("after the run", json_out):
        RunFolder.open(run_dir).refresh_hwinfo()
    run = store.load_run(run_dir)
    print_run(run, json_out)
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


def print_run(run: dict, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(run, indent=2))
    else:
        out.print(render.summary_table(run))


def register(app: typer.Typer) -> None:
    app.command()(run)
