"""The interleaved A/B gate: paired intervals, sequential stopping, sources, bad input, the CI workflow."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchctl import ab as job
from benchctl.ab import report, stats
from benchctl.cli import main
from benchctl.regress import GateInputError

REPO = Path(__file__).resolve().parents[2]
FAKE = "fake=tests.harness.sweep_fakes:BACKEND"
TOK = ["output_tok_s:-5%"]


def _run_json(path: Path, output_tok_s: float, ttft_p99_s: float = 0.5, failed: int = 0, seed: int = 0) -> None:
    path.mkdir(parents=True)
    run = {
        "run_id": path.name,
        "status": "completed",
        "config": {"model": {"name": "m"}, "mode": "offline", "backend": "fake"},
        "workload": {
            "dataset": "random",
            "num_requests": 8,
            "seed": seed,
            "input_tokens": {"mean": 8},
            "output_tokens": {"mean": 4},
            "schedule": {"kind": "all-at-once"},
        },
        "environment": {"hardware": {"cpu": "AMD EPYC", "logical_cores": 2, "gpus": []}},
        "summary": {
            "num_requests": 8,
            "failed": failed,
            "output_tokens_short": 0,
            "output_tok_s": output_tok_s,
            "request_throughput": 1.0,
            "ttft_s": {"count": 8, "p99": ttft_p99_s},
        },
    }
    (path / "run.json").write_text(json.dumps(run))


class FakeRuns:
    """Stands in for `benchctl run`: side X's speed is `speed[X]` times noise; records every call."""

    def __init__(
        self,
        speed: dict[str, float],
        noise: float = 0.0,
        seed: int = 1,
        failed_b: int = 0,
        seed_b: int = 0,
        code: dict[str, int] | None = None,
    ):
        self.speed, self.noise, self.rng = speed, noise, np.random.default_rng(seed)
        self.failed_b, self.seed_b, self.code = failed_b, seed_b, code or {}
        self.calls: list[tuple[str, list[str], dict, Path | None]] = []

    def __call__(self, argv, env, cwd, log_path) -> int:
        side = argv[argv.index("--label") + 1].split("-")[1]
        self.calls.append((side, argv, env, cwd))
        if side in self.code:
            log_path.write_text("benchctl: error: --num-prompts must be >= 1\n")
            return self.code[side]
        parent = Path(argv[argv.index("--output-dir") + 1])
        tok_s = self.speed[side] * math.exp(self.rng.normal(0, self.noise))
        _run_json(
            parent / f"run-{len(self.calls)}",
            tok_s,
            failed=self.failed_b if side == "b" else 0,
            seed=self.seed_b if side == "b" else 0,
        )
        return 0


def _plan(tmp_path, metrics=TOK, **kw) -> job.AbPlan:
    args = {
        "common": [],
        "a": "",
        "b": "",
        "a_source": None,
        "b_source": None,
        "metrics": metrics,
        "confidence": 0.95,
        "min_rounds": 3,
        "max_rounds": 8,
        "seed": 0,
        "output_dir": tmp_path / "ab",
    }
    args.update(kw)
    return job.make_plan(**args)


def test_paired_interval_is_the_t_interval_of_the_log_ratios():
    from scipy import stats as sp

    a, b = [100.0, 90.0, 110.0, 95.0], [91.0, 80.0, 100.0, 88.0]
    got = stats.paired_log_interval(a, b, 0.95)
    d = np.log(np.array(b) / np.array(a))
    half = sp.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert got.ratio == pytest.approx(math.exp(d.mean()))
    assert (got.low, got.high) == pytest.approx((math.exp(d.mean() - half), math.exp(d.mean() + half)))
    assert got.resolution_pct == pytest.approx((math.exp(half) - 1) * 100)
    # the pairing: A swings by 20% between rounds (the machine), B/A stays near 0.9 and the interval is narrow
    assert got.high < 0.95
    assert stats.look_confidence(0.95, 3, 10) == pytest.approx(1 - 0.1 / 8)  # each bound 1 - 0.05 / 8


def test_a_clear_regression_stops_at_the_first_look(tmp_path):
    runs = FakeRuns({"a": 100, "b": 80}, noise=0.01)
    result = job.run_ab(_plan(tmp_path), say=lambda s: None, run_side=runs)
    assert result["verdict"] == "regression" and result["exit_code"] == 1 and result["rounds_run"] == 3
    assert len(runs.calls) == 6
    job_dir = Path(result["job_dir"])
    assert sorted(p.name for p in job_dir.iterdir() if p.is_dir()) == [
        f"round-0{r}-{s}" for r in (1, 2, 3) for s in "ab"
    ]  # every run folder kept
    assert json.loads((job_dir / "ab.json").read_text())["verdict"] == "regression"
    assert "REGRESSION after 3 rounds: output_tok_s B/A 0.79" in report.verdict_line(result)


