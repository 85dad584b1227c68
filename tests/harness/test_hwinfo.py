"""benchctl hwinfo: torch measurements, the cache the report reads, model size and the compute ceiling."""

from __future__ import annotations

import json
import math

import pytest
from report_fixtures import MODEL_TENSORS, make_model, write_safetensors

from benchctl import hwinfo
from benchctl.cli import main


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHCTL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def small(monkeypatch):
    """Measure small tensors: the tests check what is measured, not how fast this machine is."""
    monkeypatch.setattr(hwinfo, "BANDWIDTH_BYTES", 8 * 2**20)
    monkeypatch.setattr(hwinfo, "GEMM_SIZE", 128)


def test_measure_reports_bandwidth_and_gemm_flops(small):
    pytest.importorskip("torch")
    import torch

    threads_before = torch.get_num_threads()
    result = hwinfo.measure(threads=1)
    assert torch.get_num_threads() == threads_before  # measuring leaves torch's thread count alone
    assert result["threads"] == 1 and result["bandwidth_bytes"] == 8 * 2**20 and result["gemm_size"] == 128
    for key in ("read_bandwidth_gb_s", "copy_bandwidth_gb_s", "gemm_fp32_flop_s"):
        assert math.isfinite(result[key]) and result[key] > 0
    assert result["hardware"]["cpu"] and "logical_cores" in result["hardware"]


