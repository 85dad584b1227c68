"""Installed package versions, read from package metadata without importing anything.

Standard library only: backend workers use it too, possibly under an engine's own interpreter.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def versions(*names: str) -> dict[str, str]:
    """name -> version for each installed distribution; missing ones are left out."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
