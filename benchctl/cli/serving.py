"""CLI commands of serving mode: `benchctl serve` (the reference engine's OpenAI server) and `benchctl bench-client`."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from benchctl.backend import BackendError
from benchctl.models import DEFAULT_MODEL


def serve(
    backend: Annotated[
        str, typer.Option(help="Engine whose server to run (only `reference` has one in benchctl).")
    ] = "reference",
    model: Annotated[str, typer.Option(help="Alias, GGUF file, or HF folder.")] = DEFAULT_MODEL,
    model_name: Annotated[str | None, typer.Option(help="Name clients send as `model` (default: --model).")] = None,
    host: Annotated[
        str, typer.Option(help="Interface to bind; 0.0.0.0 exposes the server to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="BENCHCTL_API_KEY",
            show_envvar=False,
            help="Require `Authorization: Bearer KEY` (or $BENCHCTL_API_KEY).",
        ),
    ] = None,
    engine_arg: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE for the engine (repeatable); temperature/top_p/top_k set request defaults."),
    ] = None,
) -> None:
    """Serve the reference engine over an OpenAI-compatible HTTP API (completions, chat, models, health, metrics)."""
    from benchctl.backend import get_backend
    from benchctl.models import resolve_model
    from benchctl.run import parse_engine_args
    from benchctl.serving.launch import run_foreground, server_argv

    if backend != "reference":
        raise BackendError(
            f"`benchctl serve` runs the reference engine's server; {backend!r} has its own "
            f"(`benchctl run --mode serving --backend {backend}` launches it)"
        )
    spec = get_backend(backend)
    assert spec.check_args is not None and spec.server is not None  # the reference backend declares both
    reason = spec.unavailable_reason()
    if reason:
        raise BackendError(f"{backend}: {reason}")
    engine_args = parse_engine_args(engine_arg or [])
    spec.check_args(engine_args)  # a bad --engine-arg: one line, before the model is converted or loaded
    resolved = resolve_model(model, progress=lambda text: typer.echo(text, err=True))
    values = {
        "python": spec.python(),
        "model_dir": str(resolved.hf_dir),
        "gguf_path": str(resolved.gguf_path or ""),
        "model_name": model_name or model,
        "host": host,
        "port": str(port),
        "max_model_len": engine_args.get("max_model_len", ""),
    }
    argv, env = server_argv(spec.server, values, engine_args)
    # the server (backends/reference_server) runs in its own process: the harness never imports the engine
    code = run_foreground(argv, {**env, "BENCHCTL_API_KEY": api_key} if api_key else env)
    if code:
        raise typer.Exit(code)


def bench_client(
    requests: Annotated[int, typer.Option(help="Requests in the throughput phase.")] = 5000,
    concurrency: Annotated[int, typer.Option(help="Max concurrency in the throughput phase.")] = 64,
    output_len: Annotated[int, typer.Option(help="Streamed tokens (chunks) per request.")] = 8,
    ttft_ms: Annotated[float, typer.Option(help="Latency phase: server's time to first chunk.")] = 20.0,
    itl_ms: Annotated[float, typer.Option(help="Latency phase: server's gap between chunks.")] = 5.0,
    client_processes: Annotated[
        int, typer.Option(min=1, help="Load client processes (as in run --client-processes).")
    ] = 1,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Measure the load client against a trivial local server: requests/s it sustains, latency it adds."""
    from benchctl.envinfo import environment, hardware_line
    from benchctl.serving.bench import bench_client as run_bench

    result = run_bench(requests, concurrency, output_len, ttft_ms, itl_ms, processes=client_processes)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    t, lat = result["throughput"], result["latency"]
    lag = lat["client_lag_ms"]
    typer.echo(hardware_line(environment().get("hardware", {})))
    typer.echo(
        f"throughput: {t['client_processes']} client process(es), {t['completed']}/{t['requests']} requests "
        f"({t['failed']} failed), max concurrency "
        f"{t['max_concurrency']}, {t['output_tokens']} chunks each: {t['request_throughput']:,.0f} req/s "
        f"({t['chunks_per_s']:,.0f} chunks/s) in {t['duration_s']:.2f} s"
    )
    typer.echo(
        f"client CPU: {t['client_cpu_us_per_request']:,.0f} us per request (loops + record pump) -> "
        f"{t['client_capacity_req_s_per_core']:,.0f} req/s per core of client capacity; fake server "
        f"{t['server_cpu_us_per_request']:,.0f} us per request; 1-min load average at start "
        f"{t['load_average_1m']:.1f} on {os.cpu_count()} cores"
    )
    typer.echo(
        f"added latency per chunk (client timestamp - server send time, {lat['chunks']} chunks, "
        f"{lat['request_rate']:g} req/s): p50 {lag['p50']:.3f} ms, p90 {lag['p90']:.3f} ms, "
        f"p99 {lag['p99']:.3f} ms, max {lag['max']:.3f} ms"
    )
    typer.echo(
        f"server set TTFT {lat['server_ttft_ms']:g} ms, ITL {lat['server_itl_ms']:g} ms; client measured "
        f"TTFT mean {lat['measured_ttft_ms']['mean']:.3f} ms, "
        f"TPOT mean {lat['measured_tpot_ms']['mean']:.3f} ms, "
        f"ITL mean {lat['measured_itl_ms']['mean']:.3f} ms"
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command("bench-client")(bench_client)
