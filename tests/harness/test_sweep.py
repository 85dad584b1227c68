"""Sweeps: the cell matrix, spec validation, local and Ray executors, saturation search."""

from __future__ import annotations

import json
import math

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
    spec = sw.spec_from_dict({"backends": ["a", "b"], "request_rates": ["inf", 2], "max_concurrency": [None, 4],
                              "engine_args": {"kv_layout": ["paged", "contiguous"]}, "repetitions": 3,
                              "fixed_engine_args": {"block_size": 16}})
    cells = sw.cells(spec)
    assert len(cells) == 2 * 2 * 2 * 2 * 3
    assert {c.index for c in cells} == set(range(48))
    assert {(c.backend, c.engine_args["kv_layout"]) for c in cells} == {
        (b, k) for b in "ab" for k in ("paged", "contiguous")}
    assert all(c.engine_args["block_size"] == "16" for c in cells)
    assert math.isinf(cells[0].request_rate)
    assert [c.repetition for c in cells] == [r for r in range(3) for _ in range(16)]  # round-robin
    assert [c.label().removesuffix(" rep=0") for c in cells[:16]] == [
        c.label().removesuffix(" rep=2") for c in cells[32:]]


@pytest.mark.parametrize("bad, message", [
    ({"backend": ["x"]}, "unknown keys"),
    ({"repetitions": 0}, "repetitions"),
    ({"workload": {"num_prompt": 3}}, "unknown workload options"),
    ({"request_rates": []}, "must not be empty"),
])
def test_bad_specs_are_refused(bad, message):
    with pytest.raises(sw.SweepSpecError, match=message):
        sw.spec_from_dict(bad)


def test_local_sweep_writes_an_index_of_run_folders(tmp_path, fake_backend):
    spec = sw.spec_from_dict({"backends": ["fake"], "request_rates": ["inf", 50],
                              "engine_args": {"step_ms": ["10", "20"]}, "workload": WORKLOAD})
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
    spec.write_text("backends: [fake]\nrequest_rates: [inf]\nrepetitions: 2\n"
                    f"workload: {json.dumps(WORKLOAD)}\n")
    assert main(["sweep", str(spec), "--output-dir", str(tmp_path / "out")]) == 0
    (sweep_dir,) = (tmp_path / "out").iterdir()
    assert len(store.load_run_index(sweep_dir)["cells"]) == 2
    assert "rep=1" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["sweep", str(tmp_path / "nope.yaml")]) == 2
    assert main(["sweep", "--executor", "slurm", "--backend", "fake"]) == 2


def test_saturation_bisects_to_the_slo_boundary(tmp_path, monkeypatch):
    """A synthetic engine meets the SLOs below 6 req/s: the search brackets 6."""
    def run_cell(config):
        rate = config.workload.request_rate
        run_dir = store.new_run_dir(config.output_dir, "probe")
        good = 10 if rate < 6 else 2
        store.write_json_atomic(run_dir / "run.json", {"run_id": run_dir.name, "status": "completed",
                                                       "summary": {"num_requests": 10, "good_requests": good}})
        return run_dir

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
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"BENCHCTL_BACKENDS": FAKE}})
    try:
        spec = sw.spec_from_dict({"backends": ["fake"], "engine_args": {"step_ms": ["5", "15"]},
                                  "workload": WORKLOAD})
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
    spec = sw.spec_from_dict({"backends": ["a"], "fixed_engine_args": {"block_size": 16},
                              "variants": {"baseline": {}, "per-seq sampler": {"sampler": "per_seq"},
                                           "stack": {"sampler": "per_seq", "block_size": 32}}, "repetitions": 2})
    cells = sw.cells(spec)
    # round-robin: every variant once, then again (a drifting machine slows a round, not one variant)
    assert [(c.variant, c.repetition) for c in cells] == [
        ("baseline", 0), ("per-seq sampler", 0), ("stack", 0), ("baseline", 1), ("per-seq sampler", 1), ("stack", 1)]
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
    spec.write_text(json.dumps({"backends": ["fake"], "workload": WORKLOAD,
                                "variants": {"base": {"step_ms": "10"}, "slow": {"step_ms": "20"}}}))
    assert main(["sweep", str(spec), "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1.00x" in out and "slow" in out
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    index = store.load_run_index(sweep_dir)
    runs = [store.load_run(sweep_dir / c["run"]) for c in index["cells"]]
    ratio = runs[1]["summary"]["output_tok_s"] / runs[0]["summary"]["output_tok_s"]
    assert f"{ratio:.2f}x" in out and ratio < 0.9  # twice the step time: clearly slower