def test_identical_sides_pass_and_say_what_a_pass_rules_out(tmp_path):
    runs = FakeRuns({"a": 100, "b": 100}, noise=0.005)
    result = job.run_ab(_plan(tmp_path), say=lambda s: None, run_side=runs)
    assert result["verdict"] == "pass" and result["exit_code"] == 0
    (v,) = result["verdicts"]
    assert v["worst_regression_pct"] < 5 and v["low"] > 0.95
    assert f"no regression larger than output_tok_s {v['worst_regression_pct']:.1f}%" in report.verdict_line(result)


def test_noise_wider_than_the_threshold_is_inconclusive_at_max_rounds(tmp_path):
    runs = FakeRuns({"a": 100, "b": 97}, noise=0.15)
    result = job.run_ab(_plan(tmp_path, max_rounds=5), say=lambda s: None, run_side=runs)
    assert result["verdict"] == "inconclusive" and result["exit_code"] == 3 and result["rounds_run"] == 5
    assert "inconclusive after 5 rounds" in report.verdict_line(result)


def test_the_order_is_random_per_round_and_reproducible(tmp_path):
    orders = []
    for _ in range(2):
        runs = FakeRuns({"a": 100, "b": 100}, noise=0.2)
        result = job.run_ab(_plan(tmp_path, max_rounds=8, seed=5), say=lambda s: None, run_side=runs)
        orders.append([r["order"] for r in result["rounds"]])
        assert [c[0] for c in runs.calls] == [s for o in orders[-1] for s in o]
    assert orders[0] == orders[1]
    assert {tuple(o) for o in orders[0]} == {("a", "b"), ("b", "a")}


def test_a_candidate_with_failed_requests_fails_at_once(tmp_path):
    runs = FakeRuns({"a": 100, "b": 120}, failed_b=1)  # faster, but it dropped a request
    result = job.run_ab(_plan(tmp_path), say=lambda s: None, run_side=runs)
    assert result["verdict"] == "regression" and result["rounds_run"] == 1 and result["exit_code"] == 1
    assert "B had 1 failed or short requests in round 1" in report.verdict_line(result)


def test_a_candidate_run_that_dies_is_a_regression(tmp_path):
    runs = FakeRuns({"a": 100, "b": 100}, code={"b": 1})
    result = job.run_ab(_plan(tmp_path), say=lambda s: None, run_side=runs)
    assert result["verdict"] == "regression" and result["rounds_run"] == 1
    assert "side B's run failed in round 1" in result["rounds"][0]["b"]["line"]


