"""Reading a ShareGPT file: a JSON array read entry by entry, which also takes a file cut off mid-way.

The real ShareGPT as packaged on PyPI (docs/workloads.md) is a top-level array whose last entry is broken off: a
complete file is read whole, a file that ends inside its array gives every entry before the cut, and what was read
is stated (bytes used, their sha256, where the cut was). Anything else malformed is a WorkloadError naming the
first problem: bad JSON before the end, a value that is not an array, an entry that is not ShareGPT-shaped.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchctl.workload.base import WorkloadError

CHUNK_BYTES = 1 << 22  # read 4 MiB at a time: the text in memory is the entries plus one chunk, not the whole file
_SPACE = re.compile(r"[ \t\n\r]*")
# What a JSON text can end with when it is cut inside a literal or a number (the decoder stops before it)
_CUT_TOKEN = re.compile(
    r"-|-?(?:I|In|Inf|Infi|Infin|Infini|Infinit)|N|Na|t|tr|tru|f|fa|fal|fals|n|nu|nul"
    r"|\.|[eE][-+]?"
)
# ... or inside a \uXXXX escape or surrogate pair (the decoder points at the escape's "u")
_CUT_ESCAPE = re.compile(r"\\?u[0-9a-fA-F]{0,4}(?:\\(?:u[0-9a-fA-F]{0,4})?)?")


@dataclass(slots=True)
class DatasetFile:
    """The entries of a ShareGPT file and exactly which of its bytes they came from."""

    path: Path
    entries: list[dict]
    size_bytes: int
    bytes_used: int  # the file's first bytes_used bytes hold every entry read
    sha256: str  # of those bytes: two runs that agree on it read the same input
    cut: dict | None = None  # a truncated file: where the broken entry began and what broke it

    def provenance(self) -> dict:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "bytes_used": self.bytes_used,
            "sha256": self.sha256,
            "entries_read": len(self.entries),
            "truncated": self.cut is not None,
            "cut": self.cut,
        }


def read_sharegpt(path: Path) -> DatasetFile:
    """Read and validate a ShareGPT file; raise WorkloadError naming the first problem."""
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"dataset file not found: {path}")
    with path.open("rb") as f:
        reader = _ArrayReader(path, f)
        entries, used, cut = reader.read()
    size = path.stat().st_size
    return DatasetFile(path, entries, size, used, _sha256_prefix(path, used), cut)


class _ArrayReader:
    """A window of decoded text over the file. `base_bytes` is the byte offset of the window's first character;
    `mark` is where the last complete entry ends (nothing before it is needed again) and `start` where the entry
    being read begins. Reading more drops the text before `mark` and shifts every position by as much."""

    def __init__(self, path: Path, f):
        self.path, self.f = path, f
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.text, self.base_bytes, self.eof = "", 0, False
        self.mark = self.start = 0
        self.decoder = json.JSONDecoder()

    def read(self) -> tuple[list[dict], int, dict | None]:
        pos = self._skip_space(0)
        if pos == len(self.text):
            raise WorkloadError(f"{self.path}: not valid JSON (the file is empty)")
        if self.text[pos] != "[":
            self._not_an_array()
        pos, entries = pos + 1, list[dict]()
        while True:
            pos = self._skip_space(pos)
            if pos < len(self.text) and self.text[pos] == "]" and not entries:
                return entries, self._finish(pos + 1), None
            self.start = pos
            try:
                entry, pos = self._decode()
            except _Cut as cut:
                return (entries, *self._truncated(entries, cut.reason))
            problem = _entry_problem(len(entries), entry)
            if problem:
                raise WorkloadError(f"{self.path}: {problem} (the entry begins at byte {self._byte_at(self.start)})")
            entries.append(entry)
            self.mark = pos
            pos = self._skip_space(pos)
            if pos == len(self.text):  # the file ends right after a complete entry
                self.start = pos
                return (entries, *self._truncated(entries, "the file ends after an entry, without ']'"))
            if self.text[pos] == "]":
                return entries, self._finish(pos + 1), None
            if self.text[pos] != ",":
                self._garbage(pos, "expected ',' or ']' after an entry")
            pos += 1

    def _decode(self) -> tuple[Any, int]:
        """The JSON value at self.start, reading on until it is complete; _Cut when the file ends inside it."""
        while True:
            try:
                return self.decoder.raw_decode(self.text, self.start)
            except json.JSONDecodeError as e:
                if not self._may_continue(e):
                    self._garbage(e.pos, e.msg)
                if self.eof:
                    raise _Cut(e.msg) from None
                self._fill()

    def _may_continue(self, e: json.JSONDecodeError) -> bool:
        """Could more text (or the file's end) explain this error? Otherwise it is garbage where it stands."""
        if e.msg.startswith("Unterminated string"):  # the string runs to the end of the text read so far
            return True
        if len(self.text) - e.pos > len("\\ud83d\\ude0"):
            return False
        tail = self.text[e.pos :]
        return not tail.strip() or _CUT_TOKEN.fullmatch(tail) is not None or _CUT_ESCAPE.fullmatch(tail) is not None

    def _skip_space(self, pos: int) -> int:
        while True:
            match = _SPACE.match(self.text, pos)  # always matches: the pattern may be empty
            pos = match.end() if match else pos
            if pos < len(self.text) or self.eof:
                return pos
            pos -= self._fill()

    def _fill(self) -> int:
        """Read the next chunk; return how far the positions moved (the text before `mark` is dropped)."""
        raw = self.f.read(CHUNK_BYTES)
        try:
            new = self.utf8.decode(raw, final=not raw)
        except UnicodeDecodeError as e:
            if raw or e.reason != "unexpected end of data":
                offset = self.base_bytes + _utf8_len(self.text) + e.start
                raise WorkloadError(f"{self.path}: not valid JSON (not UTF-8 near byte {offset}: {e.reason})") from None
            new = ""  # the file ends inside a character: a cut like any other
        self.eof = not raw
        shift = self.mark
        self.base_bytes += _utf8_len(self.text[:shift])
        self.text = self.text[shift:] + new
        self.mark, self.start = 0, self.start - shift
        return shift

    def _byte_at(self, pos: int) -> int:
        return self.base_bytes + _utf8_len(self.text[:pos])

    def _finish(self, pos: int) -> int:
        """After the closing ']': only whitespace may follow; the whole file is used."""
        pos = self._skip_space(pos)
        if pos < len(self.text):
            self._garbage(pos, "extra data after the array's ']'")
        return self._byte_at(pos)

    def _truncated(self, entries: list[dict], reason: str) -> tuple[int, dict]:
        if not entries:
            raise WorkloadError(f"{self.path}: the JSON array is cut off before its first complete entry ({reason})")
        return self._byte_at(self.mark), {
            "entry": len(entries),
            "began_at_byte": self._byte_at(self.start),
            "reason": reason,
        }

    def _garbage(self, pos: int, msg: str) -> None:
        raise WorkloadError(
            f"{self.path}: not valid JSON at byte {self._byte_at(pos)} ({msg}), before the end of the file"
        )

    def _not_an_array(self) -> None:
        while not self.eof:
            self._fill()
        try:
            value = json.loads(self.text)
        except json.JSONDecodeError as e:
            raise WorkloadError(f"{self.path}: not valid JSON ({e})") from None
        raise WorkloadError(f"{self.path}: expected a JSON array of conversations, got {type(value).__name__}")


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class _Cut(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _entry_problem(i: int, entry: object) -> str | None:
    turns = entry.get("conversations") if isinstance(entry, dict) else None
    if not isinstance(turns, list):
        return f"entry {i} has no 'conversations' list"
    for j, turn in enumerate(turns):
        if type(turn) is dict and type(turn.get("value")) is str and type(turn.get("from", "")) is str:
            continue
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return f"entry {i} turn {j} has no string 'value'"
        return f"entry {i} turn {j}: 'from' must be a string, got {type(turn['from']).__name__}"
    return None


def _sha256_prefix(path: Path, n_bytes: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        left = n_bytes
        while left:
            block = f.read(min(left, CHUNK_BYTES))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()
