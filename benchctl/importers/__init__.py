"""`benchctl import`: other tools' per-request results as benchctl run folders, every metric recomputed.

    import_result(path, tool=None, output_dir=Path("results")) -> [run folder, ...]  (one per benchmark in the file)
    tool_vs_benchctl(run) -> rows: the tool's own figure, benchctl's, the difference and why

Readers: vllm (`bench serve --save-result --save-detailed` JSON), guidellm (0.8 benchmarks JSON), aiperf
(`profile_export.jsonl`, with its `profile_export_aiperf.json` beside it). Bad input is ImportFormatError: one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchctl.importers import aiperf, guidellm, vllm
from benchctl.importers.common import Imported, ImportFormatError, tool_vs_benchctl, write_run

# Each reader module: TOOL, NAME, detects(data, first_row) -> bool, read(path, data) -> [Imported], and
# folders(path) -> bool where it reads a tool's artifact folder.
_READERS = {reader.TOOL: reader for reader in (vllm, guidellm, aiperf)}
TOOLS = tuple(_READERS)

__all__ = ["TOOLS", "ImportFormatError", "Imported", "detect_tool", "import_result", "parse_file", "tool_vs_benchctl"]


def detect_tool(path: Path) -> str:
    """Which tool wrote `path` (a file, or a tool's artifact folder); ImportFormatError when none did."""
    return _sniff(Path(path))[0]


def parse_file(path: Path, tool: str | None = None) -> list[Imported]:
    """The file's benchmarks, parsed and checked, nothing written."""
    path = Path(path)
    if tool is not None and tool not in _READERS:
        raise ImportFormatError(f"unknown tool {tool!r}; choose one of {', '.join(TOOLS)}")
    if not path.exists():
        raise ImportFormatError(f"{path}: no such file")
    found, data = _sniff(path) if tool is None else (tool, None)
    return _READERS[found].read(path, data)


def import_result(path: Path, tool: str | None = None, output_dir: Path = Path("results")) -> list[Path]:
    """Run folders under output_dir, one per benchmark in the file (a guidellm sweep, vLLM's --append-result)."""
    imported = parse_file(path, tool)  # everything is checked before the first folder is made
    return [write_run(imp, Path(output_dir)) for imp in imported]


def _sniff(path: Path) -> tuple[str, Any]:
    """(tool, the file parsed as one JSON document or None): parsed once, detection and reading share it."""
    if path.is_dir():
        for tool, reader in _READERS.items():
            if getattr(reader, "folders", None) and reader.folders(path):
                return tool, None
        raise ImportFormatError(f"{path}: a folder holding no result file benchctl reads; give the result file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ImportFormatError(f"{path}: cannot be read as text ({e})") from None
    data = first = None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # JSON lines (aiperf's records, vLLM's --append-result) or not JSON at all
        try:
            first = json.loads(text.lstrip().split("\n", 1)[0])
        except json.JSONDecodeError:
            pass
    for tool, reader in _READERS.items():
        if reader.detects(data, first):
            return tool, data
    names = [reader.NAME for reader in _READERS.values()]
    known = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    raise ImportFormatError(f"{path}: not a result file of {known} (say which with --tool)")
