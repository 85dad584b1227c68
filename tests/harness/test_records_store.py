"""Per-request records on disk (benchctl/records.py) and the run store (benchctl/store.py)."""

from __future__ import annotations

import itertools
import json
import math
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchctl import store
from benchctl.records import RecordWriter, RequestRecord, read_records


def test_record_writer_appends_and_is_readable_while_open(tmp_path):
    path = tmp_path / "requests.jsonl"
    with RecordWriter(path) as writer:
        writer.append({"request_id": "a", "output_tokens": 3})
        assert read_records(path) == [{"request_id": "a", "output_tokens": 3}]  # flushed, writer still open
        writer.append({"request_id": "b", "itl_s": [0.5, 0.25]})
        assert [r["request_id"] for r in read_records(path)] == ["a", "b"]
        assert writer.count == 2
    with RecordWriter(path) as writer:  # reopening appends, never truncates
        writer.append({"request_id": "c"})
    assert [r["request_id"] for r in read_records(path)] == ["a", "b", "c"]
    assert path.read_text().count("\n") == 3


def test_read_records_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text('{"request_id": "a"}\n\n{"request_id": "b"}\n{"request_id": "c", "output_to')
    assert read_records(path) == [{"request_id": "a"}, {"request_id": "b"}]


def test_request_record_round_trip_ignores_unknown_keys():
    r = RequestRecord(
        "r1",
        prompt_tokens=5,
        expected_output_tokens=3,
        output_tokens=3,
        start_s=0.1,
        first_token_s=0.2,
        finish_s=0.4,
        token_times_s=[0.2, 0.3, 0.4],
    )
    assert r.ok
    data = {**r.to_dict(), "ttft_s": 0.1, "something_new": 1}
    assert RequestRecord.from_dict(data) == r
    assert not RequestRecord("r2", 1, 1, error="boom", finish_s=1.0).ok
    assert not RequestRecord("r3", 1, 1).ok  # never finished


def test_new_run_dir_is_unique_under_concurrent_creation(tmp_path):
    barrier = threading.Barrier(32)
    made: list[Path] = []
    lock = threading.Lock()

    def create():
        barrier.wait()
        path = store.new_run_dir(tmp_path / "results", "hf")
        with lock:
            made.append(path)

    threads = [threading.Thread(target=create) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 32 and len(set(made)) == 32
    assert all(p.is_dir() and p.parent == tmp_path / "results" and "-hf-" in p.name for p in made)


def test_new_run_dir_retries_when_the_random_suffix_collides(tmp_path, monkeypatch):
    # every suffix is handed out twice, so half the mkdir calls collide and must retry
    counter = itertools.count()
    lock = threading.Lock()

    def token_hex(_n):
        with lock:
            return f"{next(counter) // 2:06x}"

    monkeypatch.setattr(store.secrets, "token_hex", token_hex)
    monkeypatch.setattr(store.time, "strftime", lambda fmt, t=None: "20250101-000000")
    barrier = threading.Barrier(16)
    made: list[Path] = []

    def create():
        barrier.wait()
        made.append(store.new_run_dir(tmp_path, "ref"))

    threads = [threading.Thread(target=create) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in made)


def test_write_json_atomic_writes_strict_json_and_numpy_scalars(tmp_path):
    path = tmp_path / "run.json"
    store.write_json_atomic(path, {"a": np.float64(1.5), "n": np.int64(3), "p": Path("/x"), "l": [1, None]})
    assert json.loads(path.read_text()) == {"a": 1.5, "n": 3, "p": "/x", "l": [1, None]}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"x": [1.0, math.inf]}, {"x": object()}])