def test_result_is_cached_until_refresh(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(
        hwinfo,
        "measure",
        lambda threads=2: calls.append(threads) or {"hwinfo_version": hwinfo.HWINFO_VERSION, "n": len(calls)},
    )
    first, measured = hwinfo.get()
    assert measured and first["n"] == 1
    assert json.loads((cache / "hwinfo.json").read_text()) == first
    again, measured = hwinfo.get()
    assert not measured and again == first and len(calls) == 1
    refreshed, measured = hwinfo.get(refresh=True)
    assert measured and refreshed["n"] == 2 and hwinfo.load_cached() == refreshed


@pytest.mark.parametrize("content", ["not json", json.dumps({"hwinfo_version": 0}), json.dumps([1])])
def test_unusable_cache_is_ignored(cache, content):
    cache.mkdir(parents=True)
    (cache / "hwinfo.json").write_text(content)
    assert hwinfo.load_cached() is None


def test_cli_measures_caches_and_prints(cache, small, capsys):
    pytest.importorskip("torch")
    assert main(["hwinfo", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((cache / "hwinfo.json").read_text())
    assert main(["hwinfo"]) == 0  # from the cache: a table, no measuring
    out = capsys.readouterr().out
    assert "memory read bandwidth" in out and f"{printed['read_bandwidth_gb_s']:.1f} GB/s" in out
    assert "cached from" in out


def test_parameter_count_reads_safetensors_headers(tmp_path):
    model = make_model(tmp_path / "m")
    write_safetensors(model / "model-00002.safetensors", {"extra": [3, 5, 7]})
    assert hwinfo.parameter_count(model) == sum(math.prod(s) for s in MODEL_TENSORS.values()) + 105
    assert hwinfo.weight_bytes(model) == sum(p.stat().st_size for p in model.glob("*.safetensors"))
    assert hwinfo.parameter_count(tmp_path) == 0 and hwinfo.weight_bytes(tmp_path) == 0


def test_compute_ceiling_is_two_flops_per_parameter_per_token():
    assert hwinfo.compute_ceiling_tok_s(2e11, 134_515_008) == pytest.approx(2e11 / (2 * 134_515_008))
    assert hwinfo.compute_ceiling_tok_s(1e9, 500) == 1e6


# --- the ceiling a run is set against: the measurement of its CPU nearest to it in time --------------------------


def _entry(at: str, gemm: float, cpu: str = "Test CPU") -> dict:
    return {
        "hwinfo_version": hwinfo.HWINFO_VERSION,
        "measured_at": at,
        "hardware": {"cpu": cpu},
        "gemm_fp32_flop_s": gemm,
        "read_bandwidth_gb_s": 10.0,
    }


def test_every_measurement_is_kept_in_the_history(cache, monkeypatch):
    stamps = iter(["2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"])
    monkeypatch.setattr(hwinfo, "measure", lambda threads=2: _entry(next(stamps), 1e9))
    hwinfo.get()
    hwinfo.get(refresh=True)
    with open(hwinfo.history_path(), "a") as f:
        f.write("not json\n" + json.dumps({"hwinfo_version": 0, "measured_at": "2026-01-01T12:00:00Z"}) + "\n")
    assert [e["measured_at"] for e in hwinfo.load_history()] == ["2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"]
    assert hwinfo.load_cached()["measured_at"] == "2026-01-01T11:00:00Z"


def test_cache_without_history_still_counts(cache):
    cache.mkdir(parents=True)
    (cache / "hwinfo.json").write_text(json.dumps(_entry("2026-01-01T10:00:00Z", 1e9)))
    assert [e["measured_at"] for e in hwinfo.load_history()] == ["2026-01-01T10:00:00Z"]


def test_measurement_for_a_time_or_span_is_on_the_same_cpu_and_near_it():
    history = [
        _entry("2026-01-01T10:00:00Z", 1e9),
        _entry("2026-01-01T12:00:00Z", 2e9),
        _entry("2026-01-01T11:10:00Z", 3e9, cpu="Other CPU"),
    ]
    # nothing within 10 minutes: the nearest, however far
    entry, minutes = hwinfo.nearest_measurement("2026-01-01T11:20:00Z", "Test CPU", history)
    assert entry["gemm_fp32_flop_s"] == 2e9 and minutes == pytest.approx(40)
    entry, minutes = hwinfo.nearest_measurement("2026-01-01T10:50:00+00:00", "Test CPU", history)
    assert entry["gemm_fp32_flop_s"] == 1e9 and minutes == pytest.approx(50)
    # a span bracketed by two measurements within 5 minutes: the faster one (a ceiling is an upper bound)
    entry, minutes = hwinfo.nearest_measurement(
        "2026-01-01T10:03:00Z", "Test CPU", history, until="2026-01-01T11:56:00Z"
    )
    assert entry["gemm_fp32_flop_s"] == 2e9 and minutes == pytest.approx(4)
    entry, minutes = hwinfo.nearest_measurement(
        "2026-01-01T10:03:00Z", "Test CPU", history, until="2026-01-01T11:50:00Z"
    )
    assert entry["gemm_fp32_flop_s"] == 1e9 and minutes == pytest.approx(3)  # 12:00 is 10 minutes after
    entry, minutes = hwinfo.nearest_measurement(
        "2026-01-01T09:00:00Z", "Test CPU", history, until="2026-01-01T11:00:00Z"
    )
    assert entry["gemm_fp32_flop_s"] == 1e9 and minutes == 0  # taken during the run
    assert hwinfo.nearest_measurement("2026-01-01T11:20:00Z", "Third CPU", history) is None
    assert hwinfo.nearest_measurement(None, "Test CPU", history) is None
    assert hwinfo.nearest_measurement("yesterday", "Test CPU", history) is None


def _run_on(model, created: str, finished: str, total_tok_s: float = 100.0) -> dict:
    return {
        "created_at": created,
        "finished_at": finished,
        "config": {"model": {"hf_dir": str(model)}},
        "environment": {"hardware": {"cpu": "Test CPU"}},
        "summary": {"total_tok_s": total_tok_s},
    }


def test_ceiling_for_run_is_the_fastest_measurement_near_the_run(tmp_path):
    model = make_model(tmp_path / "m")
    params = hwinfo.parameter_count(model)
    # the run spans 10:00-11:00: 09:55 and 10:35 are near it, 13:00 is not (however fast)
    history = [
        _entry("2026-01-01T09:55:00Z", 1e9),
        _entry("2026-01-01T10:35:00Z", 4e9),
        _entry("2026-01-01T13:00:00Z", 9e9),
    ]
    got = hwinfo.ceiling_for_run(_run_on(model, "2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"), history)
    ceiling = 4e9 / (2 * params)
    assert got["ceiling_tok_s"] == pytest.approx(ceiling) and got["share"] == pytest.approx(100.0 / ceiling)
    assert got["measured_at"] == "2026-01-01T10:35:00Z" and got["minutes_away"] == 0
    # next to it, the share against the CPU's fastest measurement, near the run or not (13:00); not another CPU's
    history.append(_entry("2026-01-01T12:00:00Z", 20e9, cpu="Other CPU"))
    got = hwinfo.ceiling_for_run(_run_on(model, "2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"), history)
    assert got["best_gemm_flop_s"] == 9e9 and got["best_measured_at"] == "2026-01-01T13:00:00Z"
    assert got["share_of_best"] == pytest.approx(100.0 / (9e9 / (2 * params)))
    assert (
        hwinfo.ceiling_for_run(_run_on(tmp_path / "gone", "2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"), history)
        is None
    )  # model not on this machine: no parameter count


def test_compare_shows_the_ceiling_share_and_warns_when_stale(cache, tmp_path):
    from rich.console import Console

    from benchctl.console import STALE_CEILING_WARNING, compare_rows, compare_table

    model = make_model(tmp_path / "m")
    cache.mkdir(parents=True)
    (cache / "hwinfo.json").write_text(json.dumps(_entry("2026-01-01T10:30:00Z", 4e9)))
    runs = [
        _run_on(model, "2026-01-01T10:00:00Z", "2026-01-01T10:20:00Z", 100.0),
        _run_on(model, "2026-01-01T10:20:00Z", "2026-01-01T10:40:00Z", 300.0),
    ]
    rows = {r["metric"]: r for r in compare_rows(runs)}
    ceiling = 4e9 / (2 * hwinfo.parameter_count(model))
    assert rows["compute_ceiling_tok_s"]["values"] == [pytest.approx(ceiling)] * 2
    assert rows["compute_ceiling_share"]["values"] == [pytest.approx(100 / ceiling), pytest.approx(300 / ceiling)]
    assert rows["compute_ceiling_share"]["ratios"][1] == pytest.approx(3.0)
    assert rows["compute_ceiling_share_of_best"]["values"] == rows["compute_ceiling_share"]["values"]  # one measurement

    def caption(runs):
        console = Console(width=400, record=True)
        console.print(compare_table(runs))
        return " ".join(console.export_text().split())

    text = caption(runs)
    assert "4.0 GFLOP/s at 2026-01-01T10:30:00Z" in text and "at most 10 min away" in text  # nearest, not near
    assert " ".join(STALE_CEILING_WARNING.split()) not in text
    late = [_run_on(model, "2026-01-01T12:00:00Z", "2026-01-01T12:10:00Z")] * 2
    assert " ".join(STALE_CEILING_WARNING.split()) in caption(late)
    no_model = [_run_on(tmp_path / "gone", "2026-01-01T10:00:00Z", "2026-01-01T10:20:00Z")] * 2
    assert "compute_ceiling_share" not in {r["metric"] for r in compare_rows(no_model)}


def test_a_ceiling_measured_while_the_host_was_busy_is_flagged(cache, tmp_path):
    from rich.console import Console

    from benchctl.console import BELOW_BEST_WARNING, compare_table, summary_table

    model = make_model(tmp_path / "m")
    cache.mkdir(parents=True)
    history = [_entry("2026-01-01T08:00:00Z", 4e9), _entry("2026-01-01T10:21:00Z", 3.8e9)]
    (cache / "hwinfo-history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in history))
    run = _run_on(model, "2026-01-01T10:00:00Z", "2026-01-01T10:20:00Z", 100_000.0)
    params = hwinfo.parameter_count(model)
    got = hwinfo.ceiling_for_run(run)
    assert got["gemm_flop_s"] == 3.8e9 and got["share_of_best"] == pytest.approx(1e5 / (4e9 / (2 * params)))

    def text(table):
        console = Console(width=400, record=True)
        console.print(table)
        return " ".join(console.export_text().split())

    warning = " ".join(BELOW_BEST_WARNING.split())
    assert warning not in text(summary_table(run)) and warning not in text(compare_table([run, run]))  # 3.8 >= 90% of 4
    history.append(_entry("2026-01-01T12:00:00Z", 8e9))  # a quiet hour later the same CPU did twice as much
    (cache / "hwinfo-history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in history))
    shown = text(summary_table(run))
    assert "share of the CPU's best measured ceiling" in shown and warning in shown
    assert f"{1e5 / (8e9 / (2 * params)):.1%}" in shown  # (model: a few thousand parameters)
    assert warning in text(compare_table([run, run])) and "8.0 GFLOP/s at 2026-01-01T12:00:00Z" in text(
        compare_table([run, run])
    )
    narrow = Console(width=100, record=True)  # six runs in 100 columns: the run columns wrap, metric names do not
    narrow.print(compare_table([run] * 6))
    lines = narrow.export_text().splitlines()
    names = [line.split("│")[1].strip() for line in lines if line.startswith("│ compute")]
    assert names == ["compute_ceiling_tok_s", "compute_ceiling_share", "compute_ceiling_share_of_best"]


def test_a_run_keeps_the_measurements_taken_near_it(tmp_path):
    history = [
        _entry("2026-01-01T09:50:00Z", 1e9),
        _entry("2026-01-01T09:57:00Z", 2e9),
        _entry("2026-01-01T10:30:00Z", 3e9, cpu="Other CPU"),
        _entry("2026-01-01T11:04:00Z", 4e9),
    ]
    history[1]["packages"] = {"torch": "2.13.0+cpu"}  # not carried: the run has its own
    run = {
        "created_at": "2026-01-01T10:00:00Z",
        "finished_at": "2026-01-01T11:00:00Z",
        "environment": {"hardware": {"cpu": "Test CPU"}},
    }
    kept = hwinfo.near_run(run, history)
    assert [e["measured_at"] for e in kept] == ["2026-01-01T09:57:00Z", "2026-01-01T11:04:00Z"]
    assert set(kept[0]) == {"hwinfo_version", "measured_at", "hardware", "gemm_fp32_flop_s", "read_bandwidth_gb_s"}
    assert hwinfo.near_run({"environment": {}}, history) == []


def test_copied_results_find_their_ceiling_in_run_json(cache, tmp_path):
    """On a machine with no history at all, the measurements the run carries still give its share."""
    model = make_model(tmp_path / "m")
    run = _run_on(model, "2026-01-01T10:00:00Z", "2026-01-01T10:20:00Z")
    run["environment"]["hwinfo"] = [_entry("2026-01-01T10:22:00Z", 4e9)]
    assert hwinfo.load_history() == []
    got = hwinfo.ceiling_for_run(run)
    assert got["gemm_flop_s"] == 4e9 and got["minutes_away"] == pytest.approx(2)


def test_measure_in_subprocess_measures_and_keeps_the_history(cache):
    pytest.importorskip("torch")
    result, why = hwinfo.measure_in_subprocess()
    assert why is None and result["gemm_fp32_flop_s"] > 0 and result["read_bandwidth_gb_s"] > 0
    assert [e["measured_at"] for e in hwinfo.load_history()] == [result["measured_at"]]


def test_hwinfo_measures_in_a_child_and_the_harness_imports_no_torch(cache):
    from harness_imports import engine_modules, run_with_importtime

    code = (
        "import sys\nfrom benchctl import hwinfo\nfrom benchctl.cli import main\n"
        "hwinfo.BANDWIDTH_BYTES, hwinfo.GEMM_SIZE = 8 * 2**20, 128\n"
        "sys.exit(main(['hwinfo', '--refresh', '--json']))\n"
    )
    proc, modules = run_with_importtime(code, env={"BENCHCTL_CACHE_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)
    assert printed["gemm_size"] == 128 and printed["bandwidth_bytes"] == 8 * 2**20  # the sizes reach the child
    assert printed["gemm_fp32_flop_s"] > 0 and printed["packages"]["torch"]
    assert printed == json.loads((cache / "hwinfo.json").read_text())
    assert "benchctl.hwinfo" in modules and engine_modules(modules) == []


def test_a_measurement_that_cannot_be_taken_is_one_line(cache, tmp_path, monkeypatch, capsys):
    fake = tmp_path / "no-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no torch in this interpreter')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))  # the child finds this torch first
    assert main(["hwinfo", "--refresh"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["benchctl: error: hwinfo: measuring failed: ImportError: no torch in this interpreter"]
    assert hwinfo.measure_in_subprocess() == (
        None,
        "hwinfo: measuring failed: ImportError: no torch in this interpreter",
    )
    assert hwinfo.load_cached() is None and not hwinfo.history_path().exists()
