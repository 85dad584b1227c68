"""Sweeps: the cell matrix, spec validation, local and Ray executors, saturation search."""

from __future__ import annotations

import json
import math
import time

import pytest

from benchctl import store
from benchctl import sweep as sw
from benchctl.cli import main

FAKE = "fake=tests.harness.sweep_fakes:BACKEND"
WORKLOAD = {"dataset": "random", "num_prompts": 4, "random_input_len": 8, "random_output_len": 4}


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setenv("BENCHCTL_BACKENDS", FAKE)


def test_cells_are_the_full_matrix():
    spec = sw.spec_from_dict(
        {
            "backends": ["a", "b"],
            "request_rates": ["inf", 2],
            "max_concurrency": [None, 4],
            "engine_args": {"kv_layout": ["paged", "contiguous"]},
            "repetitions": 3,
            "fixed_engine_args": {"block_size": 16},
        }
    )
    cells = sw.cells(spec)
    assert len(cells) == 2 * 2 * 2 * 2 * 3
    assert {c.index for c in cells} == set(range(48))
    assert {(c.backend, c.engine_args["kv_layout"]) for c in cells} == {
        (b, k) for b in "ab" for k in ("paged", "contiguous")
    }
    assert all(c.engine_args["block_size"] == "16" for c in cells)
    assert math.isinf(cells[0].request_rate)
    assert [c.repetition for c in cells] == [r for r in range(3) for _ in range(16)]  # round-robin
    assert [c.label().removesuffix(" rep=0") for c in cells[:16]] == [
        c.label().removesuffix(" rep=2") for c in cells[32:]
    ]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"backend": ["x"]}, "unknown keys"),
        ({"repetitions": 0}, "repetitions"),
        ({"workload": {"num_prompt": 3}}, "unknown workload options"),
        ({"request_rates": []}, "must not be empty"),
        # fields of the wrong type: each was used as it came (a string iterated letter by letter, "3" < 1 a TypeError)
        ({"backends": "reference"}, "backends must be a list, e.g. backends: \\[reference\\]"),
        ({"backends": [1]}, "backends must be backend names"),
        ({"request_rates": "inf"}, "request_rates must be a list"),
        ({"request_rates": ["2"]}, "request_rates entries must be positive numbers or inf"),
        ({"request_rates": [-1]}, "request_rates entries"),
        ({"max_concurrency": [0]}, "max_concurrency entries"),
        ({"max_concurrency": 4}, "max_concurrency must be a list"),
        ({"repetitions": "3"}, "repetitions must be an integer"),
        ({"repetitions": True}, "repetitions must be an integer"),
        ({"engine_args": ["kv_layout"]}, "engine_args must be a mapping"),
        ({"engine_args": {"kv_layout": [{"a": 1}]}}, "must be a string or a number"),
        ({"engine_args": {"kv_layout": []}}, "has no values"),
        ({"fixed_engine_args": "block_size=16"}, "fixed_engine_args must be a mapping"),
        ({"variants": ["a", "b"]}, "variants must be a mapping"),
        ({"model": 135}, "model must be a name"),
        ({"mode": "online"}, "mode must be one of offline, serving"),
        ({"batch_size": 1.5}, "batch_size must be an integer"),
        ({"slos_ms": {"ttft": "100"}}, "slos_ms must map"),
        ({"slos_ms": {"latency": 100}}, "slos_ms must map"),
        ({"workload": {"num_prompts": "4"}}, "workload.num_prompts must be an integer or null, got str"),
        ({"workload": {"random_range_ratio": "0.5"}}, "workload.random_range_ratio must be a number"),
        ({"workload": {"max_turns": 2.5}}, "workload.max_turns must be an integer or null"),
        ({"workload": "random"}, "workload must be a mapping"),
        ({"cell_timeout_s": "60"}, "cell_timeout_s must be a positive number"),
        ({"cell_timeout_s": 0}, "cell_timeout_s must be a positive number"),
    ],
)
def test_bad_specs_are_refused(bad, message):
    with pytest.raises(sw.SweepSpecError, match=message):
        sw.spec_from_dict(bad)


