"""Energy: the metrics by hand, RAPL read from a fake powercap tree, NVML through a fake pynvml, and the reason
when neither is there."""

from __future__ import annotations

import json
import sys
import time
import types

import pytest

from benchctl import telemetry
from benchctl.metrics import energy_metrics, integrate_power_j

RECORDS = [
    {"request_id": "a", "output_tokens": 10, "prompt_tokens": 5, "finish_s": 1.0},
    {"request_id": "b", "output_tokens": 20, "prompt_tokens": 15, "finish_s": 2.0},
    {"request_id": "c", "output_tokens": 0, "prompt_tokens": 7, "error": "timeout"},
]


def test_joules_per_output_and_total_token_by_hand():
    m = energy_metrics(120.0, RECORDS)
    assert m["output_tokens"] == 30 and m["total_tokens"] == 50  # the failed request counts in neither
    assert m["j_per_output_token"] == pytest.approx(4.0) and m["j_per_total_token"] == pytest.approx(2.4)
    assert "input + output tokens" in m["denominators"]["j_per_total_token"]
    assert energy_metrics(5.0, [])["j_per_output_token"] is None
    assert integrate_power_j([0.0, 1.0, 2.0, 3.0], [100.0, 200.0, None, 50.0]) == pytest.approx(150.0)