def test_bad_input_found_by_the_runs_is_exit_2(tmp_path):
    with pytest.raises(GateInputError, match="different workloads"):
        job.run_ab(_plan(tmp_path), say=lambda s: None, run_side=FakeRuns({"a": 1, "b": 1}, seed_b=7))
    with pytest.raises(GateInputError, match="side B's run refused its flags: benchctl: error: --num-prompts"):
        job.run_ab(_plan(tmp_path), say=lambda s: None, run_side=FakeRuns({"a": 1, "b": 1}, code={"b": 2}))
    with pytest.raises(GateInputError, match="side A's run failed in round 1"):
        job.run_ab(_plan(tmp_path), say=lambda s: None, run_side=FakeRuns({"a": 1, "b": 1}, code={"a": 1}))
    with pytest.raises(GateInputError, match="metric 'goodput_req_s' is missing from side"):
        job.run_ab(
            _plan(tmp_path, metrics=["goodput_req_s:-5%"]), say=lambda s: None, run_side=FakeRuns({"a": 1, "b": 1})
        )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--a-source", "/nonexistent/checkout"], "neither a folder nor a git revision"),
        (["--b-source", "no-such-revision-xyz"], "neither a folder nor a git revision"),
        (["--a-source", "/tmp"], "not a checkout of benchctl"),
        (["--a", '--engine-arg "x'], "No closing quotation"),
        (["--b", "--output-dir elsewhere"], "--output-dir is the A/B job's own option"),
        (["--min-rounds", "1"], "--min-rounds"),
        (["--metric", "output_tok_s:+5%"], "drop"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_run(tmp_path, capsys, args, message):
    assert main(["ab", *args, "--output-dir", str(tmp_path / "ab"), "--num-prompts", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchctl: error:") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "ab").exists()


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


FAKE_CLI = """
import json, os, sys
from pathlib import Path

def main(argv):
    out = Path(argv[argv.index("--output-dir") + 1]) / "run-1"
    out.mkdir(parents=True)
    run = {"run_id": "run-1", "status": "completed", "config": {"model": {"name": "m"}, "mode": "offline"},
           "workload": {"dataset": "random", "num_requests": 4, "seed": 0},
           "environment": {"hardware": {"cpu": "x", "logical_cores": 2, "gpus": []}},
           "summary": {"failed": 0, "output_tok_s": SPEED, "request_throughput": 1.0},
           "where": [os.getcwd(), __file__]}
    (out / "run.json").write_text(json.dumps(run))
    return 0
"""


def test_revisions_run_from_their_own_worktrees_which_are_removed_after(tmp_path, monkeypatch):
    """A = the older commit, B = the newer one: each side's `benchctl run` really is its revision's code."""
    repo = tmp_path / "repo"
    (repo / "benchctl").mkdir(parents=True)
    (repo / "benchctl" / "__init__.py").write_text("")
    _git(repo, "init", "-q")
    for speed in (100, 70):
        (repo / "benchctl" / "cli.py").write_text(FAKE_CLI.replace("SPEED", str(speed)))
        _git(repo, "add", ".")
        _git(repo, "commit", "-q", "-m", f"speed {speed}")
    monkeypatch.chdir(repo)
    plan = _plan(tmp_path, a_source="HEAD~1", b_source="HEAD")
    result = job.run_ab(plan, say=lambda s: None)
    assert result["verdict"] == "regression" and result["verdicts"][0]["ratio"] == pytest.approx(0.7)
    first_a = json.loads((Path(result["rounds"][0]["a"]["run_dir"]) / "run.json").read_text())
    cwd, module = first_a["where"]
    assert Path(module).is_relative_to(cwd) and "benchctl-ab-" in cwd  # the worktree's own cli.py
    assert not Path(cwd).exists()
    assert _git(repo, "worktree", "list").count("\n") == 0  # only the main worktree is left
    # a folder source: the same, without git
    folder = tmp_path / "copy"
    _git(repo, "worktree", "add", "-q", "--detach", str(folder), "HEAD~1")
    result = job.run_ab(_plan(tmp_path, a_source=str(folder), b_source=str(folder)), say=lambda s: None)
    assert result["verdict"] == "pass" and folder.exists()


def test_end_to_end_with_a_fake_engine(tmp_path, monkeypatch, capsys):
    """Two real `benchctl run`s a round: the fake engine's step time is exact, so 3 rounds are clear."""
    monkeypatch.setenv("BENCHCTL_BACKENDS", FAKE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    args = [
        "ab",
        "--backend",
        "fake",
        "--dataset",
        "random",
        "--num-prompts",
        "4",
        "--random-input-len",
        "8",
        "--random-output-len",
        "8",
        "--a",
        "--engine-arg step_ms=10",
        "--b",
        "--engine-arg step_ms=13",
        "--max-rounds",
        "3",
        "--metric",
        "output_tok_s:-5%",
        "--output-dir",
        str(tmp_path / "ab"),
        "--json-out",
        str(tmp_path / "ab.json"),
    ]
    assert main(args) == 1
    result = json.loads((tmp_path / "ab.json").read_text())
    assert result["verdicts"][0]["ratio"] == pytest.approx(10 / 13, rel=0.02)
    assert "REGRESSION after 3 rounds" in summary.read_text()
    assert "REGRESSION after 3 rounds" in capsys.readouterr().out


def _workflow_commands() -> list[str]:
    """The `benchctl ab` command lines of the example workflow's steps, continuation lines joined."""
    import yaml

    workflow = yaml.safe_load((REPO / "examples" / "ci" / "benchctl-regression.yml").read_text())
    steps = [s for j in workflow["jobs"].values() for s in j["steps"] if "run" in s]
    lines = [line for s in steps for line in s["run"].replace("\\\n", " ").splitlines()]
    return [line for line in lines if "benchctl ab " in line]


def test_the_example_workflow_runs_the_ci_gate_and_its_command_dry_runs(tmp_path):
    (command,) = _workflow_commands()
    argv = shlex.split(command)
    assert argv[0].endswith("benchctl") and argv[1] == "ab" and "--a-source" in argv
    if (
        subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--verify", "-q", "HEAD~1"], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("a shallow clone: HEAD~1 is not here to resolve")
    done = subprocess.run(
        [sys.executable, "-m", "benchctl", *argv[1:], "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "A: engine from git revision HEAD~1" in done.stdout and "B: engine from this installation" in done.stdout
    assert "output_tok_s -10%, ttft_p99_ms +20%" in done.stdout
    import yaml

    workflow = yaml.safe_load((REPO / "examples" / "ci" / "benchctl-regression.yml").read_text())
    (checkout,) = [s for j in workflow["jobs"].values() for s in j["steps"] if "checkout" in s.get("uses", "")]
    assert checkout["with"]["fetch-depth"] >= 2  # else HEAD~1 is not in the clone


def test_the_fake_server_jitters_each_request_and_drifts_with_time():
    from benchctl.serving.fake_server import FakeServer

    server = FakeServer(ttft_ms=10, itl_ms=10, jitter=0.2, drift_per_min=0.1, seed=3)
    now = [server._slowdown(server.t_start) for _ in range(2000)]
    later = [server._slowdown(server.t_start + 120) for _ in range(2000)]  # two minutes on: 20% slower
    assert 0.8 <= min(now) < 0.82 and 1.18 < max(now) <= 1.2 and np.mean(now) == pytest.approx(1.0, abs=0.01)
    assert np.mean(later) == pytest.approx(1.2, abs=0.012) and max(later) <= 1.2 * 1.2
    assert FakeServer(ttft_ms=10)._slowdown(0.0) == 1.0  # neither: the exact timings as before
