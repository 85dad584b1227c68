"""Multi-turn conversations: sampling, dependent admission (worker and load client), per-turn metrics, the
prefix-cache hit rate from /metrics, and the workload end to end on the reference engine (offline and served)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict

import pytest

from benchctl import metrics
from benchctl.cli import main
from benchctl.records import read_records
from benchctl.run import RunConfig, run_benchmark
from benchctl.run.sink import finish_record
from benchctl.serving.scrape import parse_exposition, prefix_cache_hit_rate, server_spec_decode
from benchctl.serving.shards import ShardedClient, conversation_groups
from benchctl.worker.admission import Admission
from benchctl.workload import WorkloadError, WorkloadOptions, build_workload
from benchctl.workload.chat import ChatTemplate
from benchctl.workload.conversations import _conversation_requests, chat_turns, sample_conversations
from tests.harness.fakes_serving import FakeServerProcess, run_client


def turns(*pairs: tuple[str, str], system: str | None = None) -> list[dict]:
    messages = [{"from": "system", "value": system}] if system else []
    for user, answer in pairs:
        messages += [{"from": "human", "value": user}, {"from": "gpt", "value": answer}]
    return messages


@pytest.fixture(scope="module")
def conversations_file(tmp_path_factory, text_of):
    entries = [
        {
            "id": "three",
            "conversations": turns(
                (text_of(10, "apple"), text_of(20, "tree")),
                (text_of(12, "red"), text_of(8, "fig")),
                (text_of(6, "sun"), text_of(30, "book")),
            ),
        },
        {
            "id": "system",
            "conversations": turns(
                (text_of(5, "cat"), text_of(9, "dog")), (text_of(7, "bird"), text_of(11, "fish")), system="Be brief."
            ),
        },
        {"id": "one-turn", "conversations": turns((text_of(5, "cat"), text_of(9, "dog")))},
        # the third message breaks the alternation: two turns are kept
        {
            "id": "broken",
            "conversations": turns((text_of(5, "cat"), text_of(9, "dog")), (text_of(5, "milk"), text_of(6, "hen")))
            + [{"from": "human", "value": "again"}, {"from": "human", "value": "and again"}],
        },
        # turn 1's answer is too short (< 4 tokens): cut to one turn, so never a candidate
        {
            "id": "short-answer",
            "conversations": turns((text_of(5, "cat"), text_of(9, "dog")), (text_of(5, "milk"), text_of(3, "hen"))),
        },
        # turn 1 is too long (prompt + answer > 2048): cut to one turn
        {
            "id": "too-long",
            "conversations": turns(
                (text_of(5, "cat"), text_of(9, "dog")), (text_of(1000, "hello"), text_of(1040, "tree"))
            ),
        },
    ]
    path = tmp_path_factory.mktemp("conversations") / "conversations.json"
    path.write_text(json.dumps(entries))
    return path


def test_chat_turns_keep_the_leading_alternating_pairs_and_the_system_message():
    system, pairs = chat_turns(turns(("a", "b"), ("c", "d"), system="s"))
    assert system == [{"role": "system", "content": "s"}] and pairs == [("a", "b"), ("c", "d")]
    _, pairs = chat_turns([{"from": "gpt", "value": "x"}, *turns(("a", "b"))])  # starts with the assistant
    assert pairs == []
    _, pairs = chat_turns(turns(("a", "b")) + [{"from": "human", "value": "unanswered"}])
    assert pairs == [("a", "b")]
    _, pairs = chat_turns(turns(("a", "b")) + [{"from": "narrator", "value": "?"}, *turns(("c", "d"))])
    assert pairs == [("a", "b")]


def test_each_turn_is_the_rendered_history_and_extends_the_previous_prompt(conversations_file, tok, model_dir):
    requests, source = sample_conversations(conversations_file, tok, 3, seed=0)
    by_conv: dict[str, list] = {}
    for r in requests:
        by_conv.setdefault(r.conversation_id, []).append(r)
    assert source["conversations"] == 3 and sorted(len(v) for v in by_conv.values()) == [2, 2, 3]
    assert set(source["source_ids"].values()) == {"three", "system", "broken"}
    template = ChatTemplate(model_dir)
    for conv_turns in by_conv.values():
        assert [r.turn for r in conv_turns] == list(range(len(conv_turns)))
        assert conv_turns[0].after is None and conv_turns[0].think_time_s == 0.0
        for prev, r in zip(conv_turns, conv_turns[1:]):
            assert r.after == prev.request_id
            # the history grows by the recorded answer and the next user message; tokens extend the previous prompt
            assert r.messages[: len(prev.messages)] == prev.messages
            assert r.messages[len(prev.messages)]["role"] == "assistant"
            assert r.prompt_token_ids[: prev.prompt_len] == prev.prompt_token_ids
        for r in conv_turns:
            assert r.prompt == template.render(r.messages) and r.prompt_token_ids == tok.encode(r.prompt)
            assert r.messages[-1]["role"] == "user"
            assert r.output_len == len(tok.encode(_recorded_answer(conversations_file, source, r)))
    system_conv = next(v for v in by_conv.values() if source["source_ids"][v[0].conversation_id] == "system")
    assert system_conv[0].messages[0] == {"role": "system", "content": "Be brief."}


def test_a_conversation_is_cut_before_the_first_turn_that_fails_the_filters(tok, model_dir, text_of):
    template = ChatTemplate(model_dir)
    cut = {"answer_too_short": 0, "too_long": 0, "max_turns": 0}

    def requests(*pairs):
        return _conversation_requests("c", "src", [], list(pairs), template, tok, None, 0.0, None, cut)

    ok = (text_of(5, "cat"), text_of(9, "dog"))
    assert len(requests(ok, (text_of(5, "milk"), text_of(3, "hen")), ok)) == 1 and cut["answer_too_short"] == 1
    assert len(requests(ok, (text_of(1000, "hello"), text_of(1040, "tree")))) == 1 and cut["too_long"] == 1
    assert len(requests(ok, ok, ok)) == 3 and cut == {"answer_too_short": 1, "too_long": 1, "max_turns": 0}


def _recorded_answer(path, source, request) -> str:
    entry = next(e for e in json.loads(path.read_text()) if e["id"] == source["source_ids"][request.conversation_id])
    return chat_turns(entry["conversations"])[1][request.turn][1]


def test_max_turns_think_time_seed_and_errors(conversations_file, tok):
    requests, source = sample_conversations(conversations_file, tok, 3, seed=0, max_turns=2, think_time_s=1.5)
    assert max(r.turn for r in requests) == 1 and source["turns_cut"]["max_turns"] == 1
    assert all(r.think_time_s == (1.5 if r.turn else 0.0) for r in requests)
    again, _ = sample_conversations(conversations_file, tok, 3, seed=0, max_turns=2, think_time_s=1.5)
    assert [r.prompt_token_ids for r in again] == [r.prompt_token_ids for r in requests]
    other = [sample_conversations(conversations_file, tok, 3, seed=s)[1]["source_ids"] for s in range(6)]
    assert len({tuple(o.values()) for o in other}) > 1  # the seed decides the order
    fixed, _ = sample_conversations(conversations_file, tok, 1, seed=0, fixed_output_len=7)
    assert all(r.output_len == 7 for r in fixed)
    with pytest.raises(WorkloadError, match="only 3 conversations have 2\\+ turns"):
        sample_conversations(conversations_file, tok, 4, seed=0)
    for kwargs, message in (
        ({"max_turns": 1}, "--max-turns must be >= 2"),
        ({"think_time_s": -1}, "--think-time"),
        ({"num_conversations": 0}, "must be >= 1"),
    ):
        args = {"num_conversations": 2, **kwargs}
        with pytest.raises(WorkloadError, match=message):
            sample_conversations(conversations_file, tok, args.pop("num_conversations"), seed=0, **args)


def test_generated_history_splices_the_engines_answer_in_tokens(conversations_file, tok):
    requests, source = sample_conversations(conversations_file, tok, 3, seed=0, history="generated")
    recorded, _ = sample_conversations(conversations_file, tok, 3, seed=0)
    assert source["history"] == "generated"
    assert [r.prompt_token_ids for r in requests] == [r.prompt_token_ids for r in recorded]  # lengths as recorded
    by_id = {r.request_id: r for r in requests}
    for r in requests:
        if r.after is None:
            assert r.suffix_ids is None and r.suffix_text is None
            continue
        prev = by_id[r.after]
        answer = _recorded_answer(conversations_file, source, prev)
        # ChatML: previous prompt + answer + the tail renders (and tokenizes) as the whole next prompt
        assert prev.prompt + answer + r.suffix_text == r.prompt
        assert prev.prompt_token_ids + tok.encode(answer) + r.suffix_ids == r.prompt_token_ids
        assert r.suffix_text.startswith("<|im_end|>") and r.suffix_text.endswith("<|im_start|>assistant\n")
    wire = [r.to_wire() for r in requests]
    adm = Admission(wire)
    first = adm.due(0.0)
    t0 = next(r for r in first if by_id[r["request_id"]].conversation_id == "conv-0000")
    adm.finished(t0["request_id"], 1.0, [7, 8, 9])
    follower = next(r for r in wire if r["after"] == t0["request_id"])
    assert follower["prompt_token_ids"] == t0["prompt_token_ids"] + [7, 8, 9] + follower["suffix_ids"]
    with pytest.raises(WorkloadError, match="--history must be one of"):
        sample_conversations(conversations_file, tok, 1, seed=0, history="invented")


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_load_client_sends_the_generated_answer_back_with_history_generated(endpoint):
    specs = _client_specs(2, 3, think_s=0.0, output_len=3)
    for s in specs:
        if s.after is not None:
            s.suffix_text = f"<end/>next {s.turn}<start/>"
    with FakeServerProcess("--ttft-ms", "5", "--itl-ms", "2") as server:
        records, _, _ = run_client(server.base_url, specs, endpoint=endpoint)
        truth = server.timings()
    assert len(records) == 6 and all(r["error"] is None for r in records)
    answer = " hello" * 3  # what the fake server generates
    for c in range(2):
        seen = [truth[f"c{c}-t{t}"] for t in range(3)]
        if endpoint == "chat":
            assert seen[2]["messages"] == ["user", "assistant", "user", "assistant", "user"]
            assert seen[2]["contents"] == ["question 0", answer, "question 1", answer, "question 2"]
        else:
            assert seen[1]["prompt"] == f"prompt {c}/0" + answer + "<end/>next 1<start/>"
            assert seen[2]["prompt"] == seen[1]["prompt"] + answer + "<end/>next 2<start/>"


def test_the_schedule_times_conversation_starts_only(conversations_file, tok):
    options = WorkloadOptions(
        dataset=str(conversations_file), num_prompts=3, kind="conversations", request_rate=2.0, arrival="constant"
    )
    workload = build_workload(options, tok)
    heads = [r for r in workload.requests if r.turn == 0]
    assert [r.arrival_s for r in heads] == [0.0, 0.5, 1.0]
    assert all(r.arrival_s == 0.0 for r in workload.requests if r.turn)
    spec = workload.spec()
    assert spec["num_requests"] == 7 and spec["source"]["history"] == "recorded"
    assert spec["input_tokens_by_turn"]["first"]["count"] == 3 and spec["input_tokens_by_turn"]["later"]["count"] == 4
    with pytest.raises(WorkloadError, match="the random dataset has none"):
        build_workload(WorkloadOptions(dataset="random", kind="conversations"), tok)
    with pytest.raises(WorkloadError, match="--workload must be one of"):
        build_workload(WorkloadOptions(kind="dialogue"), tok)


def _conv_requests(n_conv: int, n_turns: int, think_s: float = 0.0, start_gap_s: float = 0.0) -> list[dict]:
    out = []
    for c in range(n_conv):
        for t in range(n_turns):
            out.append(
                {
                    "request_id": f"c{c}-t{t}",
                    "arrival_s": c * start_gap_s if t == 0 else 0.0,
                    "after": f"c{c}-t{t - 1}" if t else None,
                    "think_time_s": think_s if t else 0.0,
                }
            )
    return out


def test_admission_releases_a_turn_think_time_after_the_previous_one_finished():
    adm = Admission(_conv_requests(2, 3, think_s=0.5), max_concurrency=None)
    assert adm.pending() == 6
    assert [r["request_id"] for r in adm.due(0.0)] == ["c0-t0", "c1-t0"]  # later turns wait for their answers
    assert adm.due(100.0) == [] and adm.next_arrival_s() is None
    adm.finished("c1-t0", 2.0)
    assert adm.next_arrival_s() == 2.5 and adm.due(2.49) == []
    (turn,) = adm.due(2.5)
    assert turn["request_id"] == "c1-t1" and turn["arrival_s"] == 2.5  # the record says when it became due
    adm.finished("c0-t0", 3.0)
    adm.finished("c1-t1", 3.0)
    assert [r["request_id"] for r in adm.due(3.5)] == ["c0-t1", "c1-t2"]  # ties in submission order
    adm.finished("c0-t1", 4.0)
    adm.finished("c1-t2", 4.0)
    assert [r["request_id"] for r in adm.due(4.5)] == ["c0-t2"] and adm.pending() == 0


def test_admission_caps_conversation_turns_and_detects_lost_predecessors():
    adm = Admission(_conv_requests(3, 2), max_concurrency=2)
    assert len(adm.due(0.0)) == 2
    adm.finished("c0-t0", 1.0)
    # c0-t1 is due at 1.0, c2-t0 has waited since 0.0 for a slot: the earlier arrival goes first
    assert [r["request_id"] for r in adm.due(1.0)] == ["c2-t0"] and adm.in_flight == 2
    with pytest.raises(ValueError, match="unknown request ids: nope"):
        Admission([{"request_id": "a", "arrival_s": 0.0, "after": "nope"}])
    stuck = Admission([{"request_id": "a", "arrival_s": 0.0}, {"request_id": "b", "arrival_s": 0.0, "after": "a"}])
    stuck.due(0.0)
    stuck.finished(None)  # a finish without the id: the follower can never be released
    with pytest.raises(RuntimeError, match="1 requests wait for requests that will never finish"):
        stuck.due(1.0)


def _record(
    cid: str,
    turn: int,
    arrival: float,
    ttft: float,
    finish: float,
    prompt: int,
    cached: int | None,
    error: str | None = None,
) -> dict:
    extra = {"num_cached_tokens": cached} if cached is not None else {}
    return finish_record(
        {
            "request_id": f"{cid}-{turn}",
            "conversation_id": cid,
            "turn": turn,
            "prompt_tokens": prompt,
            "expected_output_tokens": 2,
            "output_tokens": 2,
            "arrival_s": arrival,
            "start_s": arrival,
            "first_token_s": arrival + ttft,
            "finish_s": finish,
            "error": error,
            "extra": extra,
        }
    )


def test_conversation_summary_by_hand():
    rows = [
        _record("a", 0, 0.0, 0.4, 1.0, 100, 0),
        _record("a", 1, 1.0, 0.1, 2.0, 300, 200),
        _record("a", 2, 2.0, 0.2, 3.5, 500, 400),
        _record("b", 0, 0.5, 0.6, 1.5, 200, 0),
        _record("b", 1, 1.5, 0.3, 2.5, 400, None, error="HTTP 500"),
    ]
    conv = metrics.summarize(rows)["conversations"]
    assert conv["num_conversations"] == 2 and conv["completed_conversations"] == 1
    assert conv["ttft_first_turn_s"]["count"] == 2 and math.isclose(conv["ttft_first_turn_s"]["mean"], 0.5)
    assert conv["ttft_later_turns_s"]["count"] == 2 and math.isclose(conv["ttft_later_turns_s"]["mean"], 0.15)
    assert math.isclose(conv["ttft_later_vs_first_median"], 0.15 / 0.5)
    assert math.isclose(conv["cached_prompt_fraction"], 600 / 1100)  # failed requests left out
    assert math.isclose(conv["cached_prompt_fraction_later_turns"], 600 / 800)
    assert conv["conversation_duration_s"]["count"] == 1 and math.isclose(conv["conversation_duration_s"]["max"], 3.5)
    assert set(conv["ttft_by_turn_s"]) == {"0", "1", "2"}
    flat = metrics.flat_metrics(metrics.summarize(rows))
    assert math.isclose(flat["ttft_later_turns_median_ms"], 150.0) and "cached_prompt_fraction" in flat
    assert "conversations" not in metrics.summarize([{**r, "turn": None} for r in rows])


def test_prefix_cache_hit_rate_is_the_counters_growth_over_the_run():
    series = {
        'vllm:prefix_cache_queries_total{engine="0"}': {"first": 100.0, "max": 1100.0, "last": 1100.0},
        'vllm:prefix_cache_hits_total{engine="0"}': {"first": 50.0, "max": 650.0, "last": 650.0},
        'vllm:num_requests_running{engine="0"}': {"first": 0.0, "max": 4.0, "last": 0.0},
    }
    rate = prefix_cache_hit_rate(series)
    assert rate == {"source": "vllm:prefix_cache_queries", "hit_tokens": 600.0, "query_tokens": 1000.0, "hit_rate": 0.6}
    assert prefix_cache_hit_rate({"vllm:num_requests_running": {"first": 0, "max": 1, "last": 0}}) is None


def test_server_spec_decode_from_the_servers_counters():
    text = "\n".join(
        [
            "# TYPE vllm:spec_decode_num_drafts_total counter",
            'vllm:spec_decode_num_drafts_total{engine="0"} 40',
            'vllm:spec_decode_num_draft_tokens_total{engine="0"} 120',
            'vllm:spec_decode_num_accepted_tokens_total{engine="0"} 90',
            'vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",position="0"} 35',
        ]
    )
    kept = parse_exposition(text)
    assert set(kept) == {
        f'vllm:spec_decode_num_{n}_total{{engine="0"}}' for n in ("drafts", "draft_tokens", "accepted_tokens")
    }
    series = {key: {"first": value / 4, "max": value, "last": value} for key, value in kept.items()}
    got = server_spec_decode(series)  # growth: 30 drafts, 90 draft tokens, 67.5 accepted
    assert got["source"] == "vllm:spec_decode_num_draft_tokens"
    assert got["acceptance_rate"] == pytest.approx(67.5 / 90) and got["mean_acceptance_length"] == pytest.approx(
        1 + 67.5 / 30
    )
    ref = {
        "reference_engine:spec_decode_num_drafts_total": {"first": 0, "max": 0, "last": 0},
        "reference_engine:spec_decode_num_draft_tokens_total": {"first": 0, "max": 0, "last": 0},
        "reference_engine:spec_decode_num_accepted_tokens_total": {"first": 0, "max": 0, "last": 0},
    }
    assert server_spec_decode(ref) is None  # speculative decoding off: nothing drafted, no rate


def _client_specs(n_conv: int, n_turns: int, think_s: float, output_len: int = 4):
    from benchctl.workload import RequestSpec

    specs = []
    for c in range(n_conv):
        messages: list[dict] = []
        for t in range(n_turns):
            messages = [*messages, {"role": "user", "content": f"question {t}"}]
            specs.append(
                RequestSpec(
                    f"c{c}-t{t}",
                    [1] * (t + 1),
                    f"prompt {c}/{t}",
                    output_len,
                    conversation_id=f"c{c}",
                    turn=t,
                    after=f"c{c}-t{t - 1}" if t else None,
                    think_time_s=think_s if t else 0.0,
                    messages=list(messages),
                )
            )
            messages = [*messages, {"role": "assistant", "content": f"answer {t}"}]
    return specs


def test_load_client_sends_each_turn_after_the_answer_and_the_think_time():
    think = 0.15
    with FakeServerProcess("--ttft-ms", "20", "--itl-ms", "10") as server:
        records, t0, client = run_client(
            server.base_url, _client_specs(3, 3, think), endpoint="chat", max_concurrency=2
        )
        truth = server.timings()
    by_id = {r["request_id"]: r for r in records}
    assert len(records) == 9 and all(r["error"] is None for r in records)
    for c in range(3):
        for t in range(1, 3):
            prev, r = by_id[f"c{c}-t{t - 1}"], by_id[f"c{c}-t{t}"]
            assert (r["conversation_id"], r["turn"]) == (f"c{c}", t)
            # due think seconds after the answer's last token; sent then (or later, when both slots were busy)
            assert r["arrival_s"] >= prev["finish_s"] + think - 1e-3
            assert r["start_s"] >= r["arrival_s"] - 1e-3
            assert truth[r["request_id"]]["recv"] - t0 >= prev["finish_s"] + think - 1e-3
            # the chat endpoint gets the whole history: user, assistant, ..., user
            assert truth[r["request_id"]]["messages"] == ["user", "assistant"] * t + ["user"]
            assert truth[r["request_id"]]["contents"][-2] == f"answer {t - 1}"  # recorded history by default
    events = sorted([(r["start_s"], 1) for r in records] + [(r["finish_s"], -1) for r in records])
    assert max(sum(step for _, step in events[: i + 1]) for i in range(len(events))) <= 2  # the cap holds


def test_a_stopped_client_records_the_unsent_turns_as_failed():
    with FakeServerProcess("--ttft-ms", "50", "--itl-ms", "50") as server:
        specs = _client_specs(2, 3, think_s=0.0, output_len=4)
        from benchctl.serving.client import ClientOptions, LoadClient, run_event_loop

        client = LoadClient(ClientOptions(base_url=server.base_url, model_name="fake-model", request_timeout_s=10))
        out: list[dict] = []

        async def go():
            import asyncio

            await client.open(4)
            asyncio.get_running_loop().call_later(0.3, client.stop, "stopped by the test")
            await client.run(specs, time.monotonic(), out.append)
            await client.close()

        run_event_loop(go())
    assert sorted(r["request_id"] for r in out) == sorted(s.request_id for s in specs)  # every turn accounted for
    failed = [r for r in out if r["error"]]
    assert failed and all(r["error"] == "stopped by the test" for r in failed)
    assert sorted(r["request_id"] for r in failed) == ["c0-t2", "c1-t2"]  # turn 1 was in flight at the stop


def test_shards_keep_a_conversation_in_one_process():
    specs = _client_specs(5, 3, think_s=0.0)
    groups = conversation_groups(specs)
    assert [[r.request_id for r in g] for g in groups][1] == ["c1-t0", "c1-t1", "c1-t2"]
    with FakeServerProcess("--ttft-ms", "10", "--itl-ms", "5") as server:
        from benchctl.serving.client import ClientOptions

        sharded = ShardedClient(ClientOptions(base_url=server.base_url, model_name="fake-model"), specs, 2)
        try:
            assert [{r.conversation_id for r in share} for share in sharded.shares] == [
                {"c0", "c2", "c4"},
                {"c1", "c3"},
            ]
            got: list[dict] = []
            sharded.run(time.monotonic() + 0.05, got.append)
        finally:
            sharded.close()
    by_id = {r["request_id"]: r for r in got}
    assert len(got) == 15 and all(r["error"] is None for r in got)
    assert all(
        by_id[f"c{c}-t{t}"]["start_s"] >= by_id[f"c{c}-t{t - 1}"]["finish_s"] - 1e-3 for c in range(5) for t in (1, 2)
    )


def test_offline_only_backends_refuse_conversations(capsys, tmp_path):
    code = main(["run", "--backend", "hf", "--workload", "conversations", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot replay conversations" in err and "--mode serving" in err
    assert not any(tmp_path.iterdir())
    code = main(["run", "--dataset", "random", "--workload", "conversations", "--output-dir", str(tmp_path)])
    assert code == 2 and "the random dataset has none" in capsys.readouterr().err


# the bundled sample, not the default (the real ShareGPT): short conversations keep these engine runs short
_WORKLOAD = WorkloadOptions(
    dataset="sharegpt-sample", num_prompts=3, kind="conversations", max_turns=3, sharegpt_output_len=8
)


def _conversation_run(tmp_path, mode: str, prefix_caching: bool, history: str = "recorded", **kw) -> dict:
    workload = WorkloadOptions(**{**asdict(_WORKLOAD), "history": history})
    cfg = RunConfig(
        backend="reference",
        mode=mode,
        workload=workload,
        output_dir=tmp_path,
        engine_args={"enable_prefix_caching": str(prefix_caching).lower(), "max_num_seqs": "8"},
        **kw,
    )
    run_dir = run_benchmark(cfg)
    return {"run": json.loads((run_dir / "run.json").read_text()), "rows": read_records(run_dir / "requests.jsonl")}


@pytest.mark.slow
def test_reference_engine_offline_replays_conversations_and_reuses_their_prefixes(tmp_path, tok):
    on = _conversation_run(tmp_path, "offline", True)
    off = _conversation_run(tmp_path, "offline", False)
    for result in (on, off):
        rows = result["rows"]
        assert result["run"]["status"] == "completed" and all(r["error"] is None for r in rows)
        assert {r["conversation_id"] for r in rows} == {"conv-0000", "conv-0001", "conv-0002"}
        by_id = {r["request_id"]: r for r in rows}
        for r in rows:
            if r["turn"]:
                prev = by_id[f"{r['conversation_id']}-t{r['turn'] - 1:02d}"]
                assert r["arrival_s"] >= prev["finish_s"] and r["start_s"] >= r["arrival_s"]
    conv_on, conv_off = on["run"]["summary"]["conversations"], off["run"]["summary"]["conversations"]
    assert conv_off["cached_prompt_fraction"] == 0.0
    # every later turn starts with the previous turn's prompt: its full blocks come from the cache
    assert conv_on["cached_prompt_fraction_later_turns"] > 0.3
    assert on["run"]["engine_stats"]["prefix_cache_token_hit_rate"] > 0
    assert [r["output_tokens"] for r in on["rows"]] == [8] * len(on["rows"])
    # sending back the engine's own answers: the previous answer's blocks are in the cache too
    generated = _conversation_run(tmp_path, "offline", True, history="generated")
    conv_gen = generated["run"]["summary"]["conversations"]
    # turn k's prompt = turn k-1's prompt + its 8 generated tokens + the rendered tail (spliced in tokens)
    specs = {
        r.request_id: r
        for r in build_workload(WorkloadOptions(**{**asdict(_WORKLOAD), "history": "generated"}), tok).requests
    }
    prompt = {r["request_id"]: r["prompt_tokens"] for r in generated["rows"]}
    assert all(
        prompt[rid] == (prompt[s.after] + 8 + len(s.suffix_ids) if s.after else s.prompt_len)
        for rid, s in specs.items()
    )
    assert conv_gen["cached_prompt_fraction_later_turns"] > conv_on["cached_prompt_fraction_later_turns"]


@pytest.mark.slow
def test_reference_server_replays_conversations_over_the_chat_endpoint(tmp_path):
    result = _conversation_run(tmp_path, "serving", True, endpoint="chat")
    run, rows = result["run"], result["rows"]
    assert run["status"] == "completed" and all(r["error"] is None for r in rows)
    # the server renders the same history with the same template: the same prompt tokens as the workload's
    assert all(r["extra"]["server_prompt_tokens"] == r["prompt_tokens"] for r in rows)
    later = [r for r in rows if r["turn"]]
    assert later and all(r["extra"]["num_cached_tokens"] > 0 for r in later)  # usage.prompt_tokens_details
    cache = run["serving_stats"]["prefix_cache"]
    assert cache["source"] == "reference_engine:prefix_cache_queries" and 0 < cache["hit_rate"] < 1
