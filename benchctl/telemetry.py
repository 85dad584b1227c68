"""Power and energy while a run's requests are measured: NVML on a GPU, RAPL on a CPU, else "unavailable (why)".

A background thread in the harness samples every INTERVAL_S into telemetry.jsonl (one object per sample):
- NVML (`nvidia-ml-py`'s pynvml; a small ctypes binding, no engine): power_w, energy_j (the driver's total energy
  counter, from the first sample), sm_clock_mhz, mem_clock_mhz, memory_used_bytes, gpu_util_pct, mem_util_pct;
- RAPL (/sys/class/powercap/intel-rapl:N/energy_uj, the package domains; AMD exposes them there too): energy_j
  summed over the packages (counter wrap-around handled), power_w over the last interval.
`stop()` gives the run's energy; benchctl.metrics.energy turns it into joules per output and per total token.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from benchctl.metrics.energy import energy_metrics, integrate_power_j

INTERVAL_S = 0.1  # NVML refreshes power about every 20-100 ms; RAPL counters every ~1 ms
POWERCAP = Path("/sys/class/powercap")
FILE = "telemetry.jsonl"


class RaplReader:
    """Energy (J) since construction, summed over the top-level RAPL domains (packages) under `root`."""

    def __init__(self, root: Path = POWERCAP):
        if not root.is_dir():
            raise OSError(f"no {root} (no RAPL interface on this machine)")
        self.domains = sorted(d for d in root.iterdir() if re.fullmatch(r"intel-rapl:\d+", d.name))
        if not self.domains:
            raise OSError(f"no package domains (intel-rapl:N) under {root}")
        try:
            self._last = [self._read(d) for d in self.domains]
        except OSError as e:
            raise OSError(
                f"{self.domains[0] / 'energy_uj'} is not readable ({e.strerror or e}; root only since Linux 5.10)"
            ) from None
        self._ranges = [self._max_range(d) for d in self.domains]
        self.names = [_text(d / "name") or d.name for d in self.domains]
        self.energy_j = 0.0

    @staticmethod
    def _read(domain: Path) -> int:
        return int((domain / "energy_uj").read_text())

    @staticmethod
    def _max_range(domain: Path) -> int | None:
        try:
            return int((domain / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            return None

    def read_j(self) -> float:
        """Energy since construction; a counter that went down wrapped around at its max_energy_range_uj."""
        for i, domain in enumerate(self.domains):
            now = self._read(domain)
            delta = now - self._last[i]
            if delta < 0:
                delta += self._ranges[i] or 0
            self.energy_j += max(delta, 0) / 1e6
            self._last[i] = now
        return self.energy_j


class NvmlReader:
    """One GPU's power, energy counter, clocks, memory and utilisation through NVML."""

    def __init__(self, index: int = 0):
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.name = _decode(pynvml.nvmlDeviceGetName(self.handle))
        self._energy0: float | None = None
        self.has_counter = True

    def sample(self) -> dict[str, Any]:
        nv, h = self.nvml, self.handle
        out: dict[str, Any] = {"power_w": nv.nvmlDeviceGetPowerUsage(h) / 1e3}
        if self.has_counter:
            try:  # mJ since the driver loaded (Volta and later)
                total_j = nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3
                self._energy0 = total_j if self._energy0 is None else self._energy0
                out["energy_j"] = total_j - self._energy0
            except nv.NVMLError:
                self.has_counter = False
        util = nv.nvmlDeviceGetUtilizationRates(h)
        out.update(
            sm_clock_mhz=nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
            mem_clock_mhz=nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
            memory_used_bytes=nv.nvmlDeviceGetMemoryInfo(h).used,
            gpu_util_pct=util.gpu,
            mem_util_pct=util.memory,
        )
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def open_reader(device: str | None, powercap: Path = POWERCAP) -> tuple[Any, str | None]:
    """(reader, None) or (None, why energy is unavailable). NVML when the run's device is not the CPU and NVML
    answers; RAPL otherwise (a CPU run, or no NVML)."""
    reasons = []
    if not str(device or "").startswith("cpu"):
        try:
            return NvmlReader(), None
        except ImportError:
            reasons.append("no pynvml (pip install nvidia-ml-py)")
        except Exception as e:  # pynvml.NVMLError_*: no driver, no GPU
            reasons.append(f"NVML: {e}")
    try:
        return RaplReader(powercap), None
    except OSError as e:
        reasons.append(f"RAPL: {e}")
    return None, "; ".join(reasons)


