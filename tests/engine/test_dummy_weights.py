"""Random weights from a config (a benchctl dummy model): the checkpoint's names and shapes, seeded, Llama 3's RoPE
scaling as transformers computes it, and the engine running on them."""

from __future__ import annotations

import pytest
import torch

from benchctl.models import resolve_model
from reference_engine import LLMEngine, SamplingParams
from reference_engine.config import ModelConfig
from reference_engine.model.llama import RANDOM_WEIGHTS_MARKER, checkpoint_shapes, random_weights, rope_cos_sin


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHCTL_CACHE_DIR", str(tmp_path / "cache"))


def test_names_and_shapes_are_the_checkpoints(cache):
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = resolve_model("dummy:llama-3.2-1b").hf_dir
    with torch.device("meta"):
        hf = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    expected = {k: tuple(v.shape) for k, v in hf.state_dict().items() if k != "lm_head.weight"}  # tied
    assert checkpoint_shapes(ModelConfig.from_dir(folder)) == expected


def test_same_seed_same_weights(cache):
    cfg = ModelConfig.from_dir(resolve_model("dummy:smollm2-135m").hf_dir)
    cfg.num_layers = 2
    a = random_weights(cfg, 0, torch.device("cpu"), torch.float32)
    torch.randn(1000)  # the global generator's state does not matter
    b = random_weights(cfg, 0, torch.device("cpu"), torch.float32)
    c = random_weights(cfg, 1, torch.device("cpu"), torch.float32)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.layers.0.self_attn.q_proj.weight"], c["model.layers.0.self_attn.q_proj.weight"])
    q = a["model.layers.1.mlp.down_proj.weight"]
    assert abs(q.std().item() - 0.02) < 1e-3 and torch.equal(a["model.norm.weight"], torch.ones(576))


def test_llama3_rope_scaling_matches_transformers(cache):
    from transformers import AutoConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    folder = resolve_model("dummy:llama-3.2-1b").hf_dir
    cfg = ModelConfig.from_dir(folder)
    assert cfg.rope_scaling["rope_type"] == "llama3"
    ours = rope_cos_sin(cfg.head_dim, cfg.rope_theta, 4096, torch.device("cpu"), cfg.rope_scaling)
    rotary = LlamaRotaryEmbedding(AutoConfig.from_pretrained(folder))
    positions = torch.arange(4096)[None]
    cos, sin = rotary(torch.zeros(1, dtype=torch.float32), positions)
    torch.testing.assert_close(ours[:, 0], cos[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[:, 1], sin[0], rtol=1e-5, atol=1e-5)
    plain = rope_cos_sin(cfg.head_dim, cfg.rope_theta, 4096, torch.device("cpu"))
    assert not torch.allclose(plain, ours)  # the scaling changes the low frequencies


def test_engine_runs_on_random_weights_and_repeats_itself(cache):
    folder = resolve_model("dummy:smollm2-135m").hf_dir
    assert (folder / RANDOM_WEIGHTS_MARKER).is_file()
    params = SamplingParams(max_tokens=4, ignore_eos=True, temperature=0)
    outs = []
    for _ in range(2):
        engine = LLMEngine(folder, kv_cache_bytes=2**24, max_model_len=128)
        assert engine.info()["random_weights_seed"] == 0
        outs.append([o.outputs[0].token_ids for o in engine.generate([[1, 2, 3, 4], [9, 8, 7]], params)])
        engine.close()
    assert outs[0] == outs[1] and all(len(t) == 4 for t in outs[0])
