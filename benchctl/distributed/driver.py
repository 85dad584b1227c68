"""The load client over several machines: one precomputed schedule, split over Ray actors one per node.

The split is benchctl.serving.shards' (request i to generator i % N, a conversation's turns with its first turn,
a max-concurrency cap C split into shares that add up to C: never exceeded, possibly under-used, since a slot
free on one node cannot serve another). A placement group with STRICT_SPREAD puts each generator on a node of its
own. Before t0 each node's clock offset from the driver is measured (benchctl.distributed.clock) and the node
sends at driver time t0 + arrival_s converted to its own clock, so every record's times are on the driver's
timeline; the offset is measured again at the end, and the run reports the worst error bound.

Records come back through one outstanding `next_batch` call per node (the driver waits on all of them with
ray.wait) and go through the same RecordSink as a one-host run: on disk as they arrive, percentiles computed over
the merged records. A generator whose call fails (its node died, its process was killed) takes only its own
share with it: every request of that share without a record is recorded as failed, naming the node and when.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchctl.distributed.actor import GeneratorActor
from benchctl.distributed.clock import ClockOffset, TimeServer, error_bound_s, measure_by_call
from benchctl.distributed.cluster import GeneratorError, alive_nodes, connect, parse_load_generators, short
from benchctl.serving.shards import conversation_groups, split_concurrency
from benchctl.workload import RequestSpec

PLACEMENT_TIMEOUT_S = 60.0
SETUP_TIMEOUT_S = 180.0
CLOCK_TIMEOUT_S = 30.0
WAIT_S = 0.5  # a next_batch call answers empty after this long without a record
CLOSE_GRACE_S = 3.0  # close(): how long the generators get to send their last records after the abort
DISTORTED = (
    "the schedule as the server saw it (each send within +-bound of its driver time), the run's duration "
    "(+-2 bound) and every rate over it, the alignment with the server's metrics; not TTFT, TPOT, ITL, "
    "E2EL or queue time, each a difference of two times on one node"
)


@dataclass(slots=True)
class DistributedResult:
    peak_in_flight: int  # the sum of the nodes' peaks (an upper bound of the true peak)
    died: list[str]  # one line per generator lost mid-run: which node, when
    cpu_s: float  # CPU seconds of the generator processes from t0 to their end
    generators: dict  # per node, the clock, the cap split (serving_stats.client_processes.load_generators)


class DistributedClient:
    """Place the generators and open their connections (the constructor), then `run(t0, emit)` from any thread;
    `stop` and `close` as benchctl.serving.shards.ShardedClient's."""

    def __init__(
        self,
        options,
        requests: Sequence[RequestSpec],
        load_generators: str,
        nodes: int,
        processes: int = 1,
        tokenizer_dir: str | None = None,
        warmup: int = 0,
    ):
        self.ray = connect(parse_load_generators(load_generators))
        self.options, self.requested, self.processes = options, nodes, processes
        groups = conversation_groups(requests)
        self.n = max(1, min(nodes, len(groups) or 1, options.max_concurrency or nodes))
        self.shares = [[r for group in groups[k :: self.n] for r in group] for k in range(self.n)]
        self.pending = [{r.request_id: r for r in share} for share in self.shares]
        self.caps = split_concurrency(options.max_concurrency, self.n)
        self._lock = threading.RLock()
        self._running = self._settled = self._closed = self._aborting = False
        self._run_over = threading.Event()
        self._emit: Callable[[dict], None] | None = None
        self._t0 = 0.0
        self._reason = "run interrupted"
        self._done: dict[int, dict] = {}
        self._died: dict[int, str] = {}
        self._died_at_s: dict[int, float] = {}
        self.clock_start: list[ClockOffset] = []
        self.clock_end: dict[int, ClockOffset] = {}
        self._span_s = [float("inf"), float("-inf")]  # earliest start, latest finish over the merged records
        self.actors: list[Any] = []
        self.pg = None
        self.timeserver: TimeServer | None = None
        try:
            self._place(tokenizer_dir, warmup)
            self.timeserver = TimeServer()
            self.clock_start = [self._measure_clock(k) for k in range(self.n)]
        except BaseException:
            self._release()
            raise

    def _place(self, tokenizer_dir: str | None, warmup: int) -> None:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        ray = self.ray
        fit = [n for n in alive_nodes(ray) if n.cpus >= self.processes]
        if len(fit) < self.n:
            raise GeneratorError(
                f"--generator-nodes {self.n}: the Ray cluster has {len(fit)} alive node(s) with "
                f">= {self.processes} CPU(s)"
            )
        self.pg = pg = placement_group([{"CPU": self.processes}] * self.n, strategy="STRICT_SPREAD")
        try:
            ray.get(pg.ready(), timeout=PLACEMENT_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise GeneratorError(
                f"could not place {self.n} load generators one per node ({self.processes} CPU(s) "
                f"each) within {PLACEMENT_TIMEOUT_S:g} s: CPUs held by other work?"
            ) from None
        actor_class = ray.remote(num_cpus=self.processes, max_concurrency=4)(GeneratorActor)
        tokenizer = None
        if tokenizer_dir and (Path(tokenizer_dir) / "tokenizer.json").is_file():
            tokenizer = ray.put((Path(tokenizer_dir) / "tokenizer.json").read_bytes())  # one copy for all nodes
        self.actors = [
            actor_class.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=k)
            ).remote()
            for k in range(self.n)
        ]
        per_node_warmup = -(-warmup // self.n) if warmup else 0
        setups = [
            actor.setup.remote(
                replace(self.options, max_concurrency=cap), share, self.processes, tokenizer, per_node_warmup
            )
            for actor, share, cap in zip(self.actors, self.shares, self.caps)
        ]
        try:
            self.nodes = ray.get(setups, timeout=SETUP_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - a node without benchctl, a client that cannot connect
            raise RuntimeError(
                f"load generators did not start: {type(e).__name__}: {' '.join(str(e).split())[:400]}"
            ) from None

    def _measure_clock(self, k: int) -> ClockOffset:
        """UDP round trips from the node to the driver's time server; Ray calls from the driver where none
        come back."""
        from ray.util import get_node_ip_address

        assert self.timeserver is not None
        ray, actor = self.ray, self.actors[k]
        found = ray.get(
            actor.measure_clock.remote(get_node_ip_address(), self.timeserver.port), timeout=CLOCK_TIMEOUT_S
        )
        if found is not None:
            return ClockOffset(**found)
        return measure_by_call(lambda: ray.get(actor.clock_now.remote(), timeout=CLOCK_TIMEOUT_S))

    # -- the run ------------------------------------------------------------------------------------------------

    def run(self, t0: float, emit: Callable[[dict], None]) -> DistributedResult:
        """Release every generator at driver time t0 and pass records to `emit` until all are done or lost (or
        close()); every request gets exactly one record."""
        ray = self.ray
        with self._lock:
            self._running, self._emit, self._t0 = True, emit, t0
        refs: dict[Any, int] = {}
        ended = False
        try:
            for k, actor in enumerate(self.actors):
                clock = self.clock_start[k]
                actor.start.remote(t0 + clock.offset_s, self._tag(k))
                refs[actor.next_batch.remote(WAIT_S)] = k
            while refs and not self._closed:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.2)
                if self._closed:
                    break
                for ref in ready:
                    k = refs.pop(ref)
                    try:
                        batch, done = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - RayActorError (node or process gone), a task error
                        self._lost(k, e)
                        continue
                    self._take(k, batch)
                    if done is not None:
                        self._done[k] = done
                    else:
                        refs[self.actors[k].next_batch.remote(WAIT_S)] = k
            if not self._closed and not self._aborting:
                for k in range(self.n):
                    if k not in self._died:
                        try:
                            self.clock_end[k] = self._measure_clock(k)
                        except Exception:  # noqa: BLE001 - lost after its last record: the start's bound stands
                            pass
            ended = True
        finally:
            with self._lock:
                self._running = False
                if ended:
                    self._settle()
            self._run_over.set()
        return self.result()

    def _tag(self, k: int) -> dict:
        """What each record of node k carries in extra.generator."""
        clock = self.clock_start[k]
        return {
            "node": self.nodes[k]["node_id"],
            "ip": self.nodes[k]["ip"],
            "index": k,
            "clock_offset_s": clock.offset_s,
            "clock_uncertainty_s": clock.uncertainty_s,
        }

    def _take(self, k: int, batch: list[dict]) -> None:
        assert self._emit is not None
        for record in batch:
            if self.pending[k].pop(record["request_id"], None) is None:
                continue
            if record.get("start_s") is not None:
                self._span_s[0] = min(self._span_s[0], record["start_s"])
            if record.get("finish_s") is not None and record.get("error") is None:
                self._span_s[1] = max(self._span_s[1], record["finish_s"])
            self._emit(record)

    def _lost(self, k: int, error: BaseException) -> None:
        """Generator k is gone: its requests without a record are failed now, naming the node and the time."""
        if self._closed:
            return
        at_s = time.monotonic() - self._t0
        node = self.nodes[k]
        gone = not any(n.node_id == node["node_id"] for n in alive_nodes(self.ray))
        what = (
            f"node {short(node['node_id'])} ({node['ip']}) died"
            if gone
            else f"the load generator on node {short(node['node_id'])} ({node['ip']}) died"
        )
        self._died[k] = f"{what} {at_s:.2f} s into the run ({type(error).__name__})"
        self._died_at_s[k] = at_s
        self._fail_pending(k, f"{self._died[k]}: no record came back for this request", "generator_node_died")

    def _fail_pending(self, k: int, reason: str, kind: str) -> None:
        from benchctl.serving.client import LoadClient

        assert self._emit is not None
        records = LoadClient(self.options)  # only to build the records of requests no generator recorded
        for spec in self.pending[k].values():
            self._emit(records.unsent_record(spec, self._t0, reason, kind))
        self.pending[k].clear()

    def _settle(self) -> None:
        """Once, after the generators are done, lost or closed: a failed record for every request left."""
        if self._settled or self._emit is None:
            return
        self._settled = True
        for k in range(self.n):
            if not self.pending[k]:
                continue
            if k not in self._done or self._aborting:
                self._fail_pending(k, f"interrupted: {self._reason}", "interrupted")
            else:  # the generator finished without recording them: a client bug, but every request is accounted for
                self._fail_pending(k, "client error: the load generator sent no record", "client_error")

    def result(self) -> DistributedResult:
        done = self._done.values()
        return DistributedResult(
            peak_in_flight=sum(d["peak_in_flight"] for d in done),
            died=[self._died[k] for k in sorted(self._died)],
            cpu_s=sum(d["cpu_s"] for d in done),
            generators=self.summary(),
        )

    def summary(self) -> dict:
        """Per node and overall: where it ran, its clock, its share of the schedule and of the cap."""
        nodes, bounds = [], []
        for k in range(self.n):
            start, end = self.clock_start[k], self.clock_end.get(k)
            bound = error_bound_s(start, end)
            if k not in self._died:
                bounds.append(bound)
            done = self._done.get(k, {})
            nodes.append(
                {
                    "node": self.nodes[k]["node_id"],
                    "ip": self.nodes[k]["ip"],
                    "hostname": self.nodes[k]["hostname"],
                    "benchctl": self.nodes[k]["benchctl_version"],
                    "requests": len(self.shares[k]),
                    "max_concurrency": self.caps[k],
                    "processes": self.nodes[k]["processes"],
                    "peak_in_flight": done.get("peak_in_flight"),
                    "cpu_s": done.get("cpu_s"),
                    "client_processes_died": done.get("died") or [],
                    "clock": {
                        "method": start.method,
                        "offset_ms": start.offset_s * 1e3,
                        "uncertainty_ms": start.uncertainty_s * 1e3,
                        "drift_ms": (end.offset_s - start.offset_s) * 1e3 if end else None,
                        "error_bound_ms": bound * 1e3,
                    },
                    "died_at_s": self._died_at_s.get(k),
                    "died": self._died.get(k),
                }
            )
        worst = max(bounds or [error_bound_s(c, None) for c in self.clock_start] or [0.0])
        span = self._span_s[1] - self._span_s[0]
        cap = self.options.max_concurrency
        return {
            "nodes_requested": self.requested,
            "nodes": self.n,
            "generators": nodes,
            "died": [self._died[k] for k in sorted(self._died)],
            "max_concurrency_split": self.caps if cap else None,
            "max_concurrency_note": (
                f"the cap of {cap} is split {self.caps} over the nodes: never exceeded, "
                f"but a slot free on one node cannot serve another, so it can be under-used"
                if cap and self.n > 1
                else None
            ),
            "clock": {
                "worst_error_bound_ms": worst * 1e3,
                "duration_error_pct": 100 * 2 * worst / span if span > 0 else None,
                "distorts": DISTORTED,
            },
        }

    # -- ending -------------------------------------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Send nothing more (the server is gone); unsent requests come back as failed records with `reason`."""
        for k, actor in enumerate(self.actors):
            if k not in self._died and k not in self._done:
                actor.stop.remote(reason)

    def interrupt(self, reason: str) -> None:
        """As LoadClient.interrupt (a launched server's engine died): send nothing more, cut off what is in flight."""
        for k, actor in enumerate(self.actors):
            if k not in self._died and k not in self._done:
                actor.abort.remote(reason)

    def close(self, reason: str = "run interrupted") -> None:
        """End the generators (after run() returned, or to stop it early: every request still gets a record)
        and give their nodes' CPUs back."""
        if self._closed:
            return
        with self._lock:
            running = self._running
            if not self._settled:
                self._reason, self._aborting = reason, True
        if running and not self._settled:
            for k, actor in enumerate(self.actors):
                if k not in self._died and k not in self._done:
                    actor.abort.remote(reason)
            self._run_over.wait(CLOSE_GRACE_S)  # run() collects the cut-off records and the generators' ends
        with self._lock:
            self._closed = True
            if not self._running:
                self._settle()
        if running:
            self._run_over.wait(1.0)
        self._release()

    def _release(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone with its node
                pass
        if self.pg is not None:
            remove_placement_group(self.pg)
            self.pg = None
        if self.timeserver is not None:
            self.timeserver.close()
            self.timeserver = None
