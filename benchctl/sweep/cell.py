"""One sweep cell as its own process, bounded in time; the local and Ray executors that run cells.

A cell is an ordinary `run_benchmark` in a child process with its own process group, so a cell past its time
limit (a hung engine, a server that stopped answering) can be ended whole — the run, its worker or launched
server, and anything they started — while the sweep goes on with the next cell.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from benchctl.sweep.spec import DEFAULT_CELL_TIMEOUT_S, SweepSpecError

TERM_GRACE_S = 10.0  # after SIGTERM a run writes its records and run.json; then SIGKILL


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    """A descendant that leads its own group (a worker, a launched server) takes its group with it."""
    for p in procs:
        try:
            if os.getpgid(p.pid) == p.pid != os.getpgrp():
                os.killpg(p.pid, sig)
            else:
                p.send_signal(sig)
        except (psutil.NoSuchProcess, OSError):
            pass


def _end_tree(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the cell's group (the run records what it has and marks itself failed), then SIGKILL the group and
    every descendant found before, including workers and servers that live in process groups of their own."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    _signal_all(tree, signal.SIGKILL)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    psutil.wait_procs([p for p in tree if p.pid != proc.pid], timeout=5)


def _child_env() -> dict[str, str]:
    """The child imports what this process can (plugins registered by BENCHCTL_BACKENDS, tests' fake engines)."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths + env.get("PYTHONPATH", "").split(os.pathsep)))
    return env


def run_cell(config: Any, timeout_s: float = DEFAULT_CELL_TIMEOUT_S, grace_s: float = TERM_GRACE_S) -> dict[str, Any]:
    """Run one cell (a RunConfig) in a child process: {"run_dir": Path | None, "status", "error"}.

    status is completed, failed (the run failed, or its process died) or timeout (killed after timeout_s)."""
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in output_dir.iterdir()}
    with tempfile.TemporaryDirectory(prefix="benchctl-cell-") as tmp:
        result_path = Path(tmp) / "result.json"
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(result_path)],
            stdin=subprocess.PIPE,
            env=_child_env(),
            start_new_session=True,
        )
        try:
            proc.communicate(pickle.dumps(config), timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            _end_tree(proc, grace_s)
        except BaseException:  # Ctrl-C in the sweep: the cell goes with it, whole
            _end_tree(proc, grace_s)
            raise
        result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    new = sorted(p for p in output_dir.iterdir() if p.name not in before and (p / "run.json").is_file())
    run_dir = Path(result["run_dir"]) if result.get("run_dir") else (new[-1] if new else None)
    if timed_out:
        error = f"cell still running after cell_timeout_s={timeout_s:g}; killed"
        _mark_run_failed(run_dir, error)
        return {"run_dir": run_dir, "status": "timeout", "error": error}
    if not result:
        error = f"cell process exited with code {proc.returncode} before reporting a result"
        _mark_run_failed(run_dir, error)
        return {"run_dir": run_dir, "status": "failed", "error": error}
    return {"run_dir": run_dir, "status": result["status"], "error": result["error"]}


def _mark_run_failed(run_dir: Path | None, error: str) -> None:
    """A run killed before it could write its own end still says `running`: say what happened to it."""
    from benchctl import store

    if run_dir is None or not (run_dir / "run.json").is_file():
        return
    try:
        run = store.load_run(run_dir)
    except Exception:
        return
    if isinstance(run, dict) and run.get("status") == "running":
        run.update(status="failed", error=error)
        store.write_json_atomic(run_dir / "run.json", run)


_CHILD = "import sys; from benchctl.sweep.cell import _cell_main; sys.exit(_cell_main(sys.argv[1]))"


def _cell_main(result_path: str) -> int:
    """The child: read a pickled RunConfig on stdin, run it, write the outcome as JSON."""
    from benchctl.run import RunFailed, run_benchmark

    config = pickle.loads(sys.stdin.buffer.read())
    try:
        run_dir, status, error = run_benchmark(config), "completed", None
    except RunFailed as e:
        run_dir, status, error = e.run_dir, "failed", str(e)
    except Exception as e:  # bad engine args for this cell, a model that does not load: this cell fails alone
        run_dir, status, error = None, "failed", f"{type(e).__name__}: {e}"
    Path(result_path).write_text(
        json.dumps({"run_dir": str(run_dir) if run_dir else None, "status": status, "error": error})
    )
    return 0


def _run_cell_files(config: Any, timeout_s: float = DEFAULT_CELL_TIMEOUT_S) -> dict[str, Any]:
    """A Ray task: run the cell (bounded) in a private temp folder and return its files."""
    with tempfile.TemporaryDirectory(prefix="benchctl-cell-") as tmp:
        result = run_cell(replace(config, output_dir=Path(tmp)), timeout_s)
        run_dir = result["run_dir"]
        files = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} if run_dir else {}
        return {
            "run_id": run_dir.name if run_dir else None,
            "files": files,
            "status": result["status"],
            "error": result["error"],
        }


