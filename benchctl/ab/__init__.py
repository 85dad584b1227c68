"""Interleaved A/B gate: run configurations A and B round-robin on this machine and gate B against A.

Each round runs one `benchctl run` of each side, in a random order (seeded), with the common run flags plus the
side's own; every run folder is kept under the job's folder. After each round from `min_rounds` on, every gated
metric's paired interval of B/A (benchctl.ab.stats) decides regression, pass or not yet; the job stops at the first
clear answer, else at `max_rounds` as inconclusive. A candidate with failed or short requests fails at once.
Exit codes are regress's: 0 pass, 1 regression, 2 bad input, 3 inconclusive.
"""

from __future__ import annotations

import os
import random
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchctl import store
from benchctl.ab.sources import Source, Worktrees, resolve_source, side_environment
from benchctl.ab.stats import judge_metric, look_confidence
from benchctl.regress import (
    DEFAULT_METRICS,
    EXIT_BAD_INPUT,
    GateInputError,
    MetricGate,
    exit_code,
    failure_count,
    gate_metrics,
    load_gate_run,
    machine_class,
    overall,
    parse_gate,
    workload_fingerprint,
)

SIDES = ("a", "b")
OWNED_FLAGS = ("--output-dir",)  # the job decides where each run goes
# The side's `benchctl run`, from the side's tree when it has one (its folder first on sys.path, not the cwd).
LAUNCH = (
    "import sys; root = sys.argv.pop(1); sys.path[0:1] = [root] if root else sys.path[0:1]; "
    "from benchctl.cli import main; sys.exit(main(sys.argv[1:]))"
)


@dataclass(slots=True)
class AbPlan:
    common: list[str]  # run flags both sides share
    flags: dict[str, list[str]]  # side -> its own run flags
    sources: dict[str, Source | None]
    gates: list[MetricGate]
    confidence: float = 0.95
    min_rounds: int = 3
    max_rounds: int = 10
    seed: int = 0
    output_dir: Path = Path("results/ab")
    python: str = sys.executable
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def look_confidence(self) -> float:
        return look_confidence(self.confidence, self.min_rounds, self.max_rounds)


