"""Child programs: work that needs torch, transformers or an engine, run as `python -P -m MODULE JSON` and
answering one JSON object, so the harness process never imports them (GGUF conversion, hwinfo's measurement,
bench-attention).

The parent's end is `run_child`; the child's end is `child_main`, which writes the answer to a private
duplicate of stdout (fd 1 then points at stderr, so a library that prints cannot corrupt it), exits when its
parent dies, and answers an exception as {"error": ..., "invalid": bool}: `invalid` for a ValueError, which is
the caller's mistake (a bad shape, an unknown name) rather than a bug.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from benchctl.worker.host import REPO_ROOT


class ChildFailed(RuntimeError):
    """A child program failed: `invalid` when it refused its input (ValueError), `log_tail` its stderr's end."""

    def __init__(self, message: str, invalid: bool = False, log_tail: str = ""):
        super().__init__(message)
        self.invalid = invalid
        self.log_tail = log_tail


def child_env() -> dict[str, str]:
    """The environment of a child program: benchctl found from this checkout, the current directory not on
    sys.path (a `platform.py` there must not run inside the child)."""
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_child(
    module: str, payload: dict[str, Any], python: str = sys.executable, timeout_s: float | None = None
) -> dict[str, Any]:
    """`python -P -m module JSON(payload)` -> the JSON object it answers; ChildFailed with one line otherwise."""
    try:
        proc = subprocess.run(
            [python, "-P", "-m", module, json.dumps(payload)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=child_env(),
        )
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"{module} did not finish within {timeout_s:g} s") from None
    except OSError as e:
        raise ChildFailed(f"cannot start {python}: {e}") from None
    tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if isinstance(answer, dict) and "error" in answer:
        raise ChildFailed(str(answer["error"]), bool(answer.get("invalid")), tail)
    if proc.returncode != 0 or not isinstance(answer, dict):
        last = tail.splitlines()[-1] if tail else "no output"
        raise ChildFailed(f"{module} exited with code {proc.returncode}: {last}", log_tail=tail)
    return answer


def exit_when_orphaned(poll_s: float = 1.0) -> None:
    """Exit (at once, exit code 1) when the process that started this one dies: a thread polls getppid."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)  # the parent died: nobody reads the answer, nobody stops us

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def child_main(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """The child's end: fn(payload from argv[1]) -> one JSON line on the original stdout. Returns the exit code."""
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    exit_when_orphaned()
    try:
        answer = fn(json.loads(sys.argv[1]))
        code = 0
    except ValueError as e:
        answer, code = {"error": str(e), "invalid": True}, 2
    except BaseException as e:  # a bug or a missing package: one line for the parent, the traceback on stderr
        traceback.print_exc()
        answer, code = {"error": f"{type(e).__name__}: {e}", "invalid": False}, 1
    with os.fdopen(answer_fd, "w") as out:
        out.write(json.dumps(answer) + "\n")
    return code