class Recorder:
    """Samples a reader on a thread into run_dir/telemetry.jsonl until stop()."""

    def __init__(
        self, run_dir: Path, device: str | None = None, interval_s: float = INTERVAL_S, powercap: Path = POWERCAP
    ):
        self.reader, self.unavailable = open_reader(device, powercap)
        self.source = None if self.reader is None else ("nvml" if isinstance(self.reader, NvmlReader) else "rapl")
        self.interval_s = interval_s
        self.samples: list[dict[str, Any]] = []
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._file = open(run_dir / FILE, "w") if self.reader is not None else None
        self._thread = threading.Thread(target=self._loop, name="telemetry", daemon=True)
        self._result: dict[str, Any] | None = None
        if self.reader is not None:
            self._sample()
            self._thread.start()

    def _sample(self) -> None:
        t_s = time.monotonic() - self._t0
        if isinstance(self.reader, NvmlReader):
            row = {"t_s": t_s, "source": "nvml", **self.reader.sample()}
        else:
            energy_j = self.reader.read_j()
            prev = self.samples[-1] if self.samples else None
            dt = t_s - prev["t_s"] if prev else 0.0
            row = {
                "t_s": t_s,
                "source": "rapl",
                "energy_j": energy_j,
                "power_w": (energy_j - prev["energy_j"]) / dt if prev and dt > 0 else None,
            }
        self.samples.append(row)
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except Exception as e:  # a reader that fails mid-run ends the series, never the run
                self.unavailable = f"sampling stopped at {time.monotonic() - self._t0:.1f} s: {e}"
                return

    def stop(self) -> dict[str, Any]:
        """The run's energy: source, energy_j over window_s, mean power, samples; or unavailable (why). Sampling
        ends at the first call; later calls return the same result."""
        if self.reader is None:
            return {"source": None, "unavailable": self.unavailable}
        if self._result is None:
            self._result = self._finish()
        return dict(self._result)

    def _finish(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self._sample()
        except Exception:  # the last sample is a nicety
            pass
        if self._file is not None:
            self._file.close()
        if isinstance(self.reader, NvmlReader):
            self.reader.close()
        t = [s["t_s"] for s in self.samples]
        counter = [s.get("energy_j") for s in self.samples]
        first, last = counter[0], counter[-1]
        if all(e is not None for e in counter) and first is not None and last is not None:
            energy, how = last - first, "counter"
        else:  # GPUs before Volta: no energy counter, integrate the power readings
            energy, how = integrate_power_j(t, [s["power_w"] for s in self.samples]), "integrated power"
        window = t[-1] - t[0]
        out = {
            "source": self.source,
            "energy_j": energy,
            "energy_from": how,
            "window_s": window,
            "mean_power_w": energy / window if window > 0 else None,
            "samples": len(self.samples),
        }
        if isinstance(self.reader, NvmlReader):
            out["device"] = self.reader.name
        else:
            out["domains"] = self.reader.names
        if self.unavailable:
            out["note"] = self.unavailable
        return out


def start(run_dir: Path, device: str | None = None) -> Recorder:
    """Start sampling for a run folder (never raises: without a reader, stop() says why)."""
    return Recorder(run_dir, device)


def finish(recorder: Recorder | None, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """run.json's `energy`: the recorder's result and, with energy, joules per output and per total token."""
    if recorder is None:
        return {"source": None, "unavailable": "not sampled (the run ended before its requests started)"}
    result = recorder.stop()
    if result.get("energy_j") is not None:
        result.update(energy_metrics(result["energy_j"], rows))
    return result