def test_write_json_atomic_failure_keeps_the_old_file_and_no_temp(tmp_path, bad):
    path = tmp_path / "run.json"
    store.write_json_atomic(path, {"status": "running"})
    with pytest.raises((ValueError, TypeError)):
        store.write_json_atomic(path, bad)
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_write_json_atomic_crash_before_rename_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    store.write_json_atomic(path, {"v": 1})

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(store.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_clean_floats_makes_nan_writable(tmp_path):
    data = {"a": math.nan, "b": [1.0, math.inf, (-math.inf, 2)], "c": {"d": math.nan, "e": "x"}, "f": 3}
    cleaned = store.clean_floats(data)
    assert cleaned == {"a": None, "b": [1.0, None, [None, 2]], "c": {"d": None, "e": "x"}, "f": 3}
    store.write_json_atomic(tmp_path / "run.json", cleaned)
    assert json.loads((tmp_path / "run.json").read_text()) == cleaned


def test_readers_never_see_a_partial_run_json(tmp_path):
    path = tmp_path / "run.json"
    big = {"rows": [{"i": i, "text": "x" * 50} for i in range(2000)]}
    store.write_json_atomic(path, {**big, "version": -1})
    stop = threading.Event()
    seen: list[int] = []
    errors: list[Exception] = []

    def reader():
        while not stop.is_set():
            try:
                seen.append(json.loads(path.read_text())["version"])
            except Exception as e:  # a torn file would show up here
                errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    for version in range(20):
        store.write_json_atomic(path, {**big, "version": version})
    stop.set()
    t.join()
    assert not errors and seen
    assert json.loads(path.read_text())["version"] == 19


def test_write_parquet_round_trip(tmp_path):
    rows = [
        {"request_id": "a", "ttft_s": 0.5, "itl_s": [0.25, 0.5], "extra": {"batch_index": 0}},
        {"request_id": "b", "ttft_s": None, "itl_s": [], "extra": {}},
    ]
    store.write_parquet(rows, tmp_path / "requests.parquet")
    frame = pd.read_parquet(tmp_path / "requests.parquet")
    assert frame["request_id"].tolist() == ["a", "b"]
    assert frame["ttft_s"].iloc[0] == 0.5 and pd.isna(frame["ttft_s"].iloc[1])
    assert [list(v) for v in frame["itl_s"]] == [[0.25, 0.5], []]
    assert [json.loads(v) for v in frame["extra"]] == [{"batch_index": 0}, {}]


@pytest.fixture
def runs(tmp_path):
    out = tmp_path / "results"
    for name in ("20250101-000000-hf-aaa111", "20250101-000000-hf-aaa222", "20250102-000000-reference-bbb333"):
        (out / name).mkdir(parents=True)
        (out / name / "run.json").write_text(json.dumps({"run_id": name}))
    (out / "20250103-000000-hf-ccc444").mkdir()  # no run.json: not a run
    return out


def test_resolve_run_by_path_id_and_prefix(runs):
    full = runs / "20250102-000000-reference-bbb333"
    assert store.resolve_run(str(full), runs / "elsewhere") == full
    assert store.resolve_run("20250101-000000-hf-aaa222", runs) == runs / "20250101-000000-hf-aaa222"
    assert store.resolve_run("20250102", runs) == full
    assert store.load_run(full) == {"run_id": "20250102-000000-reference-bbb333"}


def test_resolve_run_ambiguous_and_missing(runs):
    with pytest.raises(store.RunNotFound, match="ambiguous: 20250101-000000-hf-aaa111, 20250101-000000-hf-aaa222"):
        store.resolve_run("20250101", runs)
    with pytest.raises(store.RunNotFound, match="no run 'nosuch'"):
        store.resolve_run("nosuch", runs)
    with pytest.raises(store.RunNotFound, match="no run '20250103"):
        store.resolve_run("20250103", runs)  # the folder exists but has no run.json
    with pytest.raises(store.RunNotFound):
        store.resolve_run("x", runs / "no-such-output-dir")


def test_resolve_run_missing_absolute_path_is_run_not_found(runs, tmp_path):
    with pytest.raises(store.RunNotFound):
        store.resolve_run(str(tmp_path / "gone" / "20250101-000000-hf-dead00"), runs)


def test_load_run_with_invalid_json_is_run_not_found(tmp_path):
    (tmp_path / "run.json").write_text('{"status": "runn')
    with pytest.raises(store.RunNotFound, match="run.json is not valid JSON"):
        store.load_run(tmp_path)


@pytest.mark.parametrize(
    "write",
    [
        lambda path: store.write_json_atomic(path / "run.json", {"status": "completed"}),
        lambda path: store.write_parquet([{"request_id": "a", "ttft_s": 0.5}], path / "requests.parquet"),
    ],
)
def test_an_atomic_replace_is_followed_by_an_fsync_of_the_directory(tmp_path, monkeypatch, write):
    """Without the directory's fsync a power cut can lose the rename: the old file (or none) comes back."""
    import os
    import stat

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        store.os,
        "fsync",
        lambda fd: (events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file"), real_fsync(fd))[
            1
        ],
    )
    monkeypatch.setattr(store.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    write(tmp_path)
    assert events == ["fsync file", "replace", "fsync dir"]
    assert sorted(p.name for p in tmp_path.iterdir()) in (["run.json"], ["requests.parquet"])
