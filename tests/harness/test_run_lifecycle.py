"""How a run ends when it is stopped from outside: signals, a crashed worker, benchctl itself killed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchctl.records import read_records

REPO = Path(__file__).resolve().parents[2]

# benchctl's own CLI in a child process, the backend a fake whose worker is tests.harness.fakes.workers:<argv[1]>
CLI_WITH_FAKE_WORKER = """
import signal
import sys
# Ctrl-C as in a terminal: a shell that starts a job in the background (`cmd &` without job control, as CI
# scripts do) leaves SIGINT ignored, and an ignored signal stays ignored in every process started under it
signal.signal(signal.SIGINT, signal.default_int_handler)
import benchctl.run.prepare as run_prepare
from benchctl.backend import Backend, Capabilities
from benchctl.cli import main
backend = Backend("fake", "", f"tests.harness.fakes.workers:{sys.argv[1]}", capabilities=Capabilities(arrivals=True))
run_prepare.get_backend = lambda name: backend
sys.exit(main(["run", "--dataset", "random", "--num-prompts", "4", "--random-input-len", "8",
               "--random-output-len", "4", "--output-dir", sys.argv[2]]))
"""


def start_cli(worker: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLI_WITH_FAKE_WORKER, worker, str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_record(out: Path, proc: subprocess.Popen, timeout_s: float = 60) -> tuple[Path, dict]:
    """The run folder and its first record, once the worker has reported one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in out.glob("*/requests.jsonl"):
            rows = read_records(path)
            if rows:
                return path.parent, rows[0]
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("no record within the timeout")