def _split(text: str, flag: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as e:
        raise GateInputError(f"{flag} {text!r}: {e}") from None


def make_plan(
    common: list[str],
    a: str,
    b: str,
    a_source: str | None,
    b_source: str | None,
    metrics: list[str] | None,
    confidence: float,
    min_rounds: int,
    max_rounds: int,
    seed: int,
    output_dir: Path,
) -> AbPlan:
    """Every check that needs no run: flags, thresholds, round counts, sources (folders exist, revisions resolve)."""
    flags = {"a": _split(a, "--a"), "b": _split(b, "--b")}
    for where, args in (("run flags", common), ("--a", flags["a"]), ("--b", flags["b"])):
        owned = [f for f in args if f.split("=")[0] in OWNED_FLAGS]
        if owned:
            raise GateInputError(f"{where}: {owned[0]} is the A/B job's own option (each run goes under it)")
    if not 0.5 <= confidence < 1:
        raise GateInputError(f"--confidence must be in [0.5, 1), got {confidence}")
    if not 2 <= min_rounds <= max_rounds:
        raise GateInputError(f"need 2 <= --min-rounds <= --max-rounds, got {min_rounds} and {max_rounds}")
    sources = {
        "a": resolve_source(a_source, "--a-source") if a_source else None,
        "b": resolve_source(b_source, "--b-source") if b_source else None,
    }
    gates = [parse_gate(m) for m in (metrics or DEFAULT_METRICS)]
    return AbPlan(common, flags, sources, gates, confidence, min_rounds, max_rounds, seed, output_dir)


def side_argv(plan: AbPlan, side: str, run_parent: Path, round_no: int) -> list[str]:
    source = plan.sources[side]
    root = str(source.root) if source and source.root else ""
    args = [*plan.common, *plan.flags[side], "--output-dir", str(run_parent)]
    if "--label" not in args and not any(x.startswith("--label=") for x in args):
        args += ["--label", f"ab-{side}-round-{round_no}"]
    return [plan.python, "-c", LAUNCH, root, "run", *args]


def dry_run_text(plan: AbPlan) -> str:
    """The job as it would run: sources, one round's commands, the gates and the stopping rule."""
    lines = [
        f"benchctl ab: up to {plan.max_rounds} rounds (at least {plan.min_rounds}), A and B in a random "
        f"order each round (seed {plan.seed}); runs under {plan.output_dir}/<job>/"
    ]
    for side in SIDES:
        source = plan.sources[side]
        where = source.describe() if source else "this installation"
        argv = side_argv(plan, side, plan.output_dir / "<job>" / f"round-01-{side}", 1)
        lines += [f"{side.upper()}: engine from {where}", f"  {shlex.join(['benchctl', *argv[4:]])}"]
    lines.append(
        f"gates (B against A; each verdict at {plan.confidence:.0%} over all looks, each look's interval "
        f"{plan.look_confidence:.2%}): "
        + ", ".join(f"{g.metric} {g.threshold * 100:+g}%" for g in plan.gates)
        + "; any failed or short request of B fails"
    )
    return "\n".join(lines)


def _run_side(argv: list[str], env: dict[str, str], cwd: Path | None, log_path: Path) -> int:
    """One `benchctl run` in its own process group, output to its log; Ctrl-C ends it whole."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)  # the run keeps its records, marks itself failed, ends its worker
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            raise


def _error_of(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines()
    mine = [ln for ln in lines if ln.startswith("benchctl: error:") or "run failed" in ln]
    return (mine or lines or ["(no output)"])[-1].strip()


RunSide = Callable[[list[str], dict[str, str], "Path | None", Path], int]


def run_ab(plan: AbPlan, say: Callable[[str], None] = print, run_side: RunSide = _run_side) -> dict[str, Any]:
    """The whole job; the result (also written to ab.json as it goes) has `verdict` and `exit_code`."""
    job_dir = store.new_run_dir(plan.output_dir, "ab")
    result: dict[str, Any] = {
        "schema_version": store.SCHEMA_VERSION,
        "job_id": job_dir.name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "plan": {
            "common": plan.common,
            "flags": plan.flags,
            "gates": [asdict(g) for g in plan.gates],
            "confidence": plan.confidence,
            "look_confidence": plan.look_confidence,
            "min_rounds": plan.min_rounds,
            "max_rounds": plan.max_rounds,
            "seed": plan.seed,
            "sources": {s: src.describe() if src else None for s, src in plan.sources.items()},
        },
        "rounds": [],
        "verdicts": [],
        "verdict": "inconclusive",
        "job_dir": str(job_dir),
    }
    rng = random.Random(plan.seed)
    values: dict[str, dict[str, list[float]]] = {s: {g.metric: [] for g in plan.gates} for s in SIDES}
    with Worktrees() as trees:
        roots = {s: trees.materialize(src, s) if src else None for s, src in plan.sources.items()}
        envs = {s: side_environment(roots[s]) for s in SIDES}
        for round_no in range(1, plan.max_rounds + 1):
            order = rng.sample(SIDES, 2)
            runs: dict[str, dict] = {}
            for side in order:
                parent = job_dir / f"round-{round_no:02d}-{side}"
                parent.mkdir()
                code = run_side(side_argv(plan, side, parent, round_no), envs[side], roots[side], parent / "run.log")
                runs[side] = _side_outcome(side, code, parent, round_no)
                say(f"round {round_no} {side.upper()}: {runs[side]['line']}")
            result["rounds"].append(
                {
                    "round": round_no,
                    "order": order,
                    **{s: {k: v for k, v in runs[s].items() if k != "run"} for s in SIDES},
                }
            )
            if runs["b"]["failures"]:  # checked first: a B run that died has no workload to compare
                result.update(
                    verdict="regression",
                    reason=f"B had {runs['b']['failures']} failed or short requests in round {round_no}",
                )
                break
            if round_no == 1:
                _same_workload(runs["a"]["run"], runs["b"]["run"])
            for side in SIDES:
                metrics = gate_metrics(runs[side]["run"]["summary"])
                for g in plan.gates:
                    if g.metric not in metrics:
                        raise GateInputError(
                            f"metric {g.metric!r} is missing from side {side.upper()}'s run "
                            f"(known: {', '.join(sorted(metrics))})"
                        )
                    values[side][g.metric].append(metrics[g.metric])
            if round_no >= plan.min_rounds:
                result["verdicts"] = [
                    judge_metric(g, values["a"][g.metric], values["b"][g.metric], plan.look_confidence)
                    for g in plan.gates
                ]
                result["verdict"] = overall([v["verdict"] for v in result["verdicts"]])
                say(progress_line(result))
                if result["verdict"] != "inconclusive":
                    break
            store.write_json_atomic(job_dir / "ab.json", store.clean_floats(result))
    result["rounds_run"] = len(result["rounds"])
    result["exit_code"] = exit_code(result)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    store.write_json_atomic(job_dir / "ab.json", store.clean_floats(result))
    return result


def _side_outcome(side: str, code: int, parent: Path, round_no: int) -> dict[str, Any]:
    if code in (130, 143):
        raise KeyboardInterrupt
    if code == EXIT_BAD_INPUT:
        raise GateInputError(f"side {side.upper()}'s run refused its flags: {_error_of(parent / 'run.log')}")
    found = sorted(p for p in parent.iterdir() if (p / "run.json").is_file())
    if code != 0 or not found:
        why = f"side {side.upper()}'s run failed in round {round_no} ({_error_of(parent / 'run.log')})"
        if side == "a":  # without a baseline run there is nothing to gate against
            raise GateInputError(f"{why}; see {parent / 'run.log'}")
        return {
            "run": {"summary": {}},
            "run_dir": str(found[-1]) if found else None,
            "failures": 1,
            "line": f"FAILED: {why}",
        }
    run = load_gate_run(found[-1])
    failures = failure_count(run)
    tok_s = gate_metrics(run["summary"]).get("output_tok_s")
    line = f"{found[-1].name}: {tok_s:.4g} output tok/s" if tok_s else found[-1].name
    return {
        "run": run,
        "run_dir": str(found[-1]),
        "failures": failures,
        "line": line + (f", {failures} failed or short requests" if failures else ""),
    }


def _same_workload(a: dict, b: dict) -> None:
    if workload_fingerprint(a) != workload_fingerprint(b):
        raise GateInputError(
            "A and B ran different workloads (dataset, lengths, schedule, seed or model differ): "
            "give workload flags as common run flags, not in --a / --b"
        )
    if machine_class(a) != machine_class(b):
        raise GateInputError(f"A ran on {machine_class(a)}, B on {machine_class(b)}: not one machine")


def progress_line(result: dict[str, Any]) -> str:
    parts = [
        f"{v['metric']} B/A {v['ratio']:.3f} [{v['low']:.3f}, {v['high']:.3f}] "
        f"(resolution ±{v['resolution_pct']:.1f}%) {v['verdict']}"
        for v in result["verdicts"]
        if "ratio" in v
    ]
    return "  " + "; ".join(parts)
