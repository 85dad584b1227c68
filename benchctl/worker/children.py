"""Processes the harness starts (a worker, a launched server, the metrics scraper) die with it: after benchctl is
SIGKILLed nothing of it is left to stop them, and an engine holding a GPU must not run on for ever.

Linux: prctl(PR_SET_PDEATHSIG) in the child between fork and exec, the kernel's own watch of the parent. It fires
when the thread that started the child ends, so children are started from the thread that runs the whole run.
Elsewhere nothing is set. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # looked up here, not in the forked child


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A Popen preexec_fn: the child gets `sig` when this process dies, and exits at once if it already has."""
    if _PRCTL is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        _PRCTL(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return arm


def kill_own_group_on_sigterm() -> None:
    """In a child that leads its own process group (a worker): SIGTERM takes the whole group with it, so the
    engine's own processes go when the harness dies, not only the worker."""

    def kill_group(signum: int, frame: object) -> None:
        os.killpg(os.getpgrp(), signal.SIGKILL)

    if os.getpgrp() == os.getpid():
        signal.signal(signal.SIGTERM, kill_group)
