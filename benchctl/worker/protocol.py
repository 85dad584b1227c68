"""Line-delimited JSON between the harness (host) and a backend worker process.

host -> worker (worker's stdin), one JSON object per line:
  {"op": "load", "model": {...}, "options": {...}}   -> {"event": "ready", "info": {...}}
  {"op": "run", "requests": [...], "max_concurrency": int|null}
        -> {"event": "record", "record": {...}} per finished request (as it finishes)
        -> {"event": "step", "step": {...}}         per engine step, from engines that report them
        -> {"event": "done", "stats": {...}}        (engine statistics for the whole run)
  {"op": "shutdown"}                                  -> the worker exits 0
worker -> host on any failure: {"event": "fatal", "error": "...", "traceback": "..."} and exit 1.

The worker writes protocol lines to a private duplicate of its original stdout and points fd 1 at
stderr, so an engine that prints (or a C library that writes to fd 1) cannot corrupt the stream.
Times in records are seconds since the worker's run start `t0` (time.monotonic, system-wide on Linux).
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

PROTOCOL_VERSION = 1


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError(f"protocol message is not an object: {line!r:.200}")
    return message


class Channel:
    """The worker's end: protocol out on a private fd, commands in on stdin."""

    def __init__(self) -> None:
        sys.stdout.flush()
        protocol_fd = os.dup(1)
        os.dup2(2, 1)  # anything else written to fd 1 now lands in the worker log
        sys.stdout = os.fdopen(os.dup(2), "w", buffering=1)
        self._out: IO[bytes] = os.fdopen(protocol_fd, "wb", buffering=0)
        self._in = sys.stdin.buffer

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(encode(message))

    def receive(self) -> dict[str, Any] | None:
        line = self._in.readline()
        return decode(line) if line else None
