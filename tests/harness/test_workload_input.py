"""Bad workload input is one `benchctl: error:` line and exit code 2, before a model or an engine is loaded:
workload options (WorkloadOptions checks them on construction) and dataset files (the reader)."""

from __future__ import annotations

import json
import math

import pytest

from benchctl.cli import main
from benchctl.workload import WorkloadError, WorkloadOptions

RANDOM = ["--dataset", "random", "--num-prompts", "2", "--random-input-len", "8", "--random-output-len", "4"]
ONE = {"id": "1", "conversations": [{"from": "human", "value": "hello there"}, {"from": "gpt", "value": "hi!"}]}

CLI_CASES = [
    (["run", *RANDOM, "--seed", "-1"], "--seed must be >= 0 and <= 4294967295, got -1"),
    (["run", *RANDOM, "--seed", "4294967296"], "--seed must be >= 0 and <= 4294967295, got 4294967296"),
    (["run", *RANDOM, "--random-prefix-len", "-5"], "--random-prefix-len must be >= 0, got -5"),
    # --backend hf refuses conversations offline: without the check, that would be the (wrong) error
    (
        ["run", "--backend", "hf", "--dataset", "tiny-sharegpt", "--workload", "conversations", "--think-time", "nan"],
        "--think-time must be >= 0 seconds and finite, got nan",
    ),
    (
        ["run", "--backend", "hf", "--dataset", "tiny-sharegpt", "--workload", "conversations", "--think-time", "inf"],
        "--think-time must be >= 0 seconds and finite, got inf",
    ),
    (
        ["run", "--dataset", "{tmp}/from_list.json", "--workload", "conversations"],
        "entry 1 turn 0: 'from' must be a string, got list",
    ),
    (["run", "--dataset", "{tmp}/cut_not_sharegpt.json"], "entry 0 has no 'conversations' list"),
    (["run", "--dataset", "{tmp}/garbage_mid_file.json"], "not valid JSON at byte"),
]


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --output-dir results/ must stay absent
    entry = {"id": "2", "conversations": [{"from": ["human"], "value": "hello"}, {"from": "gpt", "value": "hi"}]}
    (tmp_path / "from_list.json").write_text(json.dumps([ONE, entry]))
    (tmp_path / "cut_not_sharegpt.json").write_text('[{"prompt": "a", "answer": "b"}, {"prompt": "c", "ans')
    (tmp_path / "garbage_mid_file.json").write_text(f"[{json.dumps(ONE)}, ###, {json.dumps(ONE)}]")
    return tmp_path


@pytest.mark.parametrize("argv, message", CLI_CASES, ids=[f"{i}-{a[-1]}" for i, (a, _) in enumerate(CLI_CASES)])
def test_bad_workload_input_is_one_line_and_exit_2(capsys, files, argv, message):
    code = main([a.replace("{tmp}", str(files)) for a in argv])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("benchctl: error: ") and captured.err.count("\n") == 1
    assert message.replace("{tmp}", str(files)) in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (files / "results").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"seed": -1}, "--seed must be >= 0"),
        ({"seed": 2**32}, "<= 4294967295"),
        ({"seed": 1.5}, "--seed must be an integer, got 1.5"),
        ({"seed": True}, "--seed must be an integer, got True"),
        ({"num_prompts": 0}, "--num-prompts must be >= 1, got 0"),
        ({"num_prompts": "16"}, "--num-prompts must be an integer, got '16'"),
        ({"random_prefix_len": -5}, "--random-prefix-len must be >= 0, got -5"),
        ({"random_input_len": 0}, "--random-input-len must be >= 1"),
        ({"random_output_len": -1}, "--random-output-len must be >= 1"),
        ({"random_range_ratio": math.nan}, "--random-range-ratio must be in [0, 1), got nan"),
        ({"random_range_ratio": 1.0}, "--random-range-ratio must be in [0, 1)"),
        ({"think_time_s": math.nan}, "--think-time must be >= 0 seconds and finite, got nan"),
        ({"think_time_s": math.inf}, "--think-time must be >= 0 seconds and finite, got inf"),
        ({"think_time_s": -0.5}, "--think-time must be >= 0 seconds"),
        ({"request_rate": math.nan}, "--request-rate must be > 0 (or inf), got nan"),
        ({"request_rate": 0}, "--request-rate must be > 0 (or inf)"),
        ({"burstiness": math.inf}, "--burstiness must be > 0 and finite, got inf"),
        ({"burstiness": math.nan}, "--burstiness must be > 0"),
        ({"arrival": "uniform"}, "--arrival must be one of poisson, gamma, constant, got 'uniform'"),
        ({"max_concurrency": 0}, "--max-concurrency must be >= 1, got 0"),
        ({"sharegpt_output_len": 0}, "--sharegpt-output-len must be >= 1, got 0"),
        ({"kind": "conversations", "max_turns": 1}, "--max-turns must be >= 2, got 1"),
        ({"kind": "dialogue"}, "--workload must be one of single-turn, conversations, got 'dialogue'"),
        ({"history": "invented"}, "--history must be one of recorded, generated"),
        ({"oversample": "yes"}, "--oversample is true or false"),
        ({"dataset": ""}, "--dataset must be a name or a path"),
    ],
)
def test_every_workload_option_is_checked_on_construction(options, message):
    with pytest.raises(WorkloadError) as e:
        WorkloadOptions(**options)
    assert message in str(e.value)


def test_good_options_pass_and_the_limits_are_inclusive():
    WorkloadOptions(seed=0)
    WorkloadOptions(seed=2**32 - 1, random_prefix_len=0, think_time_s=0.0, request_rate=math.inf, max_concurrency=1)
    WorkloadOptions(kind="conversations", max_turns=2, think_time_s=2.5, burstiness=0.1, request_rate=3)
