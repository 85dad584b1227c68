"""The worker process boundary (benchctl/worker) and the runner end to end with fake workers."""

from __future__ import annotations

import json
import math
import os

import pandas as pd
import pytest

from benchctl import metrics
from benchctl.backend import Backend, BackendError, Capabilities
from benchctl.run import RunConfig, RunFailed, run_benchmark
from benchctl.worker.host import WorkerDied, WorkerProcess
from benchctl.workload import WorkloadError, WorkloadOptions, build_workload
from tests.harness.fakes.workers import TPOT_S, TTFT_S

FAKES = "tests.harness.fakes.workers"


def wire_requests(n: int = 3, output_len: int = 4) -> list[dict]:
    return [
        {
            "request_id": f"r{i}",
            "prompt_token_ids": [10 + i] * (3 + i),
            "prompt": "x",
            "output_len": output_len,
            "arrival_s": 0.0,
        }
        for i in range(n)
    ]


def run_worker(worker: WorkerProcess, requests: list[dict], max_concurrency=None):
    """Load and run; returns (ready event, record events, done event)."""
    ready = worker.request({"op": "load", "model": {"name": "m"}, "options": {"seed": 1}}, "ready")
    worker.send({"op": "run", "requests": requests, "max_concurrency": max_concurrency})
    records = []
    for event in worker.events():
        if event["event"] == "record":
            records.append(event["record"])
        elif event["event"] == "done":
            return ready, records, event
    raise AssertionError("unreachable")


def test_echo_worker_speaks_the_protocol(tmp_path):
    with WorkerProcess(f"{FAKES}:EchoWorker", log_path=tmp_path / "worker.log") as worker:
        ready, records, done = run_worker(worker, wire_requests(3), max_concurrency=2)
        assert ready["protocol"] == 1
        assert ready["info"]["engine"] == "echo" and ready["info"]["options_seen"] == {"seed": 1}
        assert ready["info"]["python"] and ready["info"]["python_version"].count(".") == 2
        assert [r["request_id"] for r in records] == ["r0", "r1", "r2"]
        assert [r["prompt_tokens"] for r in records] == [3, 4, 5]
        assert records[1]["first_token_s"] - records[1]["start_s"] == TTFT_S
        assert done["stats"] == {"requests_seen": 3, "max_concurrency_seen": 2}
        assert done["duration_s"] >= 0
    assert worker.proc.returncode == 0


def test_worker_stdout_writes_do_not_corrupt_the_protocol(tmp_path):
    log = tmp_path / "worker.log"
    with WorkerProcess(f"{FAKES}:PrintingWorker", log_path=log) as worker:
        ready, records, done = run_worker(worker, wire_requests(3))
    assert ready["info"]["engine"] == "echo"
    assert [r["request_id"] for r in records] == ["r0", "r1", "r2"]
    assert done["stats"] == {"printed": True}
    assert worker.proc.returncode == 0
    text = log.read_text()  # everything printed went to the log, not the protocol stream
    for expected in (
        "hello from load",
        '"error": "forged"',
        "raw fd1 write without newline",
        "progress 0",
        "progress 2",
        "{not json",
        "stderr line",
    ):
        assert expected in text


def test_worker_that_raises_in_load_reports_its_traceback(tmp_path):
    worker = WorkerProcess(f"{FAKES}:FailingLoadWorker", log_path=tmp_path / "worker.log")
    with pytest.raises(WorkerDied) as e:
        worker.request({"op": "load", "model": {}, "options": {}}, "ready")
    assert str(e.value) == "RuntimeError: engine could not start: marker-4711"
    assert "Traceback (most recent call last)" in e.value.log_tail
    assert "in load" in e.value.log_tail and "marker-4711" in e.value.log_tail
    assert worker.close() == 1


