"""Quantization choices: bitsandbytes refuses clearly without CUDA, and every run records its precision."""

from __future__ import annotations

import pytest

import backends.hf as hf
from benchctl.backend import BackendError
from benchctl.cli import main


@pytest.mark.parametrize("quant", ["bnb-4bit", "bnb-8bit"])
def test_bnb_on_a_machine_without_cuda_is_one_line_and_exit_2(quant, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(hf, "cuda_present", lambda: False)
    code = main(
        ["run", "--backend", "hf", "--quantization", quant, "--num-prompts", "2", "--output-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"--quantization {quant} runs bitsandbytes' CUDA kernels" in err
    assert len(err.strip().splitlines()) == 1 and not any(tmp_path.iterdir())  # refused before a run folder


def test_unknown_quantization_and_missing_bitsandbytes(monkeypatch):
    with pytest.raises(BackendError, match="quantization must be one of none, bnb-4bit, bnb-8bit"):
        hf.check_args({"quantization": "int3"})
    monkeypatch.setattr(hf, "cuda_present", lambda: True)
    monkeypatch.setattr(hf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendError, match="needs bitsandbytes: pip install bitsandbytes"):
        hf.check_args({"quantization": "bnb-4bit"})
    hf.check_args({})  # the default needs nothing


class _Config:
    def __init__(self, qc):
        self.quantization_config = qc


class _Model:
    def __init__(self, qc):
        self.config = _Config(qc)


def test_precision_says_what_the_weights_are():
    assert hf.precision_of(_Model(None), "float32") == "float32"
    assert (
        hf.precision_of(_Model({"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}), "float16")
        == "bnb-4bit nf4 (compute float16)"
    )
    assert hf.precision_of(_Model({"load_in_8bit": True}), "float16") == "bnb-8bit (compute float16)"
    assert hf.precision_of(_Model({"quant_method": "gptq", "bits": 4}), "float16") == "gptq-4bit (compute float16)"
    assert hf.precision_of(_Model({"quant_method": "awq", "w_bit": 4}), "float16") == "awq-4bit (compute float16)"


def test_quantization_flag_on_a_backend_without_it_is_refused(capsys, tmp_path):
    code = main(["run", "--backend", "reference", "--quantization", "bnb-4bit", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "does not accept engine arg(s) quantization" in err
    code = main(
        [
            "run",
            "--backend",
            "hf",
            "--quantization",
            "bnb-4bit",
            "--engine-arg",
            "quantization=none",
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert code == 2 and "disagree" in capsys.readouterr().err
