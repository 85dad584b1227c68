"""The load client over several processes, stopped early: Ctrl-C must end it in about a second, and every
request still has exactly one record (finished, or failed with the reason)."""

from __future__ import annotations

import _thread
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchctl.records import read_records
from benchctl.serving.bench import fake_requests
from benchctl.serving.client import ClientOptions
from benchctl.serving.shards import ShardedClient
from tests.harness.fakes_serving import FakeServerProcess

# 20 tokens 100 ms apart: a request takes ~2 s, so at any moment of the run several are in flight in each process;
# 10 requests/s for 8-12 s: the run is far from over when it is stopped
SLOW = ("--ttft-ms", "100", "--itl-ms", "100")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slow_server():
    with FakeServerProcess(*SLOW) as server:
        yield server


def _check_accounting(records: list[dict], requests) -> list[dict]:
    """Exactly one record per request; each one finished, or failed because the run was interrupted."""
    assert sorted(r["request_id"] for r in records) == sorted(r.request_id for r in requests)
    finished = [r for r in records if r["error"] is None]
    assert all(r["output_tokens"] == 20 and r["finish_s"] is not None for r in finished)
    for r in records:
        if r["error"] is not None:
            assert r["extra"]["error_kind"] in ("interrupted", "not_sent"), r
            assert "interrupted" in r["error"], r
    return finished


def _wait_for(records: list, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(records) >= count, "the run produced no records"


def test_close_during_a_run_stops_four_processes_within_a_second(slow_server):
    # run() on a thread and close() from another, as a serving run does when Ctrl-C cancels its event loop
    options = ClientOptions(base_url=slow_server.base_url, model_name="fake-model", request_timeout_s=60)
    requests = fake_requests(80, 20, rate=10.0)
    sharded = ShardedClient(options, requests, 4)
    got: list[dict] = []
    runner = threading.Thread(target=sharded.run, args=(time.monotonic() + 0.05, got.append))
    runner.start()
    try:
        _wait_for(got, 1)
    finally:
        t = time.monotonic()
        sharded.close()
        close_s = time.monotonic() - t
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert close_s < 1.5, f"close() took {close_s:.2f} s"
    assert all(p.exitcode is not None for p in sharded.procs)
    finished = _check_accounting(got, requests)
    assert finished and len(finished) < len(requests)  # stopped mid-run, with requests in flight


def test_keyboard_interrupt_inside_run_then_close_keeps_every_record(slow_server):
    # run() on the main thread, interrupted there (benchctl bench-client's pattern): close() collects the rest
    options = ClientOptions(base_url=slow_server.base_url, model_name="fake-model", request_timeout_s=60)
    requests = fake_requests(80, 20, rate=10.0)
    sharded = ShardedClient(options, requests, 4)
    got: list[dict] = []
    threading.Thread(target=lambda: (_wait_for(got, 1), _thread.interrupt_main()), daemon=True).start()
    t = None
    try:
        sharded.run(time.monotonic() + 0.05, got.append)
    except KeyboardInterrupt:
        t = time.monotonic()
    finally:
        sharded.close()
    assert t is not None, "the run ended before the interrupt"
    assert time.monotonic() - t < 1.5
    finished = _check_accounting(got, requests)
    assert finished and len(finished) < len(requests)


CLI = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even when started in the background
from benchctl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_of_a_four_process_serving_run_ends_it_in_about_a_second(tmp_path, slow_server):
    out = tmp_path / "results"
    argv = [
        sys.executable,
        "-c",
        CLI,
        "run",
        "--mode",
        "serving",
        "--backend",
        "openai",
        "--base-url",
        slow_server.base_url,
        "--client-processes",
        "4",
        "--force",  # 4 processes on a 2-core machine: the point of this test, not a measurement
        "--dataset",
        "random",
        "--num-prompts",
        "120",
        "--random-input-len",
        "8",
        "--random-output-len",
        "20",
        "--request-rate",
        "10",
        "--warmup-requests",
        "0",
        "--output-dir",
        str(out),
    ]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:  # until requests are finishing
            files = list(out.glob("*/requests.jsonl"))
            if files and files[0].stat().st_size > 0:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        ended_s = time.monotonic() - t
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The load client's share is ~0.1 s (close() above); the rest is the run's own ending, measured on a loaded
    # 2-core machine at 1.4-2.3 s: finalize's parquet write imports pandas (~0.6 s), then the interpreter's exit.
    assert ended_s < 3.0, f"the run took {ended_s:.2f} s to end after Ctrl-C"
    assert proc.returncode != 0
    (run_dir,) = out.iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "failed"
    records = read_records(run_dir / "requests.jsonl")
    finished = [r for r in records if r["error"] is None]
    assert finished and len(finished) < 120
    assert sorted(r["request_id"] for r in records) == sorted({r["request_id"] for r in records})  # no duplicates
    assert len(records) == 120  # the finished ones, and every other request failed with the reason
    assert all("interrupted" in r["error"] for r in records if r["error"] is not None)
