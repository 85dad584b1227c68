"""The regression gate: bootstrap verdicts, thresholds, workload matching, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchctl import regress
from benchctl.cli import main


def _run(folder, run_id, output_tok_s, ttft_p99_s, seed=0, status="completed", dataset="random"):
    path = folder / run_id
    path.mkdir(parents=True)
    run = {
        "run_id": run_id,
        "status": status,
        "config": {"model": {"name": "smollm2-135m"}, "mode": "offline", "backend": "reference"},
        "workload": {
            "dataset": dataset,
            "num_requests": 8,
            "seed": seed,
            "input_tokens": {"mean": 10},
            "output_tokens": {"mean": 20},
            "schedule": {"kind": "all-at-once", "last_arrival_s": 0.0},
        },
        "summary": {
            "output_tok_s": output_tok_s,
            "request_throughput": 1.0,
            "ttft_s": {"count": 8, "mean": ttft_p99_s / 2, "p99": ttft_p99_s},
        },
    }
    (path / "run.json").write_text(json.dumps(run))
    return path


def _side(root, name, tok_s, ttft_s, **kw):
    folder = root / name
    for i, (t, l) in enumerate(zip(tok_s, ttft_s)):
        _run(folder, f"{name}-{i}", t, l, **kw)
    return folder


def test_parse_gate_directions():
    assert regress.parse_gate("output_tok_s:-5%") == regress.MetricGate("output_tok_s", -0.05)
    assert regress.parse_gate("ttft_p99:+10%") == regress.MetricGate("ttft_p99_ms", 0.10)
    with pytest.raises(regress.GateInputError, match="drop"):
        regress.parse_gate("output_tok_s:+5%")
    with pytest.raises(regress.GateInputError, match="growth"):
        regress.parse_gate("ttft_p99:-5%")
    with pytest.raises(regress.GateInputError):
        regress.parse_gate("ttft_p99")


def test_bootstrap_ci_covers_true_ratio_and_shrinks_with_reps():
    rng = np.random.default_rng(1)
    base = 100 + rng.normal(0, 2, 5)
    cand = 90 + rng.normal(0, 2, 5)
    ratio, low, high = regress.bootstrap_ratio_ci(base, cand)
    assert ratio == pytest.approx(cand.mean() / base.mean())
    assert low < ratio < high and high < 0.95  # 10% slower, clearly beyond a 5% threshold
    _, low2, high2 = regress.bootstrap_ratio_ci(np.repeat(base, 4), np.repeat(cand, 4))
    assert high2 - low2 < high - low


def test_mann_whitney_matches_hand_computation():
    # x entirely below y: U1 = 0; n1 = n2 = 4; mean 8, var = 4*4*9/12 = 12; z = (8 - 0.5)/sqrt(12)
    import math

    p = regress.mann_whitney_p(np.array([1.0, 2, 3, 4]), np.array([5.0, 6, 7, 8]))
    assert p == pytest.approx(math.erfc((7.5 / math.sqrt(12)) / math.sqrt(2)))
    assert regress.mann_whitney_p(np.array([1.0, 2]), np.array([1.0, 2])) == pytest.approx(1.0, abs=0.35)


def test_real_regression_fails_and_noise_passes(tmp_path):
    base = _side(tmp_path, "base", [100, 101, 99, 100], [0.50, 0.51, 0.49, 0.50])
    slow = _side(tmp_path, "slow", [85, 86, 84, 85], [0.50, 0.50, 0.51, 0.49])
    noisy = _side(tmp_path, "noisy", [97, 104, 96, 102], [0.52, 0.47, 0.50, 0.53])
    gates = [regress.parse_gate("output_tok_s:-5%"), regress.parse_gate("ttft_p99:+10%")]
    result = regress.compare_sides(str(base), str(slow), gates)
    by_metric = {v["metric"]: v for v in result["verdicts"]}
    assert result["regression"] and by_metric["output_tok_s"]["regression"]
    assert not by_metric["ttft_p99_ms"]["regression"]
    assert by_metric["output_tok_s"]["ratio"] == pytest.approx(85 / 100)
    assert not regress.compare_sides(str(base), str(noisy), gates)["regression"]


def test_latency_regression_detected(tmp_path):
    base = _side(tmp_path, "base", [100] * 3, [0.50, 0.52, 0.48])
    worse = _side(tmp_path, "worse", [100] * 3, [0.70, 0.72, 0.69])
    result = regress.compare_sides(str(base), str(worse), [regress.parse_gate("ttft_p99:+10%")])
    assert result["regression"] and result["verdicts"][0]["ci_low"] > 1.10


def test_mismatched_workloads_refused(tmp_path):
    base = _side(tmp_path, "base", [100] * 3, [0.5] * 3)
    other = _side(tmp_path, "other", [100] * 3, [0.5] * 3, seed=7)
    with pytest.raises(regress.GateInputError, match="different workloads"):
        regress.compare_sides(str(base), str(other), [regress.parse_gate("output_tok_s:-5%")])


def test_cli_exit_codes_and_outputs(tmp_path, monkeypatch, capsys):
    base = _side(tmp_path, "base", [100, 101, 99], [0.5] * 3)
    slow = _side(tmp_path, "slow", [80, 81, 79], [0.5] * 3)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    args = ["regress", "--baseline", str(base), "--candidate"]
    assert main(args + [str(base)]) == 0
    assert main(args + [str(slow), "--json-out", str(tmp_path / "v.json")]) == 1
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["regression"] is True
    assert "REGRESSION" in summary.read_text() and "pass" in summary.read_text()
    capsys.readouterr()
    assert main(args + [str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("benchctl: error:") and "Traceback" not in err
    _run(tmp_path / "failed", "f-0", 100, 0.5, status="failed")
    assert main(args + [str(tmp_path / "failed")]) == 2


@pytest.mark.parametrize(
    "content",
    [
        b"[]",
        b'{"run_id": "x", "status": "completed", "summary": null}',
        b'{"run_id": "x", "status": "completed", "summary": {}, "note": "\xff\xfe"}',
    ],
)
def test_a_run_json_that_is_not_a_run_is_bad_input_not_a_regression(tmp_path, capsys, content):
    base = _side(tmp_path, "base", [100, 101, 99], [0.5] * 3)
    (tmp_path / "odd" / "r").mkdir(parents=True)
    (tmp_path / "odd" / "r" / "run.json").write_bytes(content)
    for args in (
        ["--baseline", str(base), "--candidate", str(tmp_path / "odd")],
        ["--baseline", str(tmp_path / "odd"), "--candidate", str(base)],
    ):
        assert main(["regress", *args]) == 2  # 1 would read as "regression" to the gate's callers
        err = capsys.readouterr().err
        assert err.startswith("benchctl: error:") and err.count("\n") == 1 and "run.json" in err


def _trial_verdicts(slowdown: float, trials: int = 20, reps: int = 5, noise: float = 0.03) -> list[bool]:
    rng = np.random.default_rng(42)
    gate = regress.parse_gate("output_tok_s:-5%")
    flagged = []
    for _ in range(trials):
        base = 100 * (1 + rng.normal(0, noise, reps))
        cand = 100 * (1 - slowdown) * (1 + rng.normal(0, noise, reps))
        flagged.append(regress.judge(gate, list(base), list(cand), 0.95).regression)
    return flagged


def test_no_false_alarm_when_identical_in_distribution():
    assert sum(_trial_verdicts(0.0)) == 0


def test_injected_15pct_slowdown_is_caught():
    assert sum(_trial_verdicts(0.15)) == 20