def test_worker_dying_mid_run_delivers_earlier_records_then_raises(tmp_path):
    worker = WorkerProcess(f"{FAKES}:DyingWorker", log_path=tmp_path / "worker.log")
    worker.request({"op": "load", "model": {}, "options": {}}, "ready")
    worker.send({"op": "run", "requests": wire_requests(5), "max_concurrency": None})
    records = []
    with pytest.raises(WorkerDied) as e:
        for event in worker.events():
            records.append(event["record"])
    assert [r["request_id"] for r in records] == ["r0", "r1"]
    assert str(e.value) == "worker exited unexpectedly (exit code 3)"
    assert "about to die" in e.value.log_tail
    with pytest.raises(WorkerDied, match=r"worker exited before it could receive a command \(exit code 3\)"):
        worker.send({"op": "run", "requests": [], "max_concurrency": None})
    assert worker.close() == 3


def test_worker_raising_in_run_is_fatal_with_traceback(tmp_path):
    worker = WorkerProcess(f"{FAKES}:RaisingRunWorker", log_path=tmp_path / "worker.log")
    worker.request({"op": "load", "model": {}, "options": {}}, "ready")
    worker.send({"op": "run", "requests": wire_requests(3), "max_concurrency": None})
    events = []
    with pytest.raises(WorkerDied) as e:
        for event in worker.events():
            events.append(event)
    assert [ev["record"]["request_id"] for ev in events] == ["r0"]
    assert str(e.value) == "ValueError: kernel failed on request 2"
    assert "in run" in e.value.log_tail
    worker.close()


def test_unknown_op_and_unknown_worker_are_fatal(tmp_path):
    worker = WorkerProcess(f"{FAKES}:EchoWorker")
    with pytest.raises(WorkerDied, match="ValueError: unknown op 'dance'"):
        worker.request({"op": "dance"}, "ready")
    worker.close()
    missing = WorkerProcess(f"{FAKES}:NoSuchWorker")
    with pytest.raises(WorkerDied, match="AttributeError"):
        missing.request({"op": "load", "model": {}, "options": {}}, "ready")
    missing.close()


# --- the runner end to end ---------------------------------------------------------------------------


@pytest.fixture
def fake_backend(monkeypatch):
    """Make every backend name resolve to a fake whose worker is tests.harness.fakes.workers:<name>."""
    chosen = {}

    def use(worker: str, **caps) -> Backend:
        chosen["backend"] = Backend(
            name="fake",
            description="",
            worker=f"{FAKES}:{worker}",
            capabilities=Capabilities(**{"arrivals": True, "per_token_times": True, **caps}),
        )
        return chosen["backend"]

    monkeypatch.setattr("benchctl.run.prepare.get_backend", lambda name: chosen["backend"])
    return use