def test_typed_values_are_kept_or_converted():
    spec = sw.spec_from_dict(
        {
            "request_rates": [2, 0.5, "inf"],
            "max_concurrency": [None, 8],
            "engine_args": {"cuda_graphs": [True, False], "block_size": 16},
            "workload": {"num_prompts": 4, "random_range_ratio": 0, "max_turns": None},
            "cell_timeout_s": 30,
        }
    )
    assert spec.request_rates[:2] == [2.0, 0.5] and math.isinf(spec.request_rates[2])
    assert spec.engine_args == {"cuda_graphs": ["true", "false"], "block_size": ["16"]}
    assert spec.cell_timeout_s == 30.0 and spec.max_concurrency == [None, 8]


def test_sweep_cli_refuses_a_mistyped_spec_in_one_line(tmp_path, fake_backend, capsys):
    spec = tmp_path / "sweep.yaml"
    spec.write_text("backends: reference\n")
    assert main(["sweep", str(spec), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "backends must be a list" in err
    assert not (tmp_path / "out").exists()  # refused before anything started


def test_local_sweep_writes_an_index_of_run_folders(tmp_path, fake_backend):
    spec = sw.spec_from_dict(
        {
            "backends": ["fake"],
            "request_rates": ["inf", 50],
            "engine_args": {"step_ms": ["10", "20"]},
            "workload": WORKLOAD,
        }
    )
    sweep_dir = sw.run_sweep(spec, tmp_path, sw.LocalExecutor())
    index = store.load_run_index(sweep_dir)
    assert [c["index"] for c in index["cells"]] == [0, 1, 2, 3]
    assert all(c["status"] == "completed" for c in index["cells"])
    for cell in index["cells"]:
        run = store.load_run(sweep_dir / cell["run"])
        assert run["config"]["engine_args"]["step_ms"] == cell["engine_args"]["step_ms"]
        # the fake engine's TPOT is exactly its step time: the sweep really passed the option through
        assert run["summary"]["tpot_s"]["mean"] == pytest.approx(int(cell["engine_args"]["step_ms"]) / 1000)
        rate = run["workload"]["schedule"]["request_rate"]
        assert rate == cell["request_rate"]


def test_sweep_cli_from_a_yaml_spec(tmp_path, fake_backend, capsys):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"backends: [fake]\nrequest_rates: [inf]\nrepetitions: 2\nworkload: {json.dumps(WORKLOAD)}\n")
    assert main(["sweep", str(spec), "--output-dir", str(tmp_path / "out")]) == 0
    (sweep_dir,) = (tmp_path / "out").iterdir()
    assert len(store.load_run_index(sweep_dir)["cells"]) == 2
    assert "rep=1" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["sweep", str(tmp_path / "nope.yaml")]) == 2
    assert main(["sweep", "--executor", "slurm", "--backend", "fake"]) == 2


def test_saturation_bisects_to_the_slo_boundary(tmp_path, monkeypatch):
    """A synthetic engine meets the SLOs below 6 req/s: the search brackets 6."""

    def run_cell(config, timeout_s):
        rate = config.workload.request_rate
        run_dir = store.new_run_dir(config.output_dir, "probe")
        good = 10 if rate < 6 else 2
        store.write_json_atomic(
            run_dir / "run.json",
            {"run_id": run_dir.name, "status": "completed", "summary": {"num_requests": 10, "good_requests": good}},
        )
        return {"run_dir": run_dir, "status": "completed", "error": None}

    spec = sw.spec_from_dict({"backends": ["fake"], "slos_ms": {"ttft": 100}, "workload": WORKLOAD})
    result = sw.saturate(spec, tmp_path, 1.0, 32.0, target=0.9, iterations=8, run_cell=run_cell)
    low, high = result["bracket"]
    assert low < 6 <= high and high / low < 1.05
    assert result["saturation_rate"] == low
    assert [p["ok"] for p in result["probes"]][:2] == [True, False]
    with pytest.raises(sw.SweepSpecError, match="SLOs"):
        sw.saturate(sw.spec_from_dict({}), tmp_path, 1, 2)


def test_ray_executor_runs_cells_as_tasks(tmp_path, fake_backend):
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"BENCHCTL_BACKENDS": FAKE}}
    )
    try:
        spec = sw.spec_from_dict({"backends": ["fake"], "engine_args": {"step_ms": ["5", "15"]}, "workload": WORKLOAD})
        sweep_dir = sw.run_sweep(spec, tmp_path, sw.RayExecutor(None))
        index = store.load_run_index(sweep_dir)
        assert sorted(c["engine_args"]["step_ms"] for c in index["cells"]) == ["15", "5"]
        for cell in index["cells"]:
            run_dir = sweep_dir / cell["run"]
            assert {"run.json", "requests.jsonl", "requests.parquet"} <= {p.name for p in run_dir.iterdir()}
            assert store.load_run(run_dir)["summary"]["completed"] == 4
    finally:
        ray.shutdown()