def gone(pid: int, timeout_s: float = 10) -> bool:
    try:
        psutil.Process(pid).wait(timeout=timeout_s)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    except psutil.Error:  # not our child: wait() polls until it is gone or a zombie
        pass
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("sig, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_an_offline_run_cleanly(tmp_path, sig, exit_code):
    proc = start_cli("GroupWorker", tmp_path)
    try:
        run_dir, record = first_record(tmp_path, proc)
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == exit_code, proc.stderr.read()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed"
    assert run["error"] == f"KeyboardInterrupt: interrupted by {signal.Signals(sig).name}"
    assert run["summary"]["completed"] == 1 and len(read_records(run_dir / "requests.jsonl")) == 1
    assert gone(record["extra"]["pid"]) and gone(record["extra"]["child_pid"])  # the worker's whole group


def test_a_crashed_workers_leftover_processes_are_killed(tmp_path, monkeypatch):
    from benchctl.backend import Backend, Capabilities
    from benchctl.run import RunConfig, RunFailed, run_benchmark
    from benchctl.workload import WorkloadOptions

    backend = Backend("fake", "", "tests.harness.fakes.workers:OrphaningWorker", capabilities=Capabilities())
    monkeypatch.setattr("benchctl.run.prepare.get_backend", lambda name: backend)
    workload = WorkloadOptions(dataset="random", num_prompts=3, random_input_len=8, random_output_len=4)
    with pytest.raises(RunFailed, match="exit code 3"):
        run_benchmark(RunConfig(backend="fake", workload=workload, output_dir=tmp_path))
    (run_dir,) = tmp_path.iterdir()
    (record,) = read_records(run_dir / "requests.jsonl")
    assert gone(record["extra"]["pid"]) and gone(record["extra"]["child_pid"])


def test_killing_benchctl_takes_the_worker_and_its_processes_with_it(tmp_path):
    proc = start_cli("GroupWorker", tmp_path)
    try:
        _, record = first_record(tmp_path, proc)
        proc.kill()  # SIGKILL: no cleanup of benchctl's own can run
        proc.wait(timeout=10)
        assert gone(record["extra"]["pid"]) and gone(record["extra"]["child_pid"])
    finally:
        if proc.poll() is None:
            proc.kill()


SERVING_RUN = """
import sys
from benchctl.run import RunConfig, run_benchmark
from benchctl.workload import WorkloadOptions
workload = WorkloadOptions(dataset="random", num_prompts=60, random_input_len=8, random_output_len=8, request_rate=5.0)
run_benchmark(RunConfig(backend="openai", mode="serving", base_url=sys.argv[1], workload=workload,
                        output_dir=sys.argv[2]))
"""


def test_killing_benchctl_stops_the_metrics_scraper(tmp_path):
    from tests.harness.fakes_serving import FakeServerProcess

    with FakeServerProcess("--ttft-ms", "20", "--itl-ms", "20") as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVING_RUN, server.base_url, str(tmp_path)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            first_record(tmp_path, proc)
            scrapers = [
                p
                for p in psutil.Process(proc.pid).children(recursive=True)
                if "benchctl.serving.scrape" in " ".join(p.cmdline())
            ]
            assert len(scrapers) == 1
            proc.kill()
            proc.wait(timeout=10)
            assert gone(scrapers[0].pid)
        finally:
            if proc.poll() is None:
                proc.kill()


PLANTED = "import os, sys\nopen(os.environ['PLANTED_MARKER'], 'a').write(f'{__name__} ran in {sys.argv}\\n')\n"


def plant_shadowing_modules(cwd: Path, monkeypatch) -> Path:
    """A platform.py and an argparse.py in the directory benchctl is started from, as an unwary user might have."""
    for name in ("platform", "argparse"):
        (cwd / f"{name}.py").write_text(PLANTED)
    marker = cwd / "planted-code-ran.txt"
    monkeypatch.setenv("PLANTED_MARKER", str(marker))
    monkeypatch.chdir(cwd)
    return marker


def test_a_platform_py_in_the_current_directory_never_runs_in_a_worker(tmp_path, monkeypatch):
    from benchctl.worker.host import WorkerProcess

    marker = plant_shadowing_modules(tmp_path, monkeypatch)
    with WorkerProcess("tests.harness.fakes.workers:EchoWorker", log_path=tmp_path / "worker.log") as worker:
        ready = worker.request({"op": "load", "model": {"name": "m"}, "options": {}}, "ready")
    assert ready["info"]["engine"] == "echo" and ready["info"]["python_version"].count(".") == 2
    assert not marker.exists(), marker.read_text()


def test_the_metrics_scraper_never_runs_code_from_the_current_directory(tmp_path, monkeypatch):
    from benchctl.run import RunConfig, run_benchmark
    from benchctl.workload import WorkloadOptions
    from tests.harness.fakes_serving import FakeServerProcess

    with FakeServerProcess() as server:
        marker = plant_shadowing_modules(tmp_path, monkeypatch)
        workload = WorkloadOptions(
            dataset="random", num_prompts=4, random_input_len=8, random_output_len=4, request_rate=4.0
        )
        run_dir = run_benchmark(
            RunConfig(
                backend="openai",
                mode="serving",
                base_url=server.base_url,
                workload=workload,
                output_dir=tmp_path / "results",
            )
        )
    samples = [json.loads(line) for line in (run_dir / "server_metrics.jsonl").read_text().splitlines()]
    assert len(samples) >= 2 and all("metrics" in s for s in samples)  # the scraper ran, and scraped
    assert not marker.exists(), marker.read_text()


CLI_SERVING = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (see CLI_WITH_FAKE_WORKER)
from benchctl.cli import main
sys.exit(main(["run", "--mode", "serving", "--backend", "openai", "--base-url", sys.argv[1], "--dataset", "random",
               "--num-prompts", "60", "--random-input-len", "8", "--random-output-len", "8", "--request-rate", "5",
               "--output-dir", sys.argv[2]]))
"""


@pytest.mark.parametrize("sig, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_a_serving_run_the_same_way(tmp_path, sig, exit_code):
    from tests.harness.fakes_serving import FakeServerProcess

    with FakeServerProcess("--ttft-ms", "20", "--itl-ms", "20") as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI_SERVING, server.base_url, str(tmp_path)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            run_dir, _ = first_record(tmp_path, proc)
            proc.send_signal(sig)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == exit_code, proc.stderr.read()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed" and run["error"].startswith("KeyboardInterrupt: interrupted by")
    assert signal.Signals(sig).name in run["error"]
    assert 1 <= run["summary"]["completed"] < 60 and len(read_records(run_dir / "requests.jsonl")) >= 1