def config(tmp_path, **workload) -> RunConfig:
    options = dict(
        dataset="random", num_prompts=5, seed=1, random_input_len=12, random_output_len=4, random_range_ratio=0.5
    )
    options.update(workload)
    return RunConfig(
        backend="fake", model="smollm2-135m", workload=WorkloadOptions(**options), output_dir=tmp_path / "results"
    )


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_completed_run_writes_run_json_jsonl_and_parquet(tmp_path, fake_backend, tok):
    fake_backend("EchoWorker")
    seen = []
    cfg = config(tmp_path)
    run_dir = run_benchmark(cfg, on_record=seen.append)
    assert run_dir.parent == tmp_path / "results"
    run = json.loads((run_dir / "run.json").read_text())
    rows = read_jsonl(run_dir / "requests.jsonl")
    workload = build_workload(cfg.workload, tok)  # the same seed gives the same requests

    assert run["status"] == "completed" and run["error"] is None
    assert run["schema_version"] == 2 and run["run_id"] == run_dir.name
    assert run["config"]["backend"] == "fake" and run["config"]["model"]["name"] == "smollm2-135m"
    assert run["config"]["workload_options"]["request_rate"] is None  # inf is not JSON
    spec = run["workload"]
    assert spec["num_requests"] == 5 and spec["seed"] == 1 and spec["dataset"] == "random"
    assert spec["input_tokens"] == json.loads(json.dumps(workload.spec()["input_tokens"]))
    assert spec["output_tokens"]["mean"] == round(sum(r.output_len for r in workload.requests) / 5, 2)
    hw = run["environment"]["hardware"]
    assert hw["logical_cores"] >= 1 and hw["memory_bytes"] > 0 and hw["cpu"]
    assert run["engine"]["engine"] == "echo" and run["engine"]["load_s"] >= 0
    assert run["engine_stats"]["requests_seen"] == 5

    assert [r["request_id"] for r in rows] == [r.request_id for r in workload.requests]
    assert seen == rows
    for row, req in zip(rows, workload.requests):
        n = req.output_len
        assert row["prompt_tokens"] == req.prompt_len and row["output_tokens"] == n
        assert row["ttft_s"] == TTFT_S
        assert row["e2el_s"] == pytest.approx(TTFT_S + TPOT_S * (n - 1), abs=1e-12)
        assert row["tpot_s"] == (pytest.approx(TPOT_S, abs=1e-12) if n > 1 else None)
        assert row["itl_s"] == pytest.approx([TPOT_S] * (n - 1), abs=1e-12)
        assert row["queue_s"] == pytest.approx(0.001 * int(row["request_id"][-5:]), abs=1e-12)

    summary = run["summary"]
    assert summary["completed"] == 5 and summary["failed"] == 0
    assert summary["total_output_tokens"] == sum(r.output_len for r in workload.requests)
    assert summary["duration_s"] == pytest.approx(max(r["finish_s"] for r in rows))
    assert summary["ttft_s"]["mean"] == pytest.approx(TTFT_S)
    recomputed = metrics.summarize(rows)  # run.json holds exactly what benchctl.metrics says
    assert metrics.flat_metrics(summary) == pytest.approx(metrics.flat_metrics(recomputed))
    assert summary["ttft_s"] == recomputed["ttft_s"] and summary["itl_s"]["count"] == recomputed["itl_s"]["count"]

    frame = pd.read_parquet(run_dir / "requests.parquet")
    assert frame["request_id"].tolist() == [r["request_id"] for r in rows]
    for column in ("prompt_tokens", "output_tokens", "ttft_s", "e2el_s", "start_s", "finish_s"):
        assert frame[column].tolist() == [r[column] for r in rows], column
    assert [list(v) for v in frame["itl_s"]] == [r["itl_s"] for r in rows]
    assert [json.loads(v) for v in frame["extra"]] == [r["extra"] for r in rows]
    assert not (run_dir / "steps.jsonl").exists()


def test_run_passes_arrivals_and_concurrency_cap_to_the_worker(tmp_path, fake_backend, tok):
    fake_backend("EchoWorker")
    cfg = config(tmp_path, request_rate=4.0, max_concurrency=2)
    run_dir = run_benchmark(cfg)
    run = json.loads((run_dir / "run.json").read_text())
    rows = read_jsonl(run_dir / "requests.jsonl")
    expected = [r.arrival_s for r in build_workload(cfg.workload, tok).requests]
    assert [r["arrival_s"] for r in rows] == expected and expected[-1] > 0
    assert run["engine_stats"]["max_concurrency_seen"] == 2
    assert run["workload"]["schedule"]["kind"] == "poisson" and run["workload"]["schedule"]["request_rate"] == 4.0


def test_engine_steps_go_to_steps_jsonl(tmp_path, fake_backend):
    fake_backend("StepWorker")
    run_dir = run_benchmark(config(tmp_path))
    assert read_jsonl(run_dir / "steps.jsonl") == [{"step": i, "batch_size": 1} for i in range(5)]
    assert len(read_jsonl(run_dir / "requests.jsonl")) == 5


def only_run_dir(tmp_path):
    (run_dir,) = (tmp_path / "results").iterdir()
    return run_dir