def test_variants_are_one_cell_each_on_top_of_the_fixed_args():
    spec = sw.spec_from_dict(
        {
            "backends": ["a"],
            "fixed_engine_args": {"block_size": 16},
            "variants": {
                "baseline": {},
                "per-seq sampler": {"sampler": "per_seq"},
                "stack": {"sampler": "per_seq", "block_size": 32},
            },
            "repetitions": 2,
        }
    )
    cells = sw.cells(spec)
    # round-robin: every variant once, then again (a drifting machine slows a round, not one variant)
    assert [(c.variant, c.repetition) for c in cells] == [
        ("baseline", 0),
        ("per-seq sampler", 0),
        ("stack", 0),
        ("baseline", 1),
        ("per-seq sampler", 1),
        ("stack", 1),
    ]
    assert [c.index for c in cells] == list(range(6))
    assert cells[0].engine_args == cells[3].engine_args == {"block_size": "16"}
    assert cells[1].engine_args == {"block_size": "16", "sampler": "per_seq"}
    assert cells[2].engine_args == {"block_size": "32", "sampler": "per_seq"}
    assert "per-seq sampler" in cells[1].label()
    with pytest.raises(sw.SweepSpecError, match="not both"):
        sw.spec_from_dict({"variants": {"a": {}}, "engine_args": {"x": [1, 2]}})
    with pytest.raises(sw.SweepSpecError, match="variants must map a name"):
        sw.spec_from_dict({"variants": {"a": "sampler=per_seq"}})


def test_the_bundled_w_ablation_spec_loads(tmp_path):
    from pathlib import Path

    spec = sw.load_spec(Path(__file__).resolve().parents[2] / "examples" / "sweeps" / "w-ablations.yaml")
    assert spec.workload["num_prompts"] == 64 and list(spec.variants)[0] == "baseline"
    lo = spec.workload["random_input_len"] * (1 - spec.workload["random_range_ratio"])
    hi = spec.workload["random_input_len"] * (1 + spec.workload["random_range_ratio"])
    assert round(lo) == 32 and round(hi) == 256
    from backends.reference import ENGINE_ARGS

    assert {k for args in spec.variants.values() for k in args} <= set(ENGINE_ARGS)


