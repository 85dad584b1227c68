"""The folder-vs-folder regression gate: Welch intervals, three-way verdicts, workload and machine matching."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchctl import regress
from benchctl.cli import main

XEON = {"cpu": "Intel(R) Xeon(R) Processor", "logical_cores": 2, "gpus": []}
EPYC = {"cpu": "AMD EPYC 9B14", "logical_cores": 2, "gpus": []}


def _run(
    folder,
    run_id,
    output_tok_s,
    ttft_p99_s,
    seed=0,
    status="completed",
    dataset="random",
    hardware=EPYC,
    failed=0,
    short=0,
):
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
        "environment": {"hardware": hardware},
        "summary": {
            "num_requests": 8,
            "failed": failed,
            "output_tokens_short": short,
            "output_tok_s": output_tok_s,
            "request_throughput": 1.0,
            "ttft_s": {"count": 8, "mean": ttft_p99_s / 2, "p99": ttft_p99_s},
        },
    }
    (path / "run.json").write_text(json.dumps(run))
    return path


def _side(root, name, tok_s, ttft_s, **kw):
    folder = root / name
    for i, (tok, ttft) in enumerate(zip(tok_s, ttft_s)):
        _run(folder, f"{name}-{i}", tok, ttft, **kw)
    return folder


TOK = [regress.parse_gate("output_tok_s:-5%")]


def test_parse_gate_directions():
    assert regress.parse_gate("output_tok_s:-5%") == regress.MetricGate("output_tok_s", -0.05)
    assert regress.parse_gate("ttft_p99:+10%") == regress.MetricGate("ttft_p99_ms", 0.10)
    with pytest.raises(regress.GateInputError, match="drop"):
        regress.parse_gate("output_tok_s:+5%")
    with pytest.raises(regress.GateInputError, match="growth"):
        regress.parse_gate("ttft_p99:-5%")
    with pytest.raises(regress.GateInputError):
        regress.parse_gate("ttft_p99")
    with pytest.raises(regress.GateInputError, match="finite"):
        regress.parse_gate("ttft_p99:+nan%")


def test_welch_interval_matches_the_formula_and_shrinks_with_reps():
    rng = np.random.default_rng(1)
    base = 100 * np.exp(rng.normal(0, 0.02, 5))
    cand = 90 * np.exp(rng.normal(0, 0.02, 5))
    ratio, low, high = regress.welch_log_interval(base, cand)
    lb, lc = np.log(base), np.log(cand)
    vb, vc = lb.var(ddof=1) / 5, lc.var(ddof=1) / 5
    df = (vb + vc) ** 2 / (vb**2 / 4 + vc**2 / 4)  # Welch-Satterthwaite
    from scipy import stats

    half = stats.t.ppf(0.975, df) * math.sqrt(vb + vc)
    assert ratio == pytest.approx(math.exp(lc.mean() - lb.mean()))
    assert (low, high) == pytest.approx((ratio * math.exp(-half), ratio * math.exp(half)))
    assert high < 0.95  # 10% slower, clearly beyond a 5% threshold
    _, low2, high2 = regress.welch_log_interval(np.repeat(base, 4), np.repeat(cand, 4))
    assert high2 - low2 < high - low


def test_mann_whitney_is_scipys_exact_test():
    # x wholly below y, 4 and 4: the exact two-sided p is 2 / C(8, 4)
    assert regress.mann_whitney_p(np.array([1.0, 2, 3, 4]), np.array([5.0, 6, 7, 8])) == pytest.approx(2 / 70)
    assert regress.mann_whitney_p(np.array([1.0, 2]), np.array([2.0, 1])) == 1.0


def test_regression_pass_and_inconclusive(tmp_path):
    base = _side(tmp_path, "base", [100, 101, 99, 100], [0.50, 0.51, 0.49, 0.50])
    slow = _side(tmp_path, "slow", [85, 86, 84, 85], [0.50, 0.50, 0.51, 0.49])
    same = _side(tmp_path, "same", [100, 100.5, 99.5, 100], [0.50, 0.50, 0.51, 0.49])
    noisy = _side(tmp_path, "noisy", [97, 104, 90, 102], [0.52, 0.47, 0.50, 0.53])
    gates = [regress.parse_gate("output_tok_s:-5%"), regress.parse_gate("ttft_p99:+10%")]
    result = regress.compare_sides(str(base), str(slow), gates)
    by_metric = {v["metric"]: v for v in result["verdicts"]}
    assert result["verdict"] == "regression" and by_metric["output_tok_s"]["verdict"] == "regression"
    assert by_metric["ttft_p99_ms"]["verdict"] == "pass"
    assert by_metric["output_tok_s"]["ratio"] == pytest.approx(0.85, abs=0.001)
    quiet = regress.compare_sides(str(base), str(same), gates)
    assert quiet["verdict"] == "pass" and regress.exit_code(quiet) == 0
    assert all(v["worst_regression_pct"] < 5 for v in quiet["verdicts"])
    assert "pass: no regression larger than output_tok_s" in regress.verdict_line(quiet)
    # a noisy candidate neither shows a regression nor rules one out: inconclusive (exit 3), never 1
    loud = regress.compare_sides(str(base), str(noisy), gates)
    assert loud["verdict"] == "inconclusive" and regress.exit_code(loud) == 3


def test_latency_regression_detected(tmp_path):
    base = _side(tmp_path, "base", [100] * 3, [0.50, 0.52, 0.48])
    worse = _side(tmp_path, "worse", [100] * 3, [0.70, 0.72, 0.69])
    result = regress.compare_sides(str(base), str(worse), [regress.parse_gate("ttft_p99:+10%")])
    assert result["regression"] and result["verdicts"][0]["ci_low"] > 1.10


def test_too_few_repetitions_are_inconclusive_never_a_regression(tmp_path):
    """One run a side, 20% apart: the difference may be the machine's noise; the gate cannot tell."""
    base = _side(tmp_path, "base", [100], [0.5])
    slow = _side(tmp_path, "slow", [80], [0.5])
    result = regress.compare_sides(str(base), str(slow), TOK)
    assert result["verdict"] == "inconclusive" and not result["regression"]
    assert any("fewer than 3 repetitions" in w for w in result["warnings"])
    assert main(["regress", "--baseline", str(base), "--candidate", str(slow)]) == 3


