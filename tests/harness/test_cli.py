"""The CLI: bad input is one `benchctl: error:` line and exit code 2; backends, show and compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchctl.backend import Backend, Capabilities
from benchctl.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run from an empty folder: the default --output-dir results/ must stay absent on errors."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "noconv.json").write_text('[{"id": "x", "turns": []}]')
    return tmp_path


def run_cli(capsys, argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


RANDOM = ["--dataset", "random", "--num-prompts", "2", "--random-input-len", "8", "--random-output-len", "4"]

BAD_INPUT = [
    (["run", "--backend", "hf", "--dataset", "{tmp}/missing.json"], "dataset file not found: {tmp}/missing.json"),
    (["run", "--backend", "hf", "--dataset", "{tmp}/bad.json"], "{tmp}/bad.json: not valid JSON"),
    (["run", "--backend", "hf", "--dataset", "sharegpt:{tmp}/noconv.json"], "entry 0 has no 'conversations' list"),
    (["run", "--backend", "hf", "--dataset", "no-such-dataset"], "unknown dataset 'no-such-dataset'"),
    (["run", "--backend", "nope", *RANDOM], "unknown backend 'nope'; available: "),
    (["run", "--backend", "hf", "--model", "no-such-model", *RANDOM], "unknown model 'no-such-model'"),
    (["run", "--backend", "hf", "--model", "{tmp}/bad.json", *RANDOM], "not a GGUF file or a HF model folder"),
    (["run", "--backend", "reference", *RANDOM, "--request-rate=-1"], "--request-rate must be > 0 (or inf), got -1.0"),
    (
        ["run", "--backend", "reference", *RANDOM, "--request-rate", "2", "--burstiness", "0"],
        "--burstiness must be > 0",
    ),
    (["run", "--backend", "reference", *RANDOM, "--max-concurrency", "0"], "--max-concurrency must be >= 1"),
    (
        ["run", "--backend", "hf", *RANDOM, "--request-rate", "5"],
        "backend 'hf' runs a whole batch at once: it cannot honour --request-rate or --max-concurrency",
    ),
    (["run", "--backend", "hf", *RANDOM, "--max-concurrency", "2"], "cannot honour --request-rate"),
    (["run", "--backend", "hf", *RANDOM, "--engine-arg", "mode"], "--engine-arg expects KEY=VALUE, got 'mode'"),
    (["run", "--backend", "hf", *RANDOM, "--engine-arg", "=static"], "--engine-arg expects KEY=VALUE"),
    (
        ["run", "--backend", "hf", *RANDOM, "--engine-arg", "flux=1"],
        "backend 'hf' does not accept engine arg(s) flux; accepted: attn_implementation",
    ),
    (["run", "--backend", "hf", *RANDOM, "--goodput", "ttft"], "expected ttft|tpot|e2el:MILLISECONDS, got 'ttft'"),
    (["run", "--backend", "hf", *RANDOM, "--goodput", "itl:50"], "expected ttft|tpot|e2el:MILLISECONDS"),
    (["run", "--backend", "hf", *RANDOM, "--goodput", "ttft:-5"], "expected ttft|tpot|e2el:MILLISECONDS"),
    (["run", "--backend", "hf", *RANDOM, "--goodput", "ttft:fast"], "expected ttft|tpot|e2el:MILLISECONDS"),
    (["run", "--backend", "hf", *RANDOM, "--batch-size", "0"], "--batch-size must be >= 1"),
    (["run", "--backend", "hf", *RANDOM, "--mode", "batch"], "--mode must be offline or serving"),
    (["run", "--backend", "hf", "--dataset", "random", "--num-prompts", "0"], "--num-prompts must be >= 1"),
    (["run", "--backend", "hf", *RANDOM, "--random-range-ratio", "1.5"], "--random-range-ratio must be in [0, 1)"),
    (
        [
            "run",
            "--backend",
            "hf",
            "--dataset",
            "random",
            "--num-prompts",
            "1",
            "--random-input-len",
            "9000",
            "--random-output-len",
            "8",
        ],
        "request req-00000: prompt (9000) + output (8) tokens exceed the model's context",
    ),
    (
        [
            "run",
            "--backend",
            "hf",
            "--dataset",
            "random",
            "--num-prompts",
            "1",
            "--random-input-len",
            "120",
            "--random-output-len",
            "8",
            "--engine-arg",
            "max_model_len=100",
        ],
        "tokens exceed the model's context of 100",
    ),
    (["run", "--num-prompts", "many"], "Invalid value for '--num-prompts'"),
    (["run", "--no-such-flag"], "No such option: --no-such-flag"),
    (["show", "nosuch", "--output-dir", "{tmp}"], "no run 'nosuch'"),
    (["compare", "nosuch", "other", "--output-dir", "{tmp}"], "no run 'nosuch'"),
    (["compare", "only-one"], "give at least two runs"),
    (["datasets", "{tmp}/missing.json"], "dataset file not found"),
    (["datasets", "random"], "`benchctl datasets` describes ShareGPT files"),
]


@pytest.mark.parametrize(
    "argv, message", BAD_INPUT, ids=[" ".join(a[:1] + a[3:5]) + f"-{i}" for i, (a, _) in enumerate(BAD_INPUT)]
)
def test_bad_input_is_one_error_and_exit_2(capsys, files, argv, message):
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    code, out, err = run_cli(capsys, argv)
    assert code == 2
    assert err.startswith("benchctl: error: ") and err.endswith("\n") and err.count("\n") == 1
    assert "Traceback" not in err and "Traceback" not in out
    assert message.replace("{tmp}", str(files)) in err
    assert not (files / "results").exists()


def test_non_integer_max_model_len_is_a_user_error(capsys, files):
    code, _, err = run_cli(capsys, ["run", "--backend", "hf", *RANDOM, "--engine-arg", "max_model_len=big"])
    assert code == 2 and "max_model_len" in err


def test_nan_goodput_is_rejected(capsys, files):
    # the long prompt makes the run stop at the context check if --goodput gets through
    code, _, err = run_cli(
        capsys,
        [
            "run",
            "--backend",
            "hf",
            "--dataset",
            "random",
            "--num-prompts",
            "1",
            "--random-input-len",
            "9000",
            "--goodput",
            "ttft:nan",
        ],
    )
    assert code == 2 and "--goodput" in err


def test_show_of_a_missing_absolute_path_is_a_user_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["show", str(tmp_path / "gone" / "run"), "--output-dir", str(tmp_path)])
    assert code == 2 and "no run" in err


def _subprocess_cli(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # as in a CI log or a pipe
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "benchctl", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_subprocess_unknown_backend_exit_code_and_single_line(tmp_path):
    p = _subprocess_cli(["run", "--backend", "nope"], tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("benchctl: error: unknown backend 'nope'; available: ")
    assert p.stderr.count("\n") == 1 and "hf" in p.stderr and "reference" in p.stderr
    assert p.stdout == ""


def test_subprocess_missing_dataset_has_no_traceback(tmp_path):
    p = _subprocess_cli(["run", "--backend", "hf", "--dataset", tmp_path / "x.json"], tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("benchctl: error: dataset file not found")
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "results").exists()


def test_long_error_stays_on_one_line_in_a_pipe(tmp_path):
    p = _subprocess_cli(
        [
            "run",
            "--backend",
            "hf",
            "--dataset",
            "random",
            "--num-prompts",
            "1",
            "--random-input-len",
            "9000",
            "--random-output-len",
            "8",
        ],
        tmp_path,
    )
    assert p.returncode == 2
    assert p.stderr == (
        "benchctl: error: request req-00000: prompt (9000) + output (8) tokens exceed the model's context of 8192\n"
    )


# --- commands that succeed ---------------------------------------------------------------------------


def test_datasets_json_counts_tokens_with_the_models_tokenizer(capsys, tmp_path, text_of):
    path = tmp_path / "three.json"
    path.write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": text_of(4, "cat")},
                        {"from": "gpt", "value": text_of(10, "dog")},
                    ]
                },
                {
                    "conversations": [
                        {"from": "human", "value": text_of(6, "cat")},
                        {"from": "gpt", "value": text_of(20, "dog")},
                        {"from": "human", "value": "more"},
                    ]
                },
                {"conversations": [{"from": "human", "value": "alone"}]},
            ]
        )
    )
    code, out, _ = run_cli(capsys, ["datasets", path, "--json"])
    assert code == 0
    stats = json.loads(out)
    assert (stats["conversations"], stats["pairs"]) == (3, 2)
    assert stats["prompt_tokens"]["mean"] == 5.0 and stats["prompt_tokens"]["max"] == 6
    assert stats["output_tokens"]["sum"] == 30
    assert stats["turns"]["mean"] == 2.0 and stats["turns"]["min"] == 1


def test_backends_json_lists_hf_and_reference(capsys):
    code, out, _ = run_cli(capsys, ["backends", "--json"])
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"hf", "reference"} <= set(rows)
    for r in rows.values():
        assert isinstance(r["available"], bool) and (r["reason"] is None) == r["available"]
    hf = rows["hf"]
    assert hf["available"] is True  # torch and transformers are installed here
    assert set(hf["capabilities"]) == {"offline", "per_token_times", "batch_size", "engine_stats"}
    assert "mode" in hf["engine_args"] and hf["extra"] == "hf"
    assert "arrivals" in rows["reference"]["capabilities"]


def test_backends_reports_why_a_backend_is_unavailable(capsys, monkeypatch):
    ghost = Backend(name="ghost", description="", worker="x:Y", requirements=("no_such_module_xyz",), extra="ghost")
    gpu = Backend(name="gpu", description="", worker="x:Y", capabilities=Capabilities(needs_cuda=True))
    monkeypatch.setattr(
        "benchctl.cli.info.list_backends", lambda: {"ghost": ghost, "gpu": gpu, "broken": "cannot load x:Y: boom"}
    )
    monkeypatch.setattr("benchctl.envinfo.cuda_present", lambda: False)
    code, out, _ = run_cli(capsys, ["backends", "--json"])
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["ghost"]["available"] is False
    assert rows["ghost"]["reason"] == "missing Python packages: no_such_module_xyz (pip install 'benchctl[ghost]')"
    assert rows["gpu"]["available"] is False
    assert rows["gpu"]["reason"] == "needs an NVIDIA GPU with CUDA; none found on this machine"
    assert rows["broken"] == {
        "name": "broken",
        "available": False,
        "reason": "cannot load x:Y: boom",
        "description": "",
        "capabilities": [],
        "extra": None,
        "engine_args": {},
    }


def write_run(folder: Path, run_id: str, summary: dict, backend: str = "hf") -> Path:
    path = folder / run_id
    path.mkdir(parents=True)
    run = {
        "schema_version": 1,
        "run_id": run_id,
        "status": "completed",
        "config": {"backend": backend},
        "workload": {"num_requests": 4, "dataset": "random", "seed": 0},
        "environment": {"hardware": {}},
        "summary": summary,
    }
    (path / "run.json").write_text(json.dumps(run))
    return path


BASE = {
    "completed": 4,
    "failed": 0,
    "duration_s": 2.0,
    "request_throughput": 2.0,
    "input_tok_s": 100.0,
    "output_tok_s": 40.0,
    "total_tok_s": 140.0,
    "ttft_s": {"count": 4, "mean": 0.5, "median": 0.5, "p99": 0.8},
    "e2el_s": {"count": 4, "mean": 1.0, "median": 1.0, "p99": 1.5},
}
FAST = {
    **BASE,
    "request_throughput": 3.0,
    "input_tok_s": 150.0,
    "output_tok_s": 60.0,
    "total_tok_s": 210.0,
    "ttft_s": {"count": 4, "mean": 0.25, "median": 0.25, "p99": 0.2},
    "e2el_s": {"count": 4, "mean": 0.8, "median": 0.8, "p99": 1.2},
    "tpot_s": {"count": 4, "mean": 0.05, "median": 0.05, "p99": 0.07},
}


def test_compare_json_ratios_by_hand(capsys, tmp_path):
    write_run(tmp_path, "20250101-000000-hf-aaaaaa", BASE)
    write_run(tmp_path, "20250101-000001-reference-bbbbbb", FAST, backend="reference")
    code, out, _ = run_cli(
        capsys,
        [
            "compare",
            "20250101-000000",
            str(tmp_path / "20250101-000001-reference-bbbbbb"),
            "--output-dir",
            tmp_path,
            "--json",
        ],
    )
    assert code == 0
    data = json.loads(out)
    assert data["runs"] == ["20250101-000000-hf-aaaaaa", "20250101-000001-reference-bbbbbb"]
    rows = {r["metric"]: r for r in data["rows"]}
    expected = {  # metric: (baseline, other, other / baseline)
        "request_throughput": (2.0, 3.0, 1.5),
        "input_tok_s": (100.0, 150.0, 1.5),
        "output_tok_s": (40.0, 60.0, 1.5),
        "total_tok_s": (140.0, 210.0, 1.5),
        "ttft_mean_ms": (500.0, 250.0, 0.5),
        "ttft_p99_ms": (800.0, 200.0, 0.25),
        "e2el_mean_ms": (1000.0, 800.0, 0.8),
        "e2el_p99_ms": (1500.0, 1200.0, 0.8),
    }
    for metric, (base, other, ratio) in expected.items():
        assert rows[metric]["values"] == pytest.approx([base, other]), metric
        assert rows[metric]["ratios"] == pytest.approx([1.0, ratio]), metric
    # the baseline has no TPOT: no value and no ratio rather than a made-up number
    assert rows["tpot_mean_ms"]["values"] == [None, pytest.approx(50.0)]
    assert rows["tpot_mean_ms"]["ratios"] == [None, None]


def test_compare_and_show_tables(capsys, tmp_path):
    write_run(tmp_path, "20250101-000000-hf-aaaaaa", BASE)
    write_run(tmp_path, "20250101-000001-hf-bbbbbb", FAST)
    code, out, _ = run_cli(capsys, ["compare", "20250101-000000", "20250101-000001", "--output-dir", tmp_path])
    assert code == 0
    assert "(1.50x)" in out and "(0.25x)" in out and "same workload" in out
    code, out, _ = run_cli(capsys, ["show", "20250101-000001", "--output-dir", tmp_path, "--json"])
    assert code == 0 and json.loads(out)["summary"]["output_tok_s"] == 60.0
    code, out, _ = run_cli(capsys, ["show", str(tmp_path / "20250101-000000-hf-aaaaaa")])
    assert code == 0 and "20250101-000000-hf-aaaaaa" in out and "completed" in out and "40.00" in out


def test_compare_and_show_report_speculative_acceptance(capsys, tmp_path):
    write_run(tmp_path, "20250101-000000-reference-aaaaaa", BASE, backend="reference")
    path = write_run(tmp_path, "20250101-000001-reference-bbbbbb", FAST, backend="reference")
    run = json.loads((path / "run.json").read_text())
    # the engine's counters: 153 of 170 draft tokens kept over 72 drafted sequence-steps
    run["engine_stats"] = {
        "spec_decode_num_drafts": 72,
        "spec_decode_num_draft_tokens": 170,
        "spec_decode_num_accepted_tokens": 153,
    }
    (path / "run.json").write_text(json.dumps(run))
    code, out, _ = run_cli(
        capsys, ["compare", "20250101-000000", "20250101-000001", "--output-dir", tmp_path, "--json"]
    )
    rows = {r["metric"]: r for r in json.loads(out)["rows"]}
    assert code == 0 and rows["spec_decode_acceptance_rate"]["values"] == [None, 0.9]
    assert rows["spec_decode_mean_acceptance_length"]["values"] == [None, 3.125]
    code, out, _ = run_cli(capsys, ["show", "20250101-000001", "--output-dir", tmp_path])
    assert code == 0 and "draft tokens accepted" in out and "90.0%, 3.12 tokens per drafted step" in out
    code, out, _ = run_cli(capsys, ["show", "20250101-000000", "--output-dir", tmp_path])
    assert "draft tokens accepted" not in out


# --- run with a fake backend ---------------------------------------------------------------------------


@pytest.fixture
def fake_backend(monkeypatch):
    def use(worker: str):
        backend = Backend(
            name="fake",
            description="",
            worker=f"tests.harness.fakes.workers:{worker}",
            capabilities=Capabilities(arrivals=True, per_token_times=True),
        )
        monkeypatch.setattr("benchctl.run.prepare.get_backend", lambda name: backend)

    return use


def test_run_json_prints_the_completed_run(capsys, tmp_path, fake_backend):
    fake_backend("EchoWorker")
    code, out, _ = run_cli(capsys, ["run", *RANDOM, "--goodput", "ttft:200", "--output-dir", tmp_path, "--json"])
    assert code == 0
    run = json.loads(out)
    assert run["status"] == "completed" and run["summary"]["completed"] == 2
    assert run["summary"]["good_requests"] == 2 and run["config"]["slos_ms"] == {"ttft": 200.0}
    assert (tmp_path / run["run_id"] / "requests.parquet").is_file()


def test_run_measure_ceiling_keeps_the_measurements_in_run_json(capsys, tmp_path, fake_backend, monkeypatch):
    import time as _time

    from benchctl import hwinfo
    from benchctl.envinfo import hardware

    monkeypatch.setenv("BENCHCTL_CACHE_DIR", str(tmp_path / "cache"))
    cpu, calls = hardware()["cpu"], []

    def fake_measure():  # what the child process does: measure, then append to the history
        calls.append(1)
        entry = {
            "hwinfo_version": hwinfo.HWINFO_VERSION,
            "hardware": {"cpu": cpu},
            "gemm_fp32_flop_s": 1e11 * len(calls),
            "read_bandwidth_gb_s": 10.0,
            "measured_at": _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime()),
        }
        (tmp_path / "cache").mkdir(exist_ok=True)
        with open(hwinfo.history_path(), "a") as f:
            f.write(json.dumps({**entry, "measured_at": entry["measured_at"][:-1] + f".{len(calls)}Z"}) + "\n")
        return entry, None

    monkeypatch.setattr(hwinfo, "measure_in_subprocess", fake_measure)
    fake_backend("EchoWorker")
    code, out, _ = run_cli(capsys, ["run", *RANDOM, "--measure-ceiling", "--output-dir", tmp_path / "out", "--json"])
    assert code == 0 and len(calls) == 2  # before and after
    run = json.loads(out)
    assert sorted(e["gemm_fp32_flop_s"] for e in run["environment"]["hwinfo"]) == [1e11, 2e11]

    monkeypatch.setattr(hwinfo, "measure_in_subprocess", lambda: (None, "no torch here"))
    code, out, err = run_cli(capsys, ["run", *RANDOM, "--measure-ceiling", "--output-dir", tmp_path / "out2"])
    assert code == 0 and "could not measure the ceilings before the run: no torch here" in " ".join(err.split())


def test_run_failure_exits_1_and_reports_where_the_records_are(capsys, tmp_path, fake_backend):
    fake_backend("DyingWorker")
    code = main(["run", "--dataset", "random", "--num-prompts", "4", "--output-dir", str(tmp_path / "out")])
    err = " ".join(capsys.readouterr().err.split())  # rich may wrap this multi-line report
    assert code == 1
    (run_dir,) = (tmp_path / "out").iterdir()
    assert "benchctl: run failed: fake worker failed: worker exited unexpectedly (exit code 3)" in err
    assert f"finished records kept in {run_dir}" in err
    assert "about to die" in err  # the worker log's tail
    assert len((run_dir / "requests.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["num_speculative_tokens=0"], "reference: num_speculative_tokens must be >= 1, got 0"),
        (["prompt_lookup_min=4"], "reference: prompt_lookup_min=4 is above prompt_lookup_max=3"),
        (["max_num_seqs=many"], "reference: max_num_seqs must be an integer, got 'many'"),
        (["block_size=1.5"], "reference: block_size must be an integer, got '1.5'"),
        (["enable_prefix_caching=maybe"], "reference: enable_prefix_caching must be true or false, got 'maybe'"),
        (["enable_chunked_prefill=false"], "reference: without chunked prefill, max_num_batched_tokens must be >="),
        (["gguf_file=/no/such/model.gguf"], "reference: gguf_file='/no/such/model.gguf': no such file"),
    ],
)
def test_reference_engine_arg_values_the_engine_refuses_are_user_errors(capsys, files, args, message):
    argv = ["run", "--backend", "reference", *RANDOM]
    for arg in args:
        argv += ["--engine-arg", arg]
    code, out, err = run_cli(capsys, argv)
    assert code == 2 and message in " ".join(err.split()) and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and "Traceback" not in out
    assert not (files / "results").exists()


@pytest.mark.parametrize("arg", ["gemm=skinny", "sampler=fastest", "kv_layout=ring", "speculative=eagle"])
def test_reference_engine_arg_outside_its_choices_is_a_user_error(capsys, files, arg):
    code, out, err = run_cli(capsys, ["run", "--backend", "reference", *RANDOM, "--engine-arg", arg])
    key, value = arg.split("=")
    assert code == 2 and f"reference: {key} must be one of" in err and repr(value) in err
    assert "Traceback" not in err and "Traceback" not in out
    assert not (files / "results").exists()


@pytest.mark.parametrize(
    "url, sent",
    [
        ("http://example.invalid:8000/v1", False),
        ("https://example.invalid/v1", True),
        ("http://127.0.0.1:8000/v1", True),
    ],
)
def test_openai_api_key_from_the_environment_is_not_sent_in_clear_to_another_host(monkeypatch, capsys, url, sent):
    class Captured(Exception):
        pass

    def capture(config, progress=None, on_record=None):
        raise Captured(config.api_key)

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setattr("benchctl.cli.run.run_benchmark", capture)
    with pytest.raises(Captured) as got:
        main(["run", "--mode", "serving", "--backend", "openai", "--base-url", url])
    assert got.value.args[0] == ("sk-secret" if sent else None)
    warning = capsys.readouterr().err
    assert ("is not sent to " + url in " ".join(warning.split())) is not sent and "sk-secret" not in warning


def test_more_client_processes_than_cpus_needs_force(capsys):
    import os

    args = ["run", "--mode", "serving", "--backend", "openai", "--base-url", "http://127.0.0.1:1/v1"]
    too_many = str((os.cpu_count() or 1) + 1)
    assert main([*args, "--client-processes", too_many]) == 2
    refused = capsys.readouterr().err
    assert refused.count("\n") == 1 and "more than this machine's" in refused and "--force" in refused
    assert main([*args, "--client-processes", too_many, "--force"]) == 2  # past the check: the server is not there
    assert "more than this machine's" not in capsys.readouterr().err