def test_worker_dying_mid_run_keeps_finished_records_and_marks_the_run_failed(tmp_path, fake_backend):
    fake_backend("DyingWorker")
    with pytest.raises(RunFailed) as e:
        run_benchmark(config(tmp_path))
    run_dir = only_run_dir(tmp_path)
    assert e.value.run_dir == run_dir
    assert "fake worker failed: worker exited unexpectedly (exit code 3)" in str(e.value)
    assert "about to die" in e.value.log_tail
    rows = read_jsonl(run_dir / "requests.jsonl")
    assert [r["request_id"] for r in rows] == ["req-00000", "req-00001"]
    assert all(r["ttft_s"] == TTFT_S for r in rows)
    frame = pd.read_parquet(run_dir / "requests.parquet")
    assert frame["request_id"].tolist() == ["req-00000", "req-00001"]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed" and "exit code 3" in run["error"] and run["finished_at"]
    assert run["summary"]["completed"] == 2 and run["summary"]["num_requests"] == 2
    assert "about to die" in (run_dir / "worker.log").read_text()


@pytest.mark.parametrize(
    "worker, error, kept",
    [
        ("RaisingRunWorker", "ValueError: kernel failed on request 2", 1),
        ("ForgetfulWorker", "1 requests never reported", 4),
        ("StrangerWorker", "worker reported an unknown request 'who-is-this'", 1),
        ("FailingLoadWorker", "RuntimeError: engine could not start: marker-4711", 0),
    ],
)
def test_other_worker_failures_mark_the_run_failed(tmp_path, fake_backend, worker, error, kept):
    fake_backend(worker)
    with pytest.raises(RunFailed):
        run_benchmark(config(tmp_path))
    run_dir = only_run_dir(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed" and error in run["error"]
    assert len(read_jsonl(run_dir / "requests.jsonl")) == kept
    assert (run_dir / "requests.parquet").exists() == (kept > 0)
    assert run["summary"]["completed"] == kept


def test_user_errors_are_raised_before_a_run_folder_exists(tmp_path, fake_backend):
    fake_backend("EchoWorker", arrivals=False)
    with pytest.raises(BackendError, match="cannot honour --request-rate or --max-concurrency"):
        run_benchmark(config(tmp_path, request_rate=2.0))
    with pytest.raises(BackendError, match="does not support"):
        run_benchmark(
            RunConfig(
                backend="fake",
                batch_size=4,
                workload=WorkloadOptions(dataset="random"),
                output_dir=tmp_path / "results",
            )
        )
    fake_backend("EchoWorker")
    with pytest.raises(
        WorkloadError,
        match=r"prompt \(9000\) \+ output \(4\) tokens exceed the model's context "
        r"of 8192",
    ):
        run_benchmark(config(tmp_path, num_prompts=1, random_input_len=9000, random_range_ratio=0.0))
    with pytest.raises(WorkloadError, match="--request-rate must be > 0"):
        run_benchmark(config(tmp_path, request_rate=-1.0))
    assert not (tmp_path / "results").exists()
    assert math.isinf(WorkloadOptions().request_rate)


def test_a_slow_disk_never_blocks_the_worker_on_its_pipe(tmp_path, fake_backend, monkeypatch):
    """200 records of ~2 KB (400 KB, a pipe holds 64 KB) and 10 ms per fsync: the worker finishes emitting while
    the harness is still writing; a harness that read the pipe only between writes held the worker until the end."""
    import os
    import time

    fake_backend("FloodWorker")
    real_fsync = os.fsync
    monkeypatch.setattr("benchctl.records.os.fsync", lambda fd: (time.sleep(0.01), real_fsync(fd)))
    written_at = []
    run_dir = run_benchmark(
        config(tmp_path, num_prompts=200), on_record=lambda row: written_at.append(time.monotonic())
    )
    run = json.loads((run_dir / "run.json").read_text())
    assert len(written_at) == 200 and run["status"] == "completed"
    assert written_at[-1] - written_at[0] > 1.5  # the disk really was slow
    assert written_at[-1] - run["engine_stats"]["emitted_at"] > 1.0


def test_a_stalled_engine_fails_the_run_instead_of_hanging(tmp_path, fake_backend):
    import time

    import psutil

    fake_backend("StallingWorker")
    cfg = config(tmp_path)
    cfg.stall_timeout_s = 1.0
    t0 = time.monotonic()
    with pytest.raises(RunFailed, match=r"no event from the worker for 1 s \(--stall-timeout\): the engine stalled"):
        run_benchmark(cfg)
    assert time.monotonic() - t0 < 15
    run_dir = only_run_dir(tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    rows = read_jsonl(run_dir / "requests.jsonl")
    assert run["status"] == "failed" and "the engine stalled" in run["error"] and run["summary"]["completed"] == 1
    pid = rows[0]["extra"]["pid"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_stall_timeout_must_be_positive(tmp_path, fake_backend, value):
    fake_backend("EchoWorker")
    cfg = config(tmp_path)
    cfg.stall_timeout_s = value
    with pytest.raises(BackendError, match="--stall-timeout must be > 0 seconds"):
        run_benchmark(cfg)
    assert not (tmp_path / "results").exists()


def test_cli_stall_timeout_option_reaches_the_run(tmp_path, fake_backend, capsys):
    from benchctl.cli import main

    fake_backend("StallingWorker")
    code = main(
        [
            "run",
            "--dataset",
            "random",
            "--num-prompts",
            "3",
            "--random-input-len",
            "8",
            "--random-output-len",
            "4",
            "--stall-timeout",
            "1",
            "--output-dir",
            str(tmp_path / "results"),
        ]
    )
    assert code == 1 and "the engine stalled" in capsys.readouterr().err
    assert main(["run", "--stall-timeout", "0", "--output-dir", str(tmp_path / "x")]) == 2
    assert "--stall-timeout must be > 0 seconds" in capsys.readouterr().err


@pytest.mark.parametrize(
    "where, problem",
    [
        ("{tmp}/a-file", "--output-dir {tmp}/a-file is not a directory"),
        (
            "{tmp}/a-file/results",
            "--output-dir {tmp}/a-file/results cannot be created: {tmp}/a-file is not a directory",
        ),
        ("/dev/null/x", "--output-dir /dev/null/x cannot be created: /dev/null is not a directory"),
    ],
)
def test_an_output_dir_that_cannot_hold_runs_is_one_line_before_the_model_loads(
    tmp_path, capsys, monkeypatch, fake_backend, where, problem
):
    from benchctl.cli import main

    fake_backend("EchoWorker")
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setattr("benchctl.run.prepare.resolve_model", lambda *a, **k: pytest.fail("the model was resolved"))
    code = main(["run", "--dataset", "random", "--num-prompts", "2", "--output-dir", where.format(tmp=tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err == f"benchctl: error: {problem.format(tmp=tmp_path)}\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: no folder is unwritable to it")
def test_an_unwritable_output_dir_is_one_line(tmp_path, fake_backend):
    fake_backend("EchoWorker")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(BackendError, match=f"--output-dir {locked}/results: {locked} is not writable"):
        run_benchmark(
            RunConfig(backend="fake", workload=WorkloadOptions(dataset="random"), output_dir=locked / "results")
        )


def test_run_json_has_its_final_status_before_the_parquet_is_written(tmp_path, fake_backend, monkeypatch):
    from benchctl import store

    fake_backend("EchoWorker")
    seen = []
    real = store.write_parquet

    def write_parquet(rows, path):
        seen.append(json.loads((path.parent / "run.json").read_text())["status"])
        real(rows, path)

    monkeypatch.setattr(store, "write_parquet", write_parquet)
    run_dir = run_benchmark(config(tmp_path))
    assert seen == ["completed"] and (run_dir / "requests.parquet").exists()


def test_offline_records_carry_their_load_shape_window(tmp_path, fake_backend):
    """A worker knows nothing of windows: the run labels its records, so an offline steady state is not empty."""
    fake_backend("EchoWorker")
    cfg = config(
        tmp_path, num_prompts=None, duration="2s", request_rate=10.0, arrival="constant", warmup="0.5s", cooldown="0.5s"
    )
    run = json.loads((run_benchmark(cfg) / "run.json").read_text())
    rows = read_jsonl(tmp_path / "results" / run["run_id"] / "requests.jsonl")
    phases = [r["extra"]["phase"] for r in sorted(rows, key=lambda r: r["arrival_s"])]
    assert phases == ["warmup"] * 5 + ["steady"] * 10 + ["cooldown"] * 5
    assert run["summary"]["steady_state"]["completed"] == 10
