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
    monkeypatch.setattr(hwinfo, "measure", lambda threads=2: calls.append(threads) or {
        "hwinfo_version": hwinfo.HWINFO_VERSION, "n": len(calls)})
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
