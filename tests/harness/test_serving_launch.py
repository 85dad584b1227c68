"""benchctl.serving.launch: a server's environment, and `benchctl serve`'s foreground child (signals, exit code)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from benchctl.serving.launch import ServerProcess

# A stand-in server: says it is ready, then exits 7 on SIGTERM and 8 on SIGINT (naming the signal it got).
CHILD = textwrap.dedent("""
    import signal, sys, time
    def stop(signum, frame):
        print("got", signal.Signals(signum).name, flush=True)
        sys.exit({signal.SIGTERM: 7, signal.SIGINT: 8}[signum])
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    time.sleep(60)
""")
PARENT = "import sys\nfrom benchctl.serving.launch import run_foreground\nsys.exit(run_foreground(sys.argv[1:]))\n"


def _start(child: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT, sys.executable, "-c", child], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 7), (signal.SIGINT, 8)])
def test_a_signal_to_benchctl_reaches_the_foreground_server_and_its_exit_code_comes_back(sig, code):
    proc = _start(CHILD)
    proc.send_signal(sig)  # to benchctl only: the server has its own session
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == f"got {sig.name}" and proc.returncode == code


def test_a_server_killed_by_a_signal_exits_128_plus_it():
    proc = _start("import os, signal\nprint('ready', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert proc.wait(timeout=30) == 128 + signal.SIGKILL


def test_a_platform_py_in_the_working_directory_does_not_run_in_the_server(tmp_path, monkeypatch):
    (tmp_path / "platform.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)
    server = ServerProcess([sys.executable, "-c", "import platform; print(platform.system())"], tmp_path / "log")
    try:
        for _ in range(300):
            if server.exit_code() is not None:
                break
            time.sleep(0.1)
        assert server.exit_code() == 0, server.log_tail()
    finally:
        server.stop()


def test_a_launched_server_does_not_outlive_a_sigkilled_benchctl(tmp_path):
    """The harness launches a server, then dies by SIGKILL (no cleanup runs): the server goes too."""
    import os

    import psutil

    parent = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from benchctl.serving.launch import ServerProcess
        server = ServerProcess([sys.executable, "-c", "import time; time.sleep(60)"], Path({str(tmp_path / "log")!r}))
        print(server.proc.pid, flush=True)
        time.sleep(60)
    """)
    harness = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    server_pid = int(harness.stdout.readline())
    assert psutil.pid_exists(server_pid)
    os.kill(harness.pid, signal.SIGKILL)
    harness.wait()
    deadline = time.monotonic() + 5
    while (
        time.monotonic() < deadline
        and psutil.pid_exists(server_pid)
        and psutil.Process(server_pid).status() != psutil.STATUS_ZOMBIE
    ):
        time.sleep(0.05)
    assert not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE
