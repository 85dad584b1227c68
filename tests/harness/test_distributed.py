"""Load generators on a Ray cluster and sweep cells one per node, for real: ray.cluster_utils.Cluster starts
several raylets on this machine (each its own node, with its own resources), one cluster for the module.

All nodes share this machine's time.monotonic, so the true clock offset of every node is 0: a measured offset
whose bound does not contain 0 is wrong, and records converted to the driver's timeline must match the fake
server's own send times as closely as a one-host client's do.
"""

from __future__ import annotations

import json
import statistics
import threading
import time

import numpy as np
import pytest

from benchctl import metrics, store
from benchctl import sweep as sw
from benchctl.cli import main
from benchctl.distributed import DistributedClient, GeneratorError, check_generators, parse_load_generators
from benchctl.distributed.cells import NodeExecutor
from benchctl.distributed.clock import ClockOffset, TimeServer, best_sample, error_bound_s, measure_udp
from benchctl.run.config import Progress
from benchctl.run.sink import RecordPump, RecordSink
from benchctl.serving.bench import client_lag_s
from benchctl.serving.client import ClientOptions
from benchctl.sweep.cell import _run_cell_files
from tests.harness.fakes_serving import FakeServerProcess, close, fake_requests

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

FAKE = "fake=tests.harness.sweep_fakes:BACKEND"
TTFT_MS, ITL_MS = 100.0, 10.0


