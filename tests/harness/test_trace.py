"""Trace replay (benchctl/workload/trace.py): the three formats, prompts from hash blocks, windows and speed, and
the replayed arrival times against the fake server."""

from __future__ import annotations

import json
import os
import statistics

import pytest

from benchctl.workload import WorkloadError, WorkloadOptions, build_workload
from tests.harness.fakes_serving import FakeServerProcess, run_client

BLOCK = 512


def write_jsonl(path, rows) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return f"trace:{path}"


def mooncake(tmp_path, rows=None) -> str:
    rows = rows or [
        {"timestamp": 1000, "input_length": 1100, "output_length": 5, "hash_ids": [7, 8, 9]},
        {"timestamp": 1250, "input_length": 800, "output_length": 6, "hash_ids": [7, 11]},
        {"timestamp": 1250, "input_length": 300, "output_length": 7, "hash_ids": [12]},
        {"timestamp": 3000, "input_length": 700, "output_length": 8, "hash_ids": [7, 8]},
    ]
    return write_jsonl(tmp_path / "mooncake.jsonl", rows)


def test_shared_hash_ids_share_exactly_their_blocks(tmp_path, tok):
    w = build_workload(WorkloadOptions(dataset=mooncake(tmp_path), seed=3), tok)
    a, b, c, d = (r.prompt_token_ids for r in w.requests)
    assert [len(x) for x in (a, b, c, d)] == [1100, 800, 300, 700]
    assert a[:BLOCK] == b[:BLOCK] == d[:BLOCK]  # hash id 7 in all three
    assert a[BLOCK:700] == d[BLOCK:700]  # id 8: d's last block is the first 188 tokens of a's second block
    assert sum(x == y for x, y in zip(a[BLOCK:800], b[BLOCK:800])) < 10  # id 8 against id 11: other tokens
    assert c[:300] != a[:300]  # id 12 is its own block
    assert not set(a) & tok.special_ids
    # the text the server gets shares the same prefix: block 7's text starts both prompts
    block_7_text = tok.decode(a[:BLOCK])
    assert w.requests[0].prompt.startswith(block_7_text) and w.requests[1].prompt.startswith(block_7_text)
    assert len(os.path.commonprefix([w.requests[0].prompt, w.requests[2].prompt])) < 20
    # deterministic per id and seed; another seed draws other blocks
    again = build_workload(WorkloadOptions(dataset=mooncake(tmp_path), seed=3), tok)
    assert [r.prompt_token_ids for r in again.requests] == [a, b, c, d]
    other = build_workload(WorkloadOptions(dataset=mooncake(tmp_path), seed=4), tok)
    assert other.requests[0].prompt_token_ids[:BLOCK] != a[:BLOCK]


def test_rows_without_hash_ids_have_prompts_of_their_own(tmp_path, tok):
    rows = [{"t": 0.0, "in": 40, "out": 3}, {"t": 0.5, "in": 40, "out": 3}, {"t": 1.5, "in": 20, "out": 4}]
    dataset = write_jsonl(tmp_path / "generic.jsonl", rows)
    w = build_workload(WorkloadOptions(dataset=dataset, trace_columns="timestamp=t,input=in,output=out,unit=s"), tok)
    ids = [r.prompt_token_ids for r in w.requests]
    assert [len(x) for x in ids] == [40, 40, 20] and ids[0] != ids[1] and ids[2] != ids[0][:20]
    assert [r.arrival_s for r in w.requests] == [0.0, 0.5, 1.5]
    assert [r.output_len for r in w.requests] == [3, 3, 4]
    assert w.source["format"] == "generic" and w.source["columns"]["unit"] == "s"


def test_schedule_is_the_trace_relative_to_the_window_and_scaled_by_the_speed(tmp_path, tok):
    w = build_workload(WorkloadOptions(dataset=mooncake(tmp_path)), tok)
    assert [r.arrival_s for r in w.requests] == pytest.approx([0.0, 0.25, 0.25, 2.0])
    fast = build_workload(WorkloadOptions(dataset=mooncake(tmp_path), trace_speed=4.0, trace_window="0.2:5"), tok)
    assert [r.arrival_s for r in fast.requests] == pytest.approx([0.0, 0.0, 1.75 / 4])
    assert [r.output_len for r in fast.requests] == [6, 7, 8]
    # the prompt of a row does not depend on the window it is replayed in
    assert fast.requests[0].prompt_token_ids == w.requests[1].prompt_token_ids
    spec = fast.spec()
    assert spec["schedule"]["kind"] == "trace" and spec["schedule"]["speed"] == 4.0
    source = spec["source"]
    assert source["format"] == "mooncake" and len(source["sha256"]) == 64
    assert source["rows_in_file"] == 4 and source["rows_used"] == 3 and source["window_s"] == [0.2, 5.0]
    assert source["speed"] == 4.0 and source["first_row"] == 1
    capped = build_workload(WorkloadOptions(dataset=mooncake(tmp_path), num_prompts=2), tok)
    assert len(capped.requests) == 2 and capped.source["rows_in_window"] == 4


