"""Launch an engine's own OpenAI server (Backend.server), wait until it is healthy, and always stop it.

The server runs in its own session (process group) on 127.0.0.1 and a free port, its output going to
`server.log` in the run folder. `stop()` signals the whole group, then kills whatever survives, children that
left the group included (engines spawn workers), so nothing outlives the run: not on success, failure or Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from benchctl.backend import ServerSpec
from benchctl.worker.children import die_with_parent
from benchctl.worker.host import REPO_ROOT


class ServerFailed(RuntimeError):
    """The server exited or never became healthy; `log_tail` holds the end of its log."""

    def __init__(self, message: str, log_tail: str = ""):
        super().__init__(message)
        self.log_tail = log_tail


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_argv(spec: ServerSpec, values: dict[str, str], engine_args: dict[str, str]) -> tuple[list[str], dict]:
    """Fill the argv template -> (argv, extra environment). The engine args (after spec.default_args) a placeholder
    did not consume are appended as spec.engine_arg (true/false as spec.engine_bool when set), or set as variables
    (spec.env_args)."""
    if spec.default_args is not None:
        engine_args = spec.default_args(engine_args)
    argv = [part.format(**values) for part in spec.argv]
    used = {name for part in spec.argv for name in _fields(part)}
    env = {}
    for key, value in engine_args.items():
        if key in used:
            continue
        if key in spec.env_args:
            env[spec.env_args[key]] = value
            continue
        fields = {"key": key, "flag": key.replace("_", "-"), "value": value}
        if spec.engine_bool and value.lower() in ("true", "false"):
            flag = spec.engine_bool[0 if value.lower() == "true" else 1].format(**fields)
            if flag:  # "" = a store_true flag left out
                argv.append(flag)
        else:
            argv += [part.format(**fields) for part in spec.engine_arg]
    return argv, env


def _fields(template: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def server_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A server's environment: ours plus `env`; benchctl and backends/ found from this checkout (an engine's own
    virtualenv has neither installed), and the current directory kept off sys.path (PYTHONSAFEPATH: a
    `platform.py` where benchctl was started must not run inside the server)."""
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH")) if p)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    child_env.setdefault("PYTHONSAFEPATH", "1")
    return child_env


FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_foreground(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run a server in the foreground until it exits (`benchctl serve`) and return its exit code (128 + N when
    signal N ended it). It has its own session, so a terminal's Ctrl-C reaches it once, forwarded by us, as do
    SIGTERM and SIGHUP sent to benchctl (uvicorn takes a second SIGINT as "stop now")."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        env=server_env(env),
        start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGTERM),
    )

    def forward(signum, _frame) -> None:
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # only when wait itself failed: nothing may outlive us
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    return 128 - code if code < 0 else code


class ServerProcess:
    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.argv = argv
        self.log_path = log_path
        self.health_url: str | None = None  # set by wait_healthy
        self._log = open(log_path, "ab")
        self._log.write(("$ " + " ".join(argv) + "\n").encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=server_env(env),
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),  # a SIGKILLed benchctl leaves no server running
        )

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def wait_healthy(self, health_url: str, timeout_s: float, poll_s: float = 0.5) -> float:
        """Seconds until GET health_url answered 200; ServerFailed if the process exits or time runs out."""
        self.health_url = health_url
        t_start = time.monotonic()
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerFailed(f"server exited with code {code} before it became healthy", self.log_tail())
            try:
                with urllib.request.urlopen(health_url, timeout=5) as resp:
                    if resp.status == 200:
                        return time.monotonic() - t_start
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - t_start > timeout_s:
                raise ServerFailed(f"server did not answer {health_url} within {timeout_s:g} s", self.log_tail())
            time.sleep(poll_s)

    def health_status(self, timeout_s: float = 10.0) -> int | None:
        """The HTTP status of GET health_url now; None when no answer came in time (a busy server is not a dead
        one), 0 when the connection was refused."""
        if self.health_url is None:
            return None
        try:
            with urllib.request.urlopen(self.health_url, timeout=timeout_s) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
        except urllib.error.URLError as e:
            return 0 if isinstance(e.reason, ConnectionRefusedError) else None
        except TimeoutError:
            return None
        except OSError:
            return 0

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after grace_s, then any descendant that escaped the group."""
        try:
            descendants = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.proc.pid, signal.SIGKILL)  # workers left in the group after the leader exited
        if self.proc.poll() is None:
            self.proc.wait()
        for child in descendants:
            try:
                child.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(descendants, timeout=5)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
