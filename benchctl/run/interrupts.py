"""How a run ends when it is asked to: SIGINT and SIGTERM both unwind it, offline and serving alike.

SIGINT raises KeyboardInterrupt (Python's own handler, which uvloop and asyncio also expect); SIGTERM raises
Interrupted, a KeyboardInterrupt. The run's `except BaseException` then stops the engine (the worker's or the
server's whole process group), keeps the records and writes status `failed` with the reason; the CLI exits
128 + the signal's number (130, 143).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def interrupts_unwind() -> Iterator[None]:
    """SIGTERM raises Interrupted in the main thread, as SIGINT raises KeyboardInterrupt. A second SIGTERM is
    ignored while the run cleans up (it kills the engine's group and writes run.json: seconds at most)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can set handlers; a caller on another thread owns its signals
        return

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def failure_reason(error: BaseException) -> str:
    """What run.json's `error` says about an exception that ended the run."""
    if isinstance(error, KeyboardInterrupt):  # Python's SIGINT handler raises it without a message
        return f"KeyboardInterrupt: {str(error) or 'interrupted by SIGINT'}"
    return f"{type(error).__name__}: {error}"