def _powercap(root, packages=(1_000_000, 2_000_000), max_range=10_000_000):
    for i, uj in enumerate(packages):
        d = root / f"intel-rapl:{i}"
        d.mkdir(parents=True)
        (d / "name").write_text(f"package-{i}\n")
        (d / "energy_uj").write_text(f"{uj}\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
        sub = root / f"intel-rapl:{i}:0"  # a sub-domain (core): inside its package's count, not added again
        sub.mkdir()
        (sub / "energy_uj").write_text("5\n")
    return root


def _set(root, i, uj):
    (root / f"intel-rapl:{i}" / "energy_uj").write_text(f"{uj}\n")


def test_rapl_sums_packages_and_survives_wraparound(tmp_path):
    root = _powercap(tmp_path / "powercap")
    reader = telemetry.RaplReader(root)
    assert reader.names == ["package-0", "package-1"]
    _set(root, 0, 3_500_000)
    _set(root, 1, 2_500_000)
    assert reader.read_j() == pytest.approx(3.0)
    _set(root, 0, 500_000)  # wrapped at 10 J: 10 - 3.5 + 0.5 = 7 J more
    assert reader.read_j() == pytest.approx(10.0)


def test_recorder_on_cpu_writes_the_series_and_the_run_energy(tmp_path):
    root = _powercap(tmp_path / "powercap")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rec = telemetry.Recorder(run_dir, device="cpu", interval_s=0.01, powercap=root)
    assert rec.source == "rapl"
    time.sleep(0.05)
    _set(root, 0, 7_000_000)  # +6 J on package 0
    _set(root, 1, 8_000_000)  # +6 J on package 1
    time.sleep(0.05)
    energy = telemetry.finish(rec, RECORDS)
    assert energy["source"] == "rapl" and energy["energy_j"] == pytest.approx(12.0)
    assert energy["j_per_output_token"] == pytest.approx(0.4) and energy["domains"] == ["package-0", "package-1"]
    rows = [json.loads(line) for line in (run_dir / "telemetry.jsonl").read_text().splitlines()]
    assert len(rows) == energy["samples"] >= 3 and rows[-1]["energy_j"] == pytest.approx(12.0)
    assert energy["mean_power_w"] == pytest.approx(12.0 / energy["window_s"])


def test_no_powercap_says_why(tmp_path):
    rec = telemetry.Recorder(tmp_path, device="cpu", powercap=tmp_path / "absent")
    energy = telemetry.finish(rec, RECORDS)
    assert energy == {
        "source": None,
        "unavailable": f"RAPL: no {tmp_path / 'absent'} (no RAPL interface on this machine)",
    }
    assert not (tmp_path / "telemetry.jsonl").exists()
    assert "not sampled" in telemetry.finish(None, RECORDS)["unavailable"]


class FakeNvml(types.ModuleType):
    """pynvml's calls that telemetry makes: 250 W, +25 J per reading of the energy counter."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2

    class NVMLError(Exception):
        pass

    def __init__(self, counter=True):
        super().__init__("pynvml")
        self.counter, self.energy_mj, self.shut = counter, 1_000_000, False

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H200"

    def nvmlDeviceGetPowerUsage(self, h):
        return 250_000

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.counter:
            raise self.NVMLError("Not Supported")
        self.energy_mj += 25_000
        return self.energy_mj

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=97, memory=60)

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=80 * 2**30)


@pytest.mark.parametrize("counter", [True, False])
def test_nvml_energy_from_the_counter_or_integrated_power(tmp_path, monkeypatch, counter):
    fake = FakeNvml(counter)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    rec = telemetry.Recorder(tmp_path, device="cuda:0", interval_s=0.01, powercap=tmp_path / "absent")
    time.sleep(0.05)
    energy = telemetry.finish(rec, RECORDS)
    rows = [json.loads(line) for line in (tmp_path / "telemetry.jsonl").read_text().splitlines()]
    assert energy["source"] == "nvml" and energy["device"] == "NVIDIA H200" and fake.shut
    assert rows[0] == {
        "t_s": rows[0]["t_s"],
        "source": "nvml",
        "power_w": 250.0,
        **({"energy_j": 0.0} if counter else {}),
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
        "memory_used_bytes": 80 * 2**30,
        "gpu_util_pct": 97,
        "mem_util_pct": 60,
    }
    if counter:
        assert energy["energy_from"] == "counter" and energy["energy_j"] == pytest.approx(25.0 * (len(rows) - 1))
    else:
        assert energy["energy_from"] == "integrated power"
        assert energy["energy_j"] == pytest.approx(250.0 * energy["window_s"])


def test_console_and_report_show_the_energy(tmp_path):
    from benchctl.console import energy_row

    energy = {"source": "rapl", **energy_metrics(120.0, RECORDS)}
    assert energy_row(energy) == ("energy (rapl)", "120.0 J · 4 J / output token · 2.4 J / token (input + output)")
    assert energy_row({"source": None, "unavailable": "RAPL: no /sys/class/powercap"}) == (
        "energy",
        "unavailable (RAPL: no /sys/class/powercap)",
    )


def test_report_energy_section_plots_the_series(tmp_path):
    pytest.importorskip("plotly")
    from report_fixtures import make_model, make_run

    from benchctl.report import energy as energy_section
    from benchctl.report.load import load

    run_dir = make_run(tmp_path / "runs", "gpu", model_dir=make_model(tmp_path / "model"))
    run = json.loads((run_dir / "run.json").read_text())
    run["energy"] = {"source": "nvml", "window_s": 2.0, "mean_power_w": 300.0, **energy_metrics(600.0, RECORDS)}
    (run_dir / "run.json").write_text(json.dumps(run))
    rows = [
        {
            "t_s": t,
            "source": "nvml",
            "power_w": p,
            "sm_clock_mhz": 1980,
            "memory_used_bytes": 2 * 2**30,
            "gpu_util_pct": 90,
        }
        for t, p in ((0.0, 100.0), (1.0, 400.0), (2.0, 400.0))
    ]
    (run_dir / "telemetry.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = make_run(tmp_path / "runs", "cpu", model_dir=tmp_path / "model")
    sec = energy_section.section([load(run_dir), load(plain)])
    ((_, table),) = sec.tables
    assert list(table["J / output token"])[0] == pytest.approx(20.0) and list(table["source"]) == [
        "nvml",
        "unavailable",
    ]
    ((_, fig),) = sec.figures
    power = [t for t in fig.data if t.yaxis == "y"]
    assert list(power[0].y) == [100.0, 400.0, 400.0]
    assert [t for t in fig.data if t.yaxis == "y3"][0].y[0] == pytest.approx(2.0)  # GiB
    assert energy_section.section([load(plain)]) is None
