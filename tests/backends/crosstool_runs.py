"""Run vLLM's `bench serve`, guidellm, aiperf and benchctl against one OpenAI-compatible server, each writing its own
per-request result file: the cross-tool test, the error table of docs/crosstool.md and the sample files of
tests/harness/data/import/ all come from these.

Load: `rate` requests/s (Poisson) with no concurrency cap, or `concurrency` streams with everything due at t=0.
Each tool is told to ask for `output_len` tokens with ignore_eos; prompts are the tool's own synthetic ones unless
`prompts` is given (a custom dataset: the fake server fails a prompt that starts with `!status:500`).

    python -m tests.backends.crosstool_runs --table   # the error table of docs/crosstool.md (one round)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchctl import engines, tools
from benchctl.models import resolve_model

TIMEOUT_S = 300
_VLLM_MAIN = (
    "import sys; from vllm.benchmarks.serve import add_cli_args, main; "
    "from vllm.utils.argparse_utils import FlexibleArgumentParser; "
    "p = FlexibleArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))"
)


def model_dir() -> Path:
    return resolve_model("smollm2-135m").hf_dir


def missing_tools() -> list[str]:
    """What is not installed here, as the command that installs it."""
    missing = [] if engines.installed("vllm") else ["benchctl engines install vllm"]
    missing += [f"benchctl tools install {t}" for t in tools.TOOLS if tools.installed(t) is None]
    return missing


def _run(cmd: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> None:
    with open(log, "w") as out:
        proc = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, timeout=TIMEOUT_S, env={**os.environ, **(env or {})}
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}:\n{tail}")


def run_vllm_bench(
    base_url: str,
    out_dir: Path,
    n: int,
    output_len: int,
    rate: float | None = None,
    concurrency: int | None = None,
    seed: int = 0,
) -> Path:
    env = engines.installed("vllm")
    result = out_dir / "vllm_bench.json"
    load = ["--request-rate", str(rate)] if rate else ["--request-rate", "inf", "--max-concurrency", str(concurrency)]
    _run(
        [
            str(env.python),
            "-c",
            _VLLM_MAIN,
            "--backend",
            "openai",
            "--base-url",
            base_url,
            "--endpoint",
            "/v1/completions",
            "--model",
            str(model_dir()),
            "--served-model-name",
            "fake-model",
            "--dataset-name",
            "random",
            "--random-input-len",
            "16",
            "--random-output-len",
            str(output_len),
            "--num-prompts",
            str(n),
            "--seed",
            str(seed),
            "--ignore-eos",
            *load,
            "--save-result",
            "--save-detailed",
            "--result-dir",
            str(out_dir),
            "--result-filename",
            result.name,
        ],
        out_dir / "vllm_bench.log",
    )
    return result


def run_guidellm(
    base_url: str,
    out_dir: Path,
    n: int,
    output_len: int,
    rate: float | None = None,
    concurrency: int | None = None,
    prompts: list[str] | None = None,
) -> Path:
    env = tools.installed("guidellm")
    result = out_dir / "guidellm_benchmarks.json"
    if prompts:
        data_file = out_dir / "guidellm_prompts.jsonl"
        data_file.write_text(
            "".join(json.dumps({"prompt": p, "output_tokens_count": output_len}) + "\n" for p in prompts)
        )
        data = {"kind": "json_file", "path": str(data_file)}
    else:
        data = {"kind": "synthetic_text", "prompt_tokens": 16, "output_tokens": output_len}
    profile = {"kind": "poisson", "rate": [rate]} if rate else {"kind": "concurrent", "streams": [concurrency]}
    scenario = {
        "spec": {
            "backend": {
                "kind": "openai_http",
                "target": base_url,
                "model": "fake-model",
                "request_format": "/v1/completions",
            },
            "profile": profile,
            "constraints": [{"kind": "max_requests", "count": n}],
            "tokenizer": {"kind": "huggingface_auto", "model": str(model_dir())},
            "data": [data],
            "outputs": [{"kind": "json", "path": str(result)}],
        }
    }
    (out_dir / "guidellm_scenario.json").write_text(json.dumps(scenario, indent=1))
    _run(
        [
            str(tools.script(env, "guidellm")),
            "run",
            "--scenario",
            str(out_dir / "guidellm_scenario.json"),
            "--disable-progress",
        ],
        out_dir / "guidellm.log",
        cwd=out_dir,
    )
    return result


def run_aiperf(
    base_url: str,
    out_dir: Path,
    n: int,
    output_len: int,
    rate: float | None = None,
    concurrency: int | None = None,
    prompts: list[str] | None = None,
) -> Path:
    env = tools.installed("aiperf")
    artifacts = out_dir / "aiperf"
    load = (
        ["--request-rate", str(rate), "--arrival-pattern", "poisson"] if rate else ["--concurrency", str(concurrency)]
    )
    if prompts:
        data_file = out_dir / "aiperf_prompts.jsonl"
        data_file.write_text("".join(json.dumps({"text": p, "output_length": output_len}) + "\n" for p in prompts))
        data = ["--input-file", str(data_file), "--custom-dataset-type", "single_turn"]
    else:
        data = ["--prompt-input-tokens-mean", "16", "--prompt-input-tokens-stddev", "0"]
    _run(
        [
            str(tools.script(env, "aiperf")),
            "profile",
            "--model",
            "fake-model",
            "--url",
            base_url,
            "--endpoint-type",
            "completions",
            "--streaming",
            "--tokenizer",
            str(model_dir()),
            *load,
            "--request-count",
            str(n),
            *data,
            "--prompt-output-tokens-mean",
            str(output_len),
            "--prompt-output-tokens-stddev",
            "0",
            "--extra-inputs",
            "ignore_eos:true",
            "--random-seed",
            "0",
            "--output-artifact-dir",
            str(artifacts),
            "--ui-type",
            "none",
        ],
        out_dir / "aiperf.log",
        cwd=out_dir,
    )
    return artifacts / "profile_export.jsonl"


def run_benchctl(
    base_url: str, out_dir: Path, n: int, output_len: int, rate: float | None = None, concurrency: int | None = None
) -> Path:
    """`benchctl run --mode serving` against the server; returns the run folder."""
    load = ["--request-rate", str(rate)] if rate else ["--max-concurrency", str(concurrency)]
    results = out_dir / "benchctl"
    _run(
        [
            sys.executable,
            "-m",
            "benchctl",
            "run",
            "--mode",
            "serving",
            "--backend",
            "openai",
            "--base-url",
            base_url,
            "--model",
            "smollm2-135m",
            "--dataset",
            "random",
            "--num-prompts",
            str(n),
            "--random-input-len",
            "16",
            "--random-output-len",
            str(output_len),
            *load,
            "--output-dir",
            str(results),
        ],
        out_dir / "benchctl.log",
    )
    runs = sorted(p for p in results.iterdir() if (p / "run.json").is_file())
    return runs[-1]


def _table_round(ttft_ms: float, itl_ms: float, n: int, output_len: int) -> list[dict]:
    """One round: every tool at a Poisson rate and at a concurrency burst, errors of median TTFT and TPOT."""
    from benchctl import importers, store
    from benchctl.serving.bench import FakeServerProcess

    rows = []
    for load in ({"rate": 8.0}, {"concurrency": 16}):
        with (
            tempfile.TemporaryDirectory() as tmp,
            FakeServerProcess(
                "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--spin-us", "300", "--no-timings"
            ) as server,
        ):
            out = Path(tmp)
            runs = {}
            for name, fn in (("vllm bench", run_vllm_bench), ("guidellm", run_guidellm), ("aiperf", run_aiperf)):
                sub = out / name.replace(" ", "_")
                sub.mkdir()
                result = fn(server.base_url, sub, n, output_len, **load)
                runs[name] = store.load_run(importers.import_result(result, output_dir=out / "imported")[0])
            runs["benchctl"] = store.load_run(run_benchctl(server.base_url, out, n, output_len, **load))
            for name, run in runs.items():
                s = run["summary"]
                rows.append(
                    {
                        "tool": name,
                        "load": "rate 8/s" if "rate" in load else "16 concurrent",
                        "ttft_err_ms": s["ttft_s"]["median"] * 1000 - ttft_ms,
                        "tpot_err_pct": 100 * (s["tpot_s"]["median"] * 1000 / itl_ms - 1),
                        "completed": s["completed"],
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="cross-tool error table against the known-timing server")
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--output-len", type=int, default=32)
    args = parser.parse_args(argv)
    if args.table:
        print(json.dumps(_table_round(80.0, 20.0, args.requests, args.output_len)))


if __name__ == "__main__":
    main()