def test_failed_or_short_requests_fail_the_candidate(tmp_path):
    base = _side(tmp_path, "base", [100, 101, 99], [0.5] * 3)
    flaky = _side(tmp_path, "flaky", [100, 101, 99], [0.5] * 3, short=1)
    result = regress.compare_sides(str(base), str(flaky), TOK)
    assert result["verdict"] == "regression" and result["candidate_failures"] == 3
    assert "failed or short requests" in regress.verdict_line(result)


def test_mismatched_workloads_refused(tmp_path):
    base = _side(tmp_path, "base", [100] * 3, [0.5] * 3)
    other = _side(tmp_path, "other", [100] * 3, [0.5] * 3, seed=7)
    with pytest.raises(regress.GateInputError, match="different workloads"):
        regress.compare_sides(str(base), str(other), TOK)


def test_machine_class_is_part_of_the_fingerprint(tmp_path, capsys):
    xeon = _side(tmp_path, "xeon", [130, 131, 129], [0.5] * 3, hardware=XEON)
    epyc = _side(tmp_path, "epyc", [100, 101, 99], [0.5] * 3)
    with pytest.raises(regress.GateInputError, match="Intel.*AMD EPYC 9B14 · 2 cores · no GPU.*allow-other"):
        regress.compare_sides(str(xeon), str(epyc), TOK)
    result = regress.compare_sides(str(xeon), str(epyc), TOK, allow_other_hardware=True)
    assert result["verdict"] == "regression" and "across machine classes" in result["warnings"][0]
    assert "across machine classes" in regress.markdown(result)
    args = ["regress", "--baseline", str(xeon), "--candidate", str(epyc)]
    assert main(args) == 2
    assert "--allow-other-hardware" in capsys.readouterr().err
    assert main([*args, "--allow-other-hardware"]) == 1
    gpu = {**EPYC, "gpus": [{"name": "NVIDIA H200"}, {"name": "NVIDIA H200"}]}
    assert regress.machine_class({"environment": {"hardware": gpu}}) == "AMD EPYC 9B14 · 2 cores · 2 x NVIDIA H200"


def test_cli_exit_codes_and_outputs(tmp_path, monkeypatch, capsys):
    base = _side(tmp_path, "base", [100, 101, 99], [0.5] * 3)
    slow = _side(tmp_path, "slow", [80, 81, 79], [0.5] * 3)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    args = ["regress", "--baseline", str(base), "--candidate"]
    assert main(args + [str(base)]) == 0
    assert main(args + [str(slow), "--json-out", str(tmp_path / "v.json")]) == 1
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["regression"] is True and verdict["verdict"] == "regression"
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


def _trial_verdicts(slowdown: float, trials: int = 200, reps: int = 5, noise: float = 0.03) -> list[str]:
    rng = np.random.default_rng(42)
    verdicts = []
    for _ in range(trials):
        base = 100 * np.exp(rng.normal(0, noise, reps))
        cand = 100 * (1 - slowdown) * np.exp(rng.normal(0, noise, reps))
        verdicts.append(regress.judge(TOK[0], list(base), list(cand), 0.95).verdict)
    return verdicts


def test_error_rates_on_simulated_noise():
    """Each of the gate's errors is at most 1 - confidence = 5% at the threshold itself (a regression called, or a
    pass given, when the candidate is exactly 5% slower): 10 of 200, plus two binomial standard deviations (~6).
    Identical sides are never called a regression, a 15% slowdown always is, quiet identical sides pass."""
    at_threshold = _trial_verdicts(0.05)
    assert at_threshold.count("regression") <= 16 and at_threshold.count("pass") <= 16
    assert _trial_verdicts(0.0).count("regression") == 0
    assert _trial_verdicts(0.15).count("regression") == 200
    assert _trial_verdicts(0.0, noise=0.005).count("pass") == 200