@pytest.fixture(scope="module")
def cluster():
    # 2 CPUs a node: Ray alone would run two 1-CPU sweep cells on one node at once
    c = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"gen0": 1}, "include_dashboard": False}
    )
    nodes = [c.add_node(num_cpus=2, resources={f"gen{i}": 1}) for i in (1, 2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, runtime_env={"env_vars": {"BENCHCTL_BACKENDS": FAKE}})
    c.workers = nodes
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def timed_server():
    with FakeServerProcess("--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS), "--spin-us", "300") as server:
        yield server


def _drive(base_url, requests, tmp_path, nodes=3, max_concurrency=None, during=None, warmup=0, before=None):
    """DistributedClient as a serving run drives it; (rows, t0, result, arrival times on disk, client)."""
    sink_times: list[float] = []
    sink = RecordSink(
        tmp_path / "requests.jsonl", Progress(), on_record=lambda row: sink_times.append(time.monotonic())
    )
    pump = RecordPump(sink)
    options = ClientOptions(
        base_url=base_url, model_name="fake-model", request_timeout_s=30.0, max_concurrency=max_concurrency
    )
    client = DistributedClient(options, requests, "ray", nodes, warmup=warmup)
    if before is not None:
        before(client)
    try:
        t0 = time.monotonic() + 0.3
        if during is not None:
            threading.Thread(target=during, args=(client, t0), daemon=True).start()
        result = client.run(t0, pump.put)
    finally:
        client.close()
        pump.close()
        sink.close()
    return sink.rows, t0, result, sink_times, client


def _node_of(row):
    return row["extra"]["generator"]["node"]


def test_three_nodes_give_the_one_host_clients_accuracy_and_rate(cluster, timed_server, tmp_path):
    rate = 50.0
    requests = fake_requests(210, 8, rate=rate, seed=3)
    rows, t0, result, sink_times, client = _drive(timed_server.base_url, requests, tmp_path, warmup=12)
    assert len(rows) == 210 and all(r["error"] is None and r["output_tokens"] == 8 for r in rows)
    # one generator per node, on three different nodes (each node's own resource tells them apart)
    resources = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    by_node = {}
    for r in rows:
        by_node.setdefault(_node_of(r), []).append(r)
    assert len(by_node) == 3 and set(by_node) <= set(resources)
    assert sorted(next(k for k in resources[n] if k.startswith("gen")) for n in by_node) == ["gen0", "gen1", "gen2"]
    assert sorted(len(v) for v in by_node.values()) == [70, 70, 70]  # request i to generator i % 3
    # the clock: every node's true offset is 0 here, so 0 must lie within each measured offset +- its bound
    for r in rows:
        g = r["extra"]["generator"]
        assert abs(g["clock_offset_s"]) <= g["clock_uncertainty_s"] < 0.002, g
    clock = result.generators["clock"]
    assert 0 < clock["worst_error_bound_ms"] < 2.0 and "not TTFT" in clock["distorts"]
    # the achieved arrival rate of the merged records is the schedule's (absolute times on every node)
    starts = np.sort([r["start_s"] for r in rows])
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    scheduled = (len(requests) - 1) / (requests[-1].arrival_s - requests[0].arrival_s)
    assert abs(achieved / scheduled - 1) < 0.01, (achieved, scheduled)
    # TTFT/TPOT by the one-host client's bar (2 ms or 2 %), over the merged records (exact percentiles)
    summary = metrics.summarize(rows)
    assert close(summary["ttft_s"]["median"], TTFT_MS / 1000), summary["ttft_s"]
    assert close(summary["tpot_s"]["median"], ITL_MS / 1000), summary["tpot_s"]
    # against the server's own send times: converted to the driver's timeline, chunk stamps lag by < 2 ms
    lags = client_lag_s(rows, t0, timed_server.timings())
    assert len(lags) == 210 * 8 and 0 <= statistics.median(lags) < 0.002, statistics.median(lags)
    # records reach the sink (on disk) as they finish, not at the end: median delivery well under a second
    delays = sorted(t - (t0 + r["finish_s"]) for t, r in zip(sink_times, rows))
    assert delays[len(delays) // 2] < 0.5, delays[len(delays) // 2]
    assert sink_times[0] < t0 + requests[-1].arrival_s  # the first records were on disk before the last was sent
    assert result.died == [] and len(result.generators["generators"]) == 3
    # the nodes' CPUs are free again once the client is closed
    assert _wait_for(lambda: ray.available_resources().get("CPU", 0) == 6)


def test_max_concurrency_is_split_across_nodes_and_never_exceeded(cluster, timed_server, tmp_path):
    requests = fake_requests(30, 4, seed=5)  # all at t=0: every node fills its share of the cap
    rows, _, result, _, _ = _drive(timed_server.base_url, requests, tmp_path, max_concurrency=5)
    assert len(rows) == 30 and all(r["error"] is None for r in rows)
    gens = result.generators
    assert gens["max_concurrency_split"] == [2, 2, 1] and "under-used" in gens["max_concurrency_note"]
    assert [g["peak_in_flight"] for g in gens["generators"]] == [2, 2, 1]
    assert result.peak_in_flight == 5


def test_each_node_sends_at_the_driver_time_converted_to_its_clock(cluster, timed_server, tmp_path):
    # a node whose clock reads 0.4 s ahead of the driver's must send at its t0 + 0.4 s: 0.4 s later in true time
    requests = fake_requests(8, 2, rate=8.0, seed=2)

    def skew_node_0(client):
        start = client.clock_start[0]
        client.clock_start[0] = ClockOffset(0.4, start.uncertainty_s, start.rtt_s, start.samples, start.method)

    # a cap below the node count uses that many nodes, as --client-processes does
    rows, t0, result, _, client = _drive(
        timed_server.base_url, requests, tmp_path, max_concurrency=2, before=skew_node_0
    )
    assert result.generators["nodes"] == 2 and result.generators["nodes_requested"] == 3
    assert len(rows) == 8 and all(r["error"] is None for r in rows)
    truth = timed_server.timings()
    # the records' times are on the node's timeline: node t0 = driver t0 + the (claimed) offset
    late = {r["request_id"]: truth[r["request_id"]]["recv"] - (t0 + r["start_s"]) for r in rows}
    skewed = {s.request_id for s in client.shares[0]}
    assert all(0.4 <= late[i] < 0.41 for i in skewed), late
    assert all(0 <= late[i] < 0.01 for i in late if i not in skewed), late
    assert {r["extra"]["generator"]["clock_offset_s"] for r in rows if r["request_id"] in skewed} == {0.4}


def test_too_few_nodes_is_a_user_error_before_the_run(cluster):
    with pytest.raises(GeneratorError, match="--generator-nodes 5: the Ray cluster has 3 alive node"):
        check_generators("ray", 5)
    with pytest.raises(GeneratorError, match=">= 4 CPU"):
        check_generators("ray", 1, client_processes=4)
    check_generators("ray", 3)


def test_benchctl_run_on_three_nodes_and_its_option_errors(cluster, timed_server, tmp_path, capsys):
    base = [
        "run",
        "--mode",
        "serving",
        "--backend",
        "openai",
        "--base-url",
        timed_server.base_url,
        "--dataset",
        "random",
        "--random-input-len",
        "8",
        "--random-output-len",
        "8",
        "--output-dir",
        str(tmp_path),
    ]
    assert main([*base, "--load-generators", "mpi"]) == 2
    assert main([*base, "--load-generators", "ray", "--generator-nodes", "5"]) == 2
    assert "--generator-nodes 5: the Ray cluster has 3 alive node" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before a run folder exists
    args = ["--num-prompts", "60", "--request-rate", "30", "--load-generators", "ray", "--generator-nodes", "3"]
    assert main([*base, *args, "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["status"] == "completed" and run["summary"]["completed"] == 60
    gens = run["serving_stats"]["client_processes"]["load_generators"]
    assert gens["nodes"] == 3 and gens["died"] == [] and 0 < gens["clock"]["worst_error_bound_ms"] < 2.0
    rows = [json.loads(line) for line in (tmp_path / run["run_id"] / "requests.jsonl").read_text().splitlines()]
    assert len({r["extra"]["generator"]["node"] for r in rows}) == 3


def test_a_node_removed_mid_run_fails_only_its_unfinished_requests(cluster, timed_server, tmp_path):
    requests = fake_requests(120, 8, rate=30.0, seed=7)  # ~4 s
    head = ray.get_runtime_context().get_node_id()
    victim: dict = {}

    def kill_one(client, t0):
        time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))
        k = next(k for k, n in enumerate(client.nodes) if n["node_id"] != head)
        node = next(w for w in cluster.workers if w.node_id == client.nodes[k]["node_id"])
        victim.update(index=k, node=node.node_id, at_s=time.monotonic() - t0)
        cluster.remove_node(node)
        cluster.workers.remove(node)

    rows, t0, result, _, client = _drive(timed_server.base_url, requests, tmp_path, during=kill_one)
    assert len(rows) == 120 and len({r["request_id"] for r in rows}) == 120  # one record each
    dead = [r for r in rows if r["error"] is not None]
    assert dead and all(r["extra"]["error_kind"] == "generator_node_died" for r in dead)
    share = {s.request_id for s in client.shares[victim["index"]]}
    assert {r["request_id"] for r in dead} <= share  # the other nodes' requests all completed
    assert any(r["error"] is None for r in rows if r["request_id"] in share)  # what it sent back before is kept
    assert len(dead) < len(share)
    line = result.died[0]
    assert len(result.died) == 1 and victim["node"][:8] in line and "died" in line and "into the run" in line
    gen = result.generators["generators"][victim["index"]]
    died_at = gen["died_at_s"]
    assert victim["at_s"] <= died_at < victim["at_s"] + 5.0 and gen["died"] == line
    assert all(victim["node"][:8] in r["error"] and f"{died_at:.2f} s into the run" in r["error"] for r in dead)
    # the run went on: the survivors' requests scheduled after the death were sent and completed
    late = [r for r in rows if r["arrival_s"] > died_at + 0.5 and r["request_id"] not in share]
    assert late and all(r["error"] is None for r in late)


def test_a_sweep_of_four_cells_on_two_nodes_never_shares_a_node(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHCTL_BACKENDS", FAKE)
    _keep_nodes(cluster, 2)
    spec = sw.spec_from_dict(
        {
            "backends": ["fake"],
            "workload": {"dataset": "random", "num_prompts": 4, "random_input_len": 8, "random_output_len": 4},
            "variants": {
                "a": {"step_ms": "5"},
                "b": {"step_ms": "15"},
                "broken": {"fail": "1"},
                "c": {"step_ms": "10"},
            },
        }
    )
    # `benchctl sweep --executor ray`'s executor, on a cluster: one cell per node
    sweep_dir = sw.run_sweep(spec, tmp_path, sw.RayExecutor(None))
    cells = store.load_run_index(sweep_dir)["cells"]
    assert sorted(c["status"] for c in cells) == ["completed", "completed", "completed", "failed"]
    spans = {}
    for c in cells:
        if c["run"] is None:
            continue
        placement = json.loads((sweep_dir / c["run"] / "placement.json").read_text())
        spans.setdefault(placement["node"], []).append((placement["started_at"], placement["finished_at"]))
        if c["status"] == "completed":
            assert store.load_run(sweep_dir / c["run"])["summary"]["completed"] == 4  # copied to the driver
    assert len(spans) == 2  # both nodes used
    for intervals in spans.values():
        intervals.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(intervals, intervals[1:])), intervals


def test_ctrl_c_in_a_node_sweep_cancels_the_running_cell_and_starts_no_other(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHCTL_BACKENDS", FAKE)
    _keep_nodes(cluster, 2)  # one cell runs, one hangs, two wait
    pids = {name: tmp_path / f"{name}.pid" for name in ("hang", "c", "d")}
    variants = {"fast": {"step_ms": "5"}, **{name: {"hang_s": "60", "pid_file": str(p)} for name, p in pids.items()}}
    spec = sw.spec_from_dict(
        {
            "backends": ["fake"],
            "variants": variants,
            "workload": {"dataset": "random", "num_prompts": 2, "random_input_len": 8, "random_output_len": 2},
        }
    )
    seen = []

    def interrupt(cell, result):
        seen.append(cell)
        assert _wait_for(lambda: pids["hang"].is_file(), 30)  # the other node's cell is running
        raise KeyboardInterrupt

    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(spec, tmp_path / "out", NodeExecutor(ray, _run_cell_files), on_cell=interrupt)
    assert len(seen) == 1 and time.monotonic() - t < 40
    hung = int(pids["hang"].read_text())
    assert _wait_for(lambda: not _alive(hung), 15)  # the running cell's engine went with it
    assert not pids["c"].exists() and not pids["d"].exists()  # the pending cells never started
    assert _wait_for(lambda: ray.available_resources().get("CPU", 0) == 4)


def _keep_nodes(cluster, n: int) -> None:
    """The module's cluster down to n nodes (the node-death test already removed one; alone, this removes it)."""
    while len(cluster.workers) + 1 > n:
        cluster.remove_node(cluster.workers.pop())
    assert len([node for node in ray.nodes() if node["Alive"]]) == n


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(check, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# -- without a cluster ------------------------------------------------------------------------------------------


def test_minimum_rtt_sample_gives_the_offset_and_its_bound():
    # the node asks: t1, t3 on the node's clock (driver = node - 5 s); the slow sample's asymmetry is ignored
    samples = [(100.0, 95.0 + 0.004, 100.010), (200.0, 195.0005, 200.001)]
    best = best_sample(samples, asker_is_node=True, method="udp")
    assert best.offset_s == pytest.approx(5.0, abs=1e-9) and best.uncertainty_s == pytest.approx(0.0005)
    # the driver asks (Ray calls): t2 on the node's clock
    best = best_sample([(10.0, 15.0006, 10.001)], asker_is_node=False, method="ray")
    assert best.offset_s == pytest.approx(5.0001) and best.rtt_s == pytest.approx(0.001)
    end = best_sample([(20.0, 25.0009, 20.001)], asker_is_node=False, method="ray")
    assert error_bound_s(best, end) == pytest.approx(0.0005 + 0.0003)  # bound plus the drift seen by the end


def test_udp_clock_on_one_host_finds_zero_offset_within_its_bound():
    server = TimeServer("127.0.0.1")
    try:
        offset = measure_udp("127.0.0.1", server.port)
    finally:
        server.close()
    assert offset is not None and offset.samples >= 16
    assert abs(offset.offset_s) <= offset.uncertainty_s < 0.002, offset
    assert measure_udp("127.0.0.1", server.port, samples=4, timeout_s=0.05) is None  # nobody answers: fallback


@pytest.mark.parametrize("value, error", [("mpi", "must be ray or ray:ADDRESS"), ("ray:", "must be ray")])
def test_bad_load_generator_values_are_one_line(value, error):
    with pytest.raises(GeneratorError, match=error):
        parse_load_generators(value)


def test_generator_option_checks():
    assert parse_load_generators("ray") is None and parse_load_generators("ray:auto") == "auto"
    assert parse_load_generators("ray:ray://10.0.0.1:10001") == "ray://10.0.0.1:10001"
    with pytest.raises(GeneratorError, match="--generator-nodes needs --load-generators"):
        check_generators(None, 3)
    with pytest.raises(GeneratorError, match="--generator-nodes must be >= 1"):
        check_generators("ray", 0)