def test_variant_sweep_prints_the_change_against_the_first_cell(tmp_path, fake_backend, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        json.dumps(
            {
                "backends": ["fake"],
                "workload": WORKLOAD,
                "variants": {"base": {"step_ms": "10"}, "slow": {"step_ms": "20"}},
            }
        )
    )
    assert main(["sweep", str(spec), "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1.00x" in out and "slow" in out
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    index = store.load_run_index(sweep_dir)
    runs = [store.load_run(sweep_dir / c["run"]) for c in index["cells"]]
    ratio = runs[1]["summary"]["output_tok_s"] / runs[0]["summary"]["output_tok_s"]
    assert f"{ratio:.2f}x" in out and ratio < 0.9  # twice the step time: clearly slower


def _table_text(table) -> str:
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(table)
    return console.export_text()


def test_a_failed_cell_is_marked_and_the_sweep_goes_on(tmp_path, fake_backend):
    spec = sw.spec_from_dict(
        {
            "backends": ["fake"],
            "workload": WORKLOAD,
            "repetitions": 2,
            "variants": {"base": {"step_ms": "10"}, "broken": {"fail": "1"}},
        }
    )
    sweep_dir = sw.run_sweep(spec, tmp_path, sw.LocalExecutor())
    index = store.load_run_index(sweep_dir)
    assert [c["status"] for c in index["cells"]] == ["completed", "failed"] * 2
    broken = index["cells"][1]
    assert "told to fail" in broken["error"]
    assert store.load_run(sweep_dir / broken["run"])["status"] == "failed"
    text = _table_text(sw.results_table(sweep_dir))  # a failed run's null rates crashed the table (float(None))
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "rep=" in line}
    assert "failed: " in rows["fake rate=inf conc=None broken rep=0"]
    assert "1.00x" in rows["fake rate=inf conc=None base rep=1"]
    assert "2 of 4 cells did not complete" in text


def test_a_cell_over_its_time_limit_is_killed_whole_and_marked(tmp_path, fake_backend):
    import psutil

    pid_file = tmp_path / "worker.pid"
    spec = sw.spec_from_dict(
        {
            "backends": ["fake"],
            "workload": WORKLOAD,
            "cell_timeout_s": 4,
            "variants": {"stuck": {"hang_s": "600", "pid_file": str(pid_file)}, "fine": {"step_ms": "10"}},
        }
    )
    t0 = time.monotonic()
    sweep_dir = sw.run_sweep(spec, tmp_path / "out", sw.LocalExecutor())
    assert time.monotonic() - t0 < 60  # not the 600 s the engine would have hung
    stuck, fine = store.load_run_index(sweep_dir)["cells"]
    assert stuck["status"] == "timeout" and "cell_timeout_s=4" in stuck["error"]
    assert fine["status"] == "completed"  # the sweep went on
    worker_pid = int(pid_file.read_text())
    # the engine's worker (its own process group, a grandchild of the sweep) is gone with its cell
    assert not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE
    if stuck["run"]:
        assert store.load_run(sweep_dir / stuck["run"])["status"] == "failed"  # never left at `running`
    assert "timeout: cell still running" in _table_text(sw.results_table(sweep_dir))


class _FakeRay:
    """Ray's driver calls, in-process: a task listed in `crash` raises from get(), as a lost worker does."""

    def __init__(self, crash: set[int]):
        self.crash, self.cancelled, self.refs = crash, [], []

    def remote(self, **resources):
        def wrap(fn):
            class Task:
                @staticmethod
                def remote(config, timeout_s):
                    self.refs.append((len(self.refs), fn, config, timeout_s))
                    return len(self.refs) - 1

            return Task

        return wrap

    def wait(self, refs, num_returns):
        return [refs[0]], refs[1:]

    def get(self, ref):
        i, fn, config, timeout_s = self.refs[ref]
        if i in self.crash:
            raise RuntimeError("The worker died unexpectedly while executing this task")
        return fn(config, timeout_s)

    def cancel(self, ref, force=False):
        self.cancelled.append(ref)


def test_a_ray_task_failure_marks_its_cell_and_cancels_nothing(tmp_path, fake_backend):
    ray = _FakeRay(crash={1})
    spec = sw.spec_from_dict(
        {"backends": ["fake"], "engine_args": {"step_ms": ["5", "15", "25"]}, "workload": WORKLOAD}
    )
    sweep_dir = sw.run_sweep(spec, tmp_path, sw.RayExecutor(None, ray_module=ray))
    cells = store.load_run_index(sweep_dir)["cells"]
    assert [c["status"] for c in cells] == ["completed", "failed", "completed"]
    assert "ray task failed" in cells[1]["error"] and cells[1]["run"] is None
    assert ray.cancelled == []
    assert store.load_run(sweep_dir / cells[2]["run"])["summary"]["completed"] == 4
    assert "failed: ray task failed" in _table_text(sw.results_table(sweep_dir))


def test_interrupting_a_ray_sweep_cancels_the_pending_tasks(tmp_path, fake_backend):
    ray = _FakeRay(crash=set())
    spec = sw.spec_from_dict(
        {"backends": ["fake"], "engine_args": {"step_ms": ["5", "15", "25"]}, "workload": WORKLOAD}
    )

    def stop(cell, result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(spec, tmp_path, sw.RayExecutor(None, ray_module=ray), on_cell=stop)
    assert ray.cancelled == [1, 2]


def test_sweep_cli_prints_failed_cells_and_takes_a_cell_timeout(tmp_path, fake_backend, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        json.dumps(
            {
                "backends": ["fake"],
                "workload": WORKLOAD,
                "variants": {"base": {"step_ms": "10"}, "broken": {"fail": "1"}},
            }
        )
    )
    assert main(["sweep", str(spec), "--output-dir", str(tmp_path / "out"), "--cell-timeout-s", "300"]) == 0
    out = capsys.readouterr().out
    assert "failed: " in out and "1 of 2 cells did not complete" in out
    (sweep_dir,) = (tmp_path / "out").iterdir()
    assert store.load_run_index(sweep_dir)["spec"]["cell_timeout_s"] == 300
    assert main(["sweep", str(spec), "--cell-timeout-s", "-1"]) == 2
