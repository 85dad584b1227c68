"""Dummy models (benchctl.dummy): shipped configs with their sources, sizes without weights, the model folder and
its cut tokenizer, and the one-line refusal of a model that does not fit."""

from __future__ import annotations

import json

import pytest

from benchctl import dummy, hwinfo
from benchctl.models import ModelError, resolve_model
from benchctl.workload import load_tokenizer

# The parameter counts the models' own cards and papers give
PUBLISHED = {
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-3-8b": 8_030_261_248,
    "llama-3.2-1b": 1_235_814_400,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-7b": 7_615_616_512,
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache for dummy model folders; the engine environments stay where scripts/test installed them."""
    from benchctl import engines

    monkeypatch.setenv(engines.ENGINES_DIR_ENV, str(engines.engines_dir()))
    monkeypatch.setenv("BENCHCTL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_shipped_config_names_its_source_and_has_its_published_size():
    assert set(PUBLISHED) | {"smollm2-135m"} == set(dummy.names())
    for name, count in PUBLISHED.items():
        _, config, source, seed = dummy.load_spec(f"dummy:{name}")
        assert source.endswith("config.json") and "/" in source and seed == 0
        assert dummy.parameter_count(config) == count, name
    _, config, _, _ = dummy.load_spec("dummy:llama-2-7b")
    assert dummy.weight_bytes(config, "float32") == 4 * 6_738_415_616
    assert dummy.weight_bytes(config, "bfloat16") == 2 * 6_738_415_616


def test_smollm2_config_counts_the_real_checkpoint(model_dir):
    _, config, _, _ = dummy.load_spec("dummy:smollm2-135m")
    assert dummy.parameter_count(config) == hwinfo.parameter_count(model_dir)
    real = json.loads((model_dir / "config.json").read_text())
    for key in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "tie_word_embeddings",
    ):
        assert config[key] == real[key], key


def test_resolve_writes_a_folder_once_with_marker_and_tokenizer(cache):
    model = resolve_model("dummy:smollm2-135m")
    assert model.about["weights"] == "random (dummy)" and model.hf_dir.parent == cache / "models"
    assert {p.name for p in model.hf_dir.iterdir()} == {
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        dummy.MARKER,
    }
    assert not list(model.hf_dir.glob("*.safetensors"))
    marker = dummy.read_marker(model.hf_dir)
    assert marker["seed"] == 0 and marker["num_parameters"] == 134_515_008
    assert model.to_json()["weights"] == "random (dummy)" and model.to_json()["hf_dir"] == str(model.hf_dir)
    stamp = (model.hf_dir / dummy.MARKER).stat().st_mtime_ns
    assert resolve_model("dummy:smollm2-135m").hf_dir == model.hf_dir
    assert (model.hf_dir / dummy.MARKER).stat().st_mtime_ns == stamp  # reused, not rewritten
    other = resolve_model("dummy:smollm2-135m@7")
    assert other.hf_dir != model.hf_dir and dummy.read_marker(other.hf_dir)["seed"] == 7
    config = json.loads((model.hf_dir / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    assert dummy.is_dummy_run({"config": {"model": model.to_json()}})
    assert not dummy.is_dummy_run({"config": {"model": {"name": "smollm2-135m"}}})


def test_a_smaller_vocabulary_cuts_the_tokenizer_consistently(cache):
    model = resolve_model("dummy:llama-2-7b")
    tok = json.loads((model.hf_dir / "tokenizer.json").read_text())
    assert max(tok["model"]["vocab"].values()) == 31_999 and len(tok["model"]["vocab"]) == 32_000
    text = "Speculative decoding drafts tokens; the verifier keeps the longest agreeing prefix. Ünïcødé 😀"
    tokenizer = load_tokenizer(str(model.hf_dir))
    ids = tokenizer.encode(text)
    assert ids and max(ids) < 32_000 and tokenizer.decode(ids) == text
    full = load_tokenizer(str(resolve_model("dummy:qwen2.5-7b").hf_dir))  # larger vocabulary: the whole tokenizer
    assert len(full.encode(text)) <= len(ids) and max(full.encode(text)) >= 32_000


def test_user_errors_are_one_line(tmp_path, cache):
    with pytest.raises(ModelError, match="unknown dummy model 'llama-9b': not one of llama-2-13b, llama-2-7b"):
        resolve_model("dummy:llama-9b")
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64}))
    with pytest.raises(ModelError, match="needs intermediate_size, num_hidden_layers"):
        resolve_model(f"dummy:{tmp_path / 'config.json'}")
    own = tmp_path / "tiny"
    own.mkdir()
    (own / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "vocab_size": 1000,
            }
        )
    )
    model = resolve_model(f"dummy:{own / 'config.json'}")
    assert model.about["num_parameters"] == 2 * (64 * 64 * 4 + 3 * 64 * 128 + 128) + 2 * 1000 * 64 + 64
    assert model.about["config_source"] == str((own / "config.json").resolve())


def test_a_model_that_does_not_fit_is_refused_with_what_it_needs(cache, monkeypatch):
    model = resolve_model("dummy:llama-2-7b")
    with pytest.raises(dummy.DummyError) as err:
        dummy.check_fits(model, "float32", "cpu", int(23.4e9))
    assert str(err.value) == (
        "dummy:llama-2-7b needs 27.0 GB of weights in float32, this machine has 23.4 GB (6.74B parameters)"
    )
    dummy.check_fits(model, "bfloat16", "cpu", int(23.4e9))  # 13.5 GB fits
    with pytest.raises(dummy.DummyError, match="needs 13.5 GB of weights in bfloat16, this GPU has 12.9 GB"):
        dummy.check_fits(model, "bfloat16", "cuda", 12_288 * 2**20)
    monkeypatch.setattr("benchctl.envinfo.cuda_present", lambda: False)
    with pytest.raises(dummy.DummyError, match="exllamav2 reads EXL2"):
        dummy.preflight(model, "exllamav2", {})
    small = resolve_model("dummy:smollm2-135m")
    assert dummy.preflight(small, "reference", {}) is small
    with pytest.raises(dummy.DummyError, match="plain Llama configs, not rope_scaling in its config"):
        dummy.preflight(resolve_model("dummy:llama-3.2-1b"), "llamacpp", {})
    with pytest.raises(dummy.DummyError, match="not model_type 'mistral'"):
        dummy.preflight(resolve_model("dummy:mistral-7b"), "llamacpp", {})
    assert (
        dummy.default_dtype({}, cuda=True) == "bfloat16"
        and dummy.default_dtype({"dtype": "float16"}, False) == "float16"
    )
    assert dummy.gpu_memory_bytes([{"name": "NVIDIA H200", "memory": "143771 MiB"}]) == 143771 * 2**20


def test_run_refuses_a_7b_model_in_float32_before_anything_starts(cache, tmp_path, monkeypatch, capsys):
    import psutil

    from benchctl.cli import main

    total = type("Memory", (), {"total": int(23.4e9)})()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: total)
    monkeypatch.setattr("benchctl.envinfo.cuda_present", lambda: False)
    code = main(["run", "--model", "dummy:llama-2-7b", "--output-dir", str(tmp_path / "runs"), "--no-measure-ceiling"])
    assert code == 2
    assert (
        "benchctl: error: dummy:llama-2-7b needs 27.0 GB of weights in float32, this machine has 23.4 GB"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_console_says_output_checks_are_meaningless(cache):
    from rich.console import Console

    from benchctl.console import summary_table

    run = {
        "run_id": "r",
        "status": "completed",
        "summary": {},
        "config": {"model": resolve_model("dummy:smollm2-135m").to_json()},
        "engine_stats": {
            "spec_decode_num_drafts": 4,
            "spec_decode_num_draft_tokens": 12,
            "spec_decode_num_accepted_tokens": 6,
        },
    }
    console = Console(width=200, record=True)
    console.print(summary_table(run))
    text = console.export_text()
    assert "random (dummy): greedy identity and draft acceptance are meaningless here" in text
    assert "50.0%, 2.50 tokens per drafted step (meaningless: random weights)" in text


def tiny_config(tmp_path, vocab=1000):
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": vocab,
                "max_position_embeddings": 256,
                "rope_theta": 10000.0,
                "rms_norm_eps": 1e-5,
                "tie_word_embeddings": False,
            }
        )
    )
    return folder / "config.json"


def test_random_gguf_for_llama_cpp(tmp_path, cache, monkeypatch):
    gguf = pytest.importorskip("gguf")
    monkeypatch.setattr("benchctl.envinfo.cuda_present", lambda: False)
    model = resolve_model(f"dummy:{tiny_config(tmp_path)}@3")
    run_model = dummy.preflight(model, "llamacpp", {})
    assert run_model.gguf_path == model.hf_dir / "model-f16-seed3.gguf" and run_model.hf_dir == model.hf_dir
    reader = gguf.GGUFReader(str(run_model.gguf_path))
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 + 1 + 2 * 9  # embeddings, output norm, lm head, 9 per layer
    assert [int(d) for d in tensors["blk.1.attn_k.weight"].shape] == [64, 32]  # GGUF lists (in, out)
    assert tensors["blk.0.attn_q.weight"].tensor_type.name == "F16"
    assert tensors["output_norm.weight"].tensor_type.name == "F32"
    assert reader.fields["llama.attention.head_count_kv"].contents() == 2
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == 1000  # the tokenizer cut to the vocabulary
    weights = tensors["token_embd.weight"].data.astype("float32")
    assert abs(float(weights.std()) - 0.02) < 2e-3
    stamp = run_model.gguf_path.stat().st_mtime_ns
    assert dummy.preflight(model, "llamacpp", {}).gguf_path.stat().st_mtime_ns == stamp  # written once


@pytest.mark.slow
def test_llama_cpp_runs_a_dummy_model(tmp_path, cache):
    import subprocess
    import sys

    from engine_envs import engine_python

    engine_python("llamacpp")
    out = tmp_path / "runs"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchctl",
            "run",
            "--backend",
            "llamacpp",
            "--model",
            f"dummy:{tiny_config(tmp_path, vocab=49152)}",
            "--dataset",
            "random",
            "--num-prompts",
            "2",
            "--random-input-len",
            "8",
            "--random-output-len",
            "4",
            "--output-dir",
            str(out),
            "--no-measure-ceiling",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**__import__("os").environ, "BENCHCTL_CACHE_DIR": str(cache)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout)
    assert run["config"]["model"]["weights"] == "random (dummy)"
    assert run["config"]["model"]["gguf_path"].endswith("model-f16-seed0.gguf")
    assert run["summary"]["completed"] == 2 and run["summary"]["total_output_tokens"] == 8
