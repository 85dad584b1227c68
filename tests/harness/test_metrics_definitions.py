"""One definition per concept in benchctl.metrics, and every reader (report, console, gate) using it.

Numbers are worked out by hand in the comments, in the style of test_metrics.py.
"""

from __future__ import annotations

import json

from benchctl import metrics
from benchctl.metrics import latency as metrics_latency
from benchctl.records import RequestRecord
from benchctl.report.load import load


def rec(request_id, expected, output, start, first, finish, *, error=None, turn=None, conversation=None,
        prompt=10, extra=None):
    return {"request_id": request_id, "prompt_tokens": prompt, "expected_output_tokens": expected,
            "output_tokens": output, "arrival_s": 0.0, "start_s": start, "first_token_s": first, "finish_s": finish,
            "token_times_s": None, "chunk_tokens": None, "error": error, "turn": turn,
            "conversation_id": conversation, "extra": extra or {}}


# --- "completed" -----------------------------------------------------------------------------------------------

def test_completed_is_one_definition_that_record_ok_and_every_summary_ask(monkeypatch, tmp_path):
    assert metrics.is_completed({"error": None, "finish_s": 1.0})
    assert not metrics.is_completed({"error": "boom", "finish_s": 1.0})
    assert not metrics.is_completed({"error": None, "finish_s": None})  # never finished
    for record in (RequestRecord("a", 1, 1, finish_s=1.0), RequestRecord("b", 1, 1, error="x", finish_s=1.0),
                   RequestRecord("c", 1, 1)):
        assert record.ok == metrics.is_completed(record.to_dict())

    # Change the definition (say, a zero-token answer is a failure) and every reader follows it.
    rows = [rec("a", 4, 4, 0.0, 0.5, 1.0, turn=0, conversation="c"), rec("b", 4, 0, 0.0, None, 1.0, turn=1,
                                                                             conversation="c")]
    assert metrics.summarize(rows)["completed"] == 2
    monkeypatch.setattr(metrics_latency, "is_completed",
                        lambda r: r.get("error") is None and r.get("finish_s") is not None and r["output_tokens"] > 0)
    s = metrics.summarize(rows)
    assert (s["completed"], s["failed"]) == (1, 1)
    assert s["conversations"]["completed_conversations"] == 0  # turn 1 failed: the conversation did not complete
    assert metrics.request_latencies(rows[1])["e2el_s"] is None
    assert not RequestRecord("z", 1, 0, finish_s=1.0).ok
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"schema_version": 1, "run_id": "run", "status": "completed"}))
    (run_dir / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["request_id"] for r in load(run_dir).done] == ["a"]