class LocalExecutor:
    """One cell at a time on this machine: engines never share it."""

    def map(
        self, configs: list, on_done: Callable[[int, dict], None], cell_timeout_s: float = DEFAULT_CELL_TIMEOUT_S
    ) -> None:
        for i, config in enumerate(configs):
            on_done(i, run_cell(config, cell_timeout_s))


class RayExecutor:
    """Cells as Ray tasks on an existing cluster; each asks for the resources an engine needs.

    A task that fails (its node died, the task raised) marks its own cell failed; the other tasks go on. Only an
    interrupt of the sweep itself cancels what is still pending."""

    def __init__(
        self,
        address: str | None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        ray_module: Any = None,
        one_per_node: bool | None = None,
    ):
        injected = ray_module is not None
        if ray_module is None:
            try:
                import ray
            except ImportError:
                raise SweepSpecError("--executor ray needs the `ray` package (pip install 'benchctl[ray]')") from None
            if not ray.is_initialized():
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
            ray_module = ray
        self.ray = ray_module
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        # A real cluster: one cell per node holding all its CPUs/GPUs (benchctl.distributed.cells); an injected
        # ray module (the tests' in-process fakes) keeps plain tasks.
        self.one_per_node = one_per_node if one_per_node is not None else not injected

    def map(
        self, configs: list, on_done: Callable[[int, dict], None], cell_timeout_s: float = DEFAULT_CELL_TIMEOUT_S
    ) -> None:
        if self.one_per_node:
            from benchctl.distributed.cells import NodeExecutor

            executor = NodeExecutor(self.ray, _run_cell_files, min_cpus=self.num_cpus, min_gpus=self.num_gpus)
            return executor.map(configs, on_done, cell_timeout_s)
        task = self.ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(_run_cell_files)
        pending = {task.remote(config, cell_timeout_s): i for i, config in enumerate(configs)}
        try:
            while pending:
                done, _ = self.ray.wait(list(pending), num_returns=1)
                i = pending.pop(done[0])
                on_done(i, self._collect(configs[i], done[0]))
        except BaseException:
            for ref in pending:
                self.ray.cancel(ref, force=True)
            raise

    def _collect(self, config: Any, ref: Any) -> dict:
        try:
            result = self.ray.get(ref)
        except Exception as e:  # RayTaskError, WorkerCrashedError, a lost node: this cell only
            return {
                "run_dir": None,
                "status": "failed",
                "error": f"ray task failed: {type(e).__name__}: {' '.join(str(e).split())[:500]}",
            }
        if not result["run_id"]:
            return {"run_dir": None, "status": result["status"], "error": result["error"]}
        run_dir = Path(config.output_dir) / result["run_id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, data in result["files"].items():
            (run_dir / name).write_bytes(data)
        return {"run_dir": run_dir, "status": result["status"], "error": result["error"]}