def test_burstgpt_csv_in_seconds_one_model_failed_rows_left_out(tmp_path, tok):
    path = tmp_path / "burst.csv"
    path.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,30,12,42,Conversation log\n"
        "6,GPT-4,50,20,70,Conversation log\n"
        "7.5,ChatGPT,10,0,10,Conversation log\n"
        "9,ChatGPT,25,8,33,API log\n"
    )
    w = build_workload(WorkloadOptions(dataset=f"trace:{path}", trace_model="ChatGPT"), tok)
    assert [(r.arrival_s, r.prompt_len, r.output_len) for r in w.requests] == [(0.0, 30, 12), (4.0, 25, 8)]
    assert w.source["rows_skipped"] == {"zero_length": 1, "other_model": 1} and w.source["format"] == "burstgpt"
    both = build_workload(WorkloadOptions(dataset=f"trace:{path}"), tok)
    assert [r.output_len for r in both.requests] == [12, 20, 8]


@pytest.mark.parametrize(
    ("dataset", "options", "message"),
    [
        ("random", {"trace_speed": 2.0}, "--trace-speed apply to --dataset trace:PATH"),
        ("trace:x.jsonl", {"trace_speed": 0}, "--trace-speed must be a finite number > 0"),
        ("trace:", {}, "needs the trace file's path"),
        ("trace:x.jsonl", {"trace_window": "5:2"}, "--trace-window expects START:END"),
        ("trace:x.jsonl", {"trace_window": "abc"}, "--trace-window expects START:END"),
        ("trace:x.jsonl", {"trace_columns": "timestamp=t,input=i"}, "must name the output column"),
        ("trace:x.jsonl", {"trace_columns": "timestamp=t,input=i,output=o,unit=min"}, "unit must be ms or s"),
        ("trace:x.jsonl", {"request_rate": 4.0}, "a trace replays its own timestamps"),
        ("trace:x.jsonl", {"duration": "10s"}, "a trace replays its own timestamps"),
    ],
)
def test_bad_trace_options_are_one_clear_error(dataset, options, message):
    with pytest.raises(WorkloadError, match=message):
        WorkloadOptions(dataset=dataset, **options)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not a JSON object"),
        ('{"timestamp": 1, "input_length": -3, "output_length": 2}', "line 2: 'input_length' must be an integer >= 0"),
        ('{"timestamp": "x", "input_length": 3, "output_length": 2}', "line 2: 'timestamp' must be a finite number"),
        ('{"timestamp": 1, "input_length": 3, "output_length": 2, "hash_ids": [1, -2]}', "line 2: 'hash_ids' must be"),
    ],
)
def test_a_bad_row_names_its_line(tmp_path, tok, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 3, "output_length": 2}\n' + line + "\n")
    with pytest.raises(WorkloadError, match=message):
        build_workload(WorkloadOptions(dataset=f"trace:{path}"), tok)


def test_missing_file_and_empty_window(tmp_path, tok):
    with pytest.raises(WorkloadError, match="trace file not found"):
        build_workload(WorkloadOptions(dataset=f"trace:{tmp_path / 'none.jsonl'}"), tok)
    with pytest.raises(WorkloadError, match="holds no request: the trace spans 2 s"):
        build_workload(WorkloadOptions(dataset=mooncake(tmp_path), trace_window="10:20"), tok)


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_replayed_send_times_follow_the_trace_within_1ms(tmp_path, tok, speed):
    # 40 requests over 1.9 s of trace time, two at a time every 100 ms
    rows = [
        {"timestamp": 100 * (i // 2), "input_length": 16, "output_length": 2, "hash_ids": [i % 3]} for i in range(40)
    ]
    w = build_workload(WorkloadOptions(dataset=write_jsonl(tmp_path / "m.jsonl", rows), trace_speed=speed), tok)
    with FakeServerProcess("--ttft-ms", "5", "--itl-ms", "5", "--no-timings") as server:
        records, _, _ = run_client(server.base_url, w.requests, warmup=8)
    assert len(records) == 40 and all(r["error"] is None for r in records)
    by_id = {r.request_id: r.arrival_s for r in w.requests}
    offsets = [abs(r["start_s"] - by_id[r["request_id"]]) for r in records]
    assert statistics.median(offsets) < 0.001, sorted(offsets)[-5:]
    assert max(by_id.values()) == pytest.approx(1.9 / speed)
