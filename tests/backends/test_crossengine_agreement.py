"""Cross-engine sanity: llama.cpp (Q4_1 GGUF) and HF transformers (fp32) agree on teacher-forced top-1 predictions.

Both engines see the same token ids (a few ShareGPT conversations, chat-formatted, truncated); at every position
each one's argmax over the vocabulary is compared. Greedy *text* is never compared: Q4_1 vs fp32 outputs diverge
after a few tokens, while teacher-forced top-1 agrees on ~97-98% of positions. llama.cpp runs in a subprocess
under its managed environment's interpreter (the harness never imports an engine); HF runs here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from engine_envs import engine_python

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO / "datasets" / "sharegpt_sample.json"
# Varied on purpose: C code, a story, German, arithmetic (each is longer than MAX_TOKENS).
CONVERSATIONS = ["cKfrjwj_0", "DmzMoLI_0", "eyfZnfk_0", "7EM5vWK_0"]
MAX_TOKENS = 128
MIN_AGREEMENT = 0.90

# Runs under the llama.cpp environment's interpreter: reads {"gguf": path, "sequences": [[id, ...], ...], "threads": n}
# from the file argv[1], evaluates each sequence from an empty KV cache with logits at every position, and prints
# the per-position argmax as JSON.
LLAMACPP_SCRIPT = r"""
import json, sys
import numpy as np
import llama_cpp as lc
from backends.llamacpp import _cpu_flags

with open(sys.argv[1]) as f:
    req = json.load(f)
seqs = req["sequences"]
lc.llama_backend_init()
mparams = lc.llama_model_default_params()
mparams.n_gpu_layers = 0
# As the worker's extra_bufts=auto: weight repacking crashes llama_decode on AMX CPUs, so it is off there.
mparams.use_extra_bufts = "amx_int8" not in _cpu_flags()
model = lc.llama_model_load_from_file(req["gguf"].encode(), mparams)
assert model, "llama.cpp could not load the GGUF"
n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
n = max(len(s) for s in seqs)
cparams = lc.llama_context_default_params()
cparams.n_ctx = n
cparams.n_batch = cparams.n_ubatch = n
cparams.n_seq_max = 1
cparams.n_threads = cparams.n_threads_batch = req["threads"]
ctx = lc.llama_init_from_model(model, cparams)
assert ctx, "llama.cpp could not create a context"
mem = lc.llama_get_memory(ctx)
batch = lc.llama_batch_init(n, 0, 1)
out = []
for ids in seqs:
    lc.llama_memory_clear(mem, True)
    for i, token in enumerate(ids):
        batch.token[i] = token
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = True
    batch.n_tokens = len(ids)
    status = lc.llama_decode(ctx, batch)
    assert status == 0, f"llama_decode returned {status}"
    logits = np.ctypeslib.as_array(lc.llama_get_logits(ctx), shape=(len(ids), n_vocab))
    out.append(logits.argmax(axis=1).tolist())
lc.llama_batch_free(batch)
lc.llama_free(ctx)
lc.llama_model_free(model)
print(json.dumps({"argmax": out, "extra_bufts": bool(mparams.use_extra_bufts)}))
"""


@pytest.fixture(scope="module")
def llamacpp_python() -> str:
    return engine_python("llamacpp")


def conversation_ids(hf_dir: Path) -> list[list[int]]:
    """The chosen conversations as ChatML (user prompt + assistant answer), tokenized, first MAX_TOKENS ids."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    by_id = {c["id"]: c["conversations"] for c in json.loads(DATASET.read_text())}
    seqs = []
    for cid in CONVERSATIONS:
        prompt, answer = by_id[cid][0]["value"], by_id[cid][1]["value"]
        text = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"
        seqs.append(tok.encode(text).ids[:MAX_TOKENS])
    return seqs


def test_llamacpp_and_hf_agree_on_teacher_forced_top1(llamacpp_python, record_property, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from benchctl.models import resolve_model

    model = resolve_model("smollm2-135m")
    seqs = conversation_ids(model.hf_dir)
    assert [len(s) for s in seqs] == [MAX_TOKENS] * len(seqs)

    # The two engines run at once, one thread each: on a small or busy CPU that beats giving each all the cores in
    # turn (llama.cpp's spinning threads degrade badly when oversubscribed).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"gguf": str(model.gguf_path), "sequences": seqs, "threads": 1}))
    out, err = tmp_path / "llamacpp.out", tmp_path / "llamacpp.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [llamacpp_python, "-c", LLAMACPP_SCRIPT, str(request)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=REPO,
        )

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hf = AutoModelForCausalLM.from_pretrained(model.hf_dir, dtype=torch.float32).eval()
        with torch.inference_mode():  # equal lengths: one unpadded batch
            hf_argmax = hf(input_ids=torch.tensor(seqs)).logits.argmax(dim=-1).tolist()
        del hf
        proc.wait(timeout=300)
    finally:
        torch.set_num_threads(threads)
        if proc.poll() is None:  # HF failed or llama.cpp timed out: do not leave it running
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"llama.cpp script failed ({proc.returncode}):\n{err.read_text()[-4000:]}"
    lc_argmax = json.loads(out.read_text().strip().splitlines()[-1])["argmax"]

    per_text = []
    for cid, a, b in zip(CONVERSATIONS, lc_argmax, hf_argmax, strict=True):
        assert len(a) == len(b)
        per_text.append((cid, sum(x == y for x, y in zip(a, b)), len(a)))
    agree = sum(m for _, m, _ in per_text)
    total = sum(n for _, _, n in per_text)
    detail = ", ".join(f"{cid} {m}/{n}" for cid, m, n in per_text)
    agreement = agree / total
    record_property("top1_agreement", agreement)
    print(f"teacher-forced top-1 agreement llama.cpp Q4_1 vs HF fp32: {agreement:.4f} ({agree}/{total}; {detail})")
    assert agreement >= MIN_AGREEMENT, (
        f"teacher-forced top-1 agreement {agreement:.4f} ({agree}/{total}) < {MIN_AGREEMENT}; per text: {detail}"
    )
