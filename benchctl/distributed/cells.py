"""Sweep cells on a Ray cluster, one per node: each cell holds all of its node's CPUs and GPUs while it runs.

Ray's own scheduler packs tasks by the resources they ask for, so two cells asking for a few CPUs each can land on
one machine and disturb each other's numbers. Here the driver hands out nodes itself: a cell is a task pinned to
one free node (node affinity, not soft) asking for every CPU and GPU that node has, so nothing else Ray schedules
can share the machine with it; the next cell gets the next free node. The cell itself (its own process, bounded
by the cell time limit) is whatever `run_files` does on that node — benchctl.sweep.cell's, which returns the run
folder's files; they are written under the driver's output folder as each cell finishes, with placement.json
(node, host, start and end) beside them.

A cell whose task fails (its node died, the task raised) or outlives its limit by more than the cell's own
timeout handling allows is marked and the sweep goes on; a lost node is dropped from the pool. An interrupt
(Ctrl-C) submits nothing more and cancels the running cells (KeyboardInterrupt first, so each ends its run and
process tree; then by force).
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchctl.distributed.cluster import NodeInfo, alive_nodes, short

DRIVER_SLACK_S = 120.0  # past the cell's own limit (and its kill grace), the driver gives up on the task
CANCEL_GRACE_S = 15.0  # Ctrl-C: how long running cells get to end their runs before they are killed


@dataclass(slots=True)
class NodeSlot:
    node_id: str
    ip: str
    cpus: float
    gpus: float


def node_slots(ray: Any, min_cpus: float = 1, min_gpus: float = 0) -> list[NodeSlot]:
    """One slot per alive node with at least min_cpus CPUs (and min_gpus GPUs): all of its CPUs and GPUs."""
    nodes: list[NodeInfo] = alive_nodes(ray)
    return [NodeSlot(n.node_id, n.ip, n.cpus, n.gpus) for n in nodes if n.cpus >= min_cpus and n.gpus >= min_gpus]


def placed(run_files: Callable[[Any, float], dict], config: Any, timeout_s: float) -> dict:
    """The task body: run the cell and say where and when it ran (wall-clock time.time(), comparable across
    nodes to the precision of their NTP)."""
    import ray

    started = time.time()
    result = run_files(config, timeout_s)
    result["placement"] = {
        "node": ray.get_runtime_context().get_node_id(),
        "ip": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
        "started_at": started,
        "finished_at": time.time(),
    }
    return result


class NodeExecutor:
    """The `map(configs, on_done, cell_timeout_s)` of benchctl.sweep's executors, one cell per node."""

    def __init__(
        self,
        ray_module: Any,
        run_files: Callable[[Any, float], dict],
        min_cpus: float = 1,
        min_gpus: float = 0,
        term_grace_s: float = 10.0,
    ):
        self.ray, self.run_files = ray_module, run_files
        self.min_cpus, self.min_gpus, self.term_grace_s = min_cpus, min_gpus, term_grace_s

    def map(self, configs: list, on_done: Callable[[int, dict], None], cell_timeout_s: float) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        free = deque(node_slots(ray, self.min_cpus, self.min_gpus))
        if not free:
            raise RuntimeError(f"no alive Ray node has >= {self.min_cpus:g} CPU(s) and >= {self.min_gpus:g} GPU(s)")
        task = ray.remote(max_retries=0)(placed)
        todo = deque(range(len(configs)))
        running: dict[Any, tuple[int, NodeSlot, float]] = {}  # ref -> (cell, its node, the driver's deadline)
        stuck: dict[Any, NodeSlot] = {}  # cancelled after their deadline: the node is busy until they end
        limit_s = cell_timeout_s + self.term_grace_s + DRIVER_SLACK_S
        try:
            while todo or running:
                while todo and free:
                    i, slot = todo.popleft(), free.popleft()
                    ref = task.options(
                        num_cpus=slot.cpus,
                        num_gpus=slot.gpus,
                        scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node_id, soft=False),
                    ).remote(self.run_files, configs[i], cell_timeout_s)
                    running[ref] = (i, slot, time.monotonic() + limit_s)
                if not running:  # cells left, and every node is lost or stuck
                    why = "no Ray node left to run it (the others died or are stuck)"
                    while todo:
                        on_done(todo.popleft(), {"run_dir": None, "status": "failed", "error": why})
                    break
                ready, _ = ray.wait(list(running) + list(stuck), num_returns=1, timeout=1.0)
                for ref in ready:
                    if ref in stuck:
                        self._give_back(stuck.pop(ref), free)
                        continue
                    i, slot, _ = running.pop(ref)
                    result = self._collect(configs[i], ref, slot)
                    self._give_back(slot, free)
                    on_done(i, result)
                now = time.monotonic()
                for ref, (i, slot, deadline) in list(running.items()):
                    if now > deadline:
                        del running[ref]
                        ray.cancel(ref, force=True)
                        stuck[ref] = slot
                        on_done(
                            i,
                            {
                                "run_dir": None,
                                "status": "timeout",
                                "placement": self._where(slot),
                                "error": f"cell task still running {limit_s:g} s after it started on node "
                                f"{short(slot.node_id)} ({slot.ip}); cancelled",
                            },
                        )
        except BaseException:
            self._cancel(list(running) + list(stuck))
            raise

    def _give_back(self, slot: NodeSlot, free: deque) -> None:
        """The node back in the pool, unless it died."""
        if any(n.node_id == slot.node_id for n in alive_nodes(self.ray)):
            free.append(slot)

    def _cancel(self, refs: list) -> None:
        """Ctrl-C: KeyboardInterrupt in each running cell (its run records what it has, its processes end), then
        force only what is still running: cancelling a task that has just finished can crash Ray's driver (a race
        in its task manager, ray-project/ray#54738), so each task gets as few cancels as possible."""
        for ref in refs:
            self.ray.cancel(ref, force=False)
        if not refs:
            return
        _, still = self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
        for ref in still:
            self.ray.cancel(ref, force=True)

    @staticmethod
    def _where(slot: NodeSlot) -> dict:
        return {"node": slot.node_id, "ip": slot.ip}

    def _collect(self, config: Any, ref: Any, slot: NodeSlot) -> dict:
        """The cell's outcome; its run folder's files written under the driver's output folder."""
        try:
            result = self.ray.get(ref)
        except Exception as e:  # noqa: BLE001 - RayTaskError, a lost node or worker: this cell only
            return {
                "run_dir": None,
                "status": "failed",
                "placement": self._where(slot),
                "error": f"ray task on node {short(slot.node_id)} ({slot.ip}) failed: {type(e).__name__}: "
                f"{' '.join(str(e).split())[:500]}",
            }
        placement = result.get("placement") or self._where(slot)
        if not result.get("run_id"):
            return {"run_dir": None, "status": result["status"], "error": result["error"], "placement": placement}
        run_dir = Path(config.output_dir) / result["run_id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, data in result["files"].items():
            (run_dir / name).write_bytes(data)
        (run_dir / "placement.json").write_text(json.dumps(placement, indent=2) + "\n", encoding="utf-8")
        return {"run_dir": run_dir, "status": result["status"], "error": result["error"], "placement": placement}
