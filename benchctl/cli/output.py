"""What every command shares: the two consoles, the one-line error format, and the errors that are the user's."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from benchctl import store
from benchctl.backend import BackendError
from benchctl.dummy import DummyError
from benchctl.importers import ImportFormatError
from benchctl.models import ModelError
from benchctl.regress import GateInputError
from benchctl.sweep import SweepSpecError
from benchctl.workload import WorkloadError

# Without a terminal (CI logs, pipes) rich would wrap at 80 columns; tables read better wider.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

# Raised by the library for input a user can fix: main() prints them as one line and exits 2.
USER_ERRORS: tuple[type[Exception], ...] = (
    ModelError,
    WorkloadError,
    BackendError,
    store.RunNotFound,
    GateInputError,
    SweepSpecError,
    ImportFormatError,
    DummyError,
)

# typer may vendor click: find its ClickException through typer's own BadParameter.
CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def error_line(text: str) -> None:
    """One line, never wrapped: scripts grep for it."""
    sys.stderr.write("benchctl: error: " + " ".join(text.split()) + "\n")
