"""benchctl's samplers against vLLM's own, run in the managed vllm environment: the same requests, one by one.

ShareGPT: the same prompts (text and token ids) and output lengths, in the same order, as vLLM 0.32's
ShareGPTDataset.sample for the same file, seed and count, on the real ShareGPT's complete entries (vLLM's json.load
refuses the packaged file, cut mid-way, so it gets them as an array), with oversampling, a fixed output length
and a tokenizer that adds a BOS token. random: the same lengths wherever vLLM's ranges are benchctl's.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from engine_envs import engine_python

from benchctl.workload import Tokenizer, WorkloadError, WorkloadOptions, build_workload, bundled_datasets
from benchctl.workload.datasets import sharegpt_file
from benchctl.workload.random_tokens import length_range, random_sampler, sample_random, vllm_length_ranges
from benchctl.workload.reader import read_sharegpt
from benchctl.workload.sharegpt import sample_sharegpt

pytestmark = pytest.mark.slow  # vLLM's import alone takes 10-20 s here

VLLM_SAMPLER = r"""
import json, sys
from transformers import AutoTokenizer
from vllm.benchmarks.datasets.datasets import RandomDataset, ShareGPTDataset

out, tokenizers = [], {}
for job in json.load(open(sys.argv[1])):
    tok = tokenizers.setdefault(job["tokenizer"], AutoTokenizer.from_pretrained(job["tokenizer"]))
    if job["kind"] == "sharegpt":
        requests = ShareGPTDataset(dataset_path=job["path"], random_seed=job["seed"]).sample(
            tokenizer=tok, num_requests=job["n"], output_len=job["output_len"])
    else:
        requests = RandomDataset(random_seed=job["seed"]).sample(
            tokenizer=tok, num_requests=job["n"], input_len=job["input_len"], output_len=job["output_len"],
            range_ratio=job["range_ratio"])
    out.append([{"prompt": r.prompt, "ids": tok(r.prompt, add_special_tokens=False).input_ids,
                 "prompt_len": r.prompt_len, "output_len": r.expected_output_len} for r in requests])
json.dump(out, open(sys.argv[2], "w"))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory, model_dir):
    """The real ShareGPT's complete entries as a JSON array (its bytes up to the cut, closed), the bundled
    sample, and the bundled tokenizer as it is and with a BOS token added to every encoding."""
    folder = tmp_path_factory.mktemp("vllm-sample")
    real = read_sharegpt(sharegpt_file()[0])
    complete = folder / "sharegpt_complete.json"
    with sharegpt_file()[0].open("rb") as f:
        complete.write_bytes(f.read(real.bytes_used) + b"\n]\n")
    bos = folder / "tokenizer-bos"
    bos.mkdir()
    for name in ("config.json", "tokenizer_config.json"):
        shutil.copy(model_dir / name, bos / name)
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}},
    }
    (bos / "tokenizer.json").write_text(json.dumps(spec))
    return {
        "real": complete,
        "real_entries": len(real.entries),
        "sample": bundled_datasets()["sharegpt-sample"],
        "model": model_dir,
        "bos": bos,
        "folder": folder,
    }


SHAREGPT_JOBS = [  # (file, tokenizer, seed, number of requests, --sharegpt-output-len)
    ("real", "model", 0, 150, None),
    ("real", "model", 7, 150, None),
    ("real", "bos", 0, 150, None),  # vLLM counts the BOS in both lengths: the filters see one token more
    ("sample", "model", 0, 400, None),  # 395 pass the filters: vLLM oversamples 5
    ("sample", "model", 3, 60, 2),  # a fixed output length, exempt from the 4-token minimum
]
RANDOM_JOBS = [  # (tokenizer, seed, number of requests, input_len, output_len, range_ratio)
    ("model", 0, 100, 100, 40, 0.5),  # 100*0.5 and 40*0.5 are integers: the same ranges as vLLM's
    ("model", 5, 100, 64, 64, 0.25),
    ("model", 1, 100, 144, 144, 0.7778),  # workload W: benchctl [32, 256], vLLM [31, 257]
]


@pytest.fixture(scope="module")
def vllm_samples(files):
    python = engine_python("vllm")
    jobs = [
        {"kind": "sharegpt", "path": str(files[f]), "tokenizer": str(files[t]), "seed": s, "n": n, "output_len": out}
        for f, t, s, n, out in SHAREGPT_JOBS
    ]
    jobs += [
        {
            "kind": "random",
            "tokenizer": str(files[t]),
            "seed": s,
            "n": n,
            "input_len": i,
            "output_len": o,
            "range_ratio": r,
        }
        for t, s, n, i, o, r in RANDOM_JOBS
    ]
    (files["folder"] / "jobs.json").write_text(json.dumps(jobs))
    (files["folder"] / "sampler.py").write_text(VLLM_SAMPLER)
    result = subprocess.run(
        [
            python,
            str(files["folder"] / "sampler.py"),
            str(files["folder"] / "jobs.json"),
            str(files["folder"] / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    samples = json.loads((files["folder"] / "out.json").read_text())
    return samples[: len(SHAREGPT_JOBS)], samples[len(SHAREGPT_JOBS) :]


@pytest.mark.parametrize(
    "job", range(len(SHAREGPT_JOBS)), ids=[f"{f}-{t}-seed{s}-n{n}-out{o}" for f, t, s, n, o in SHAREGPT_JOBS]
)
def test_sharegpt_sample_is_vllm_bench_s_request_by_request(files, vllm_samples, job):
    name, tokenizer, seed, n, output_len = SHAREGPT_JOBS[job]
    tok = Tokenizer(files[tokenizer])
    theirs = vllm_samples[0][job]
    ours, source = sample_sharegpt(files[name], tok, n, seed, output_len, oversample=True)
    assert len(theirs) == len(ours) == n
    for i, (r, v) in enumerate(zip(ours, theirs)):
        assert (r.prompt, r.prompt_token_ids, r.prompt_len + tok.num_special_tokens, r.output_len) == (
            v["prompt"],
            v["ids"],
            v["prompt_len"],
            v["output_len"],
        ), f"request {i}"
    if name == "sample":
        assert source["oversampled"] == (5 if n == 400 else 0)
    if source["oversampled"]:
        with pytest.raises(WorkloadError, match="vllm bench would repeat random picks"):
            sample_sharegpt(files[name], tok, n, seed, output_len)
    if tokenizer == "bos":
        assert tok.num_special_tokens == 1


def test_the_packaged_file_samples_what_vllm_samples_from_its_complete_entries(files, vllm_samples, tok):
    """`--dataset sharegpt` (the cut file itself) gives the requests vLLM gives for the complete entries."""
    assert files["real_entries"] == 17_671
    workload = build_workload(WorkloadOptions(dataset="sharegpt", num_prompts=150, seed=7), tok)
    theirs = vllm_samples[0][1]
    assert [(r.prompt_token_ids, r.output_len) for r in workload.requests] == [
        (v["ids"], v["output_len"]) for v in theirs
    ]
    assert workload.spec()["sampler"]["statement"] == "sample identical to vllm bench (seed 7, 150 requests)"


@pytest.mark.parametrize(
    "job", range(len(RANDOM_JOBS)), ids=[f"in{i}-out{o}-ratio{r}" for _, _, _, i, o, r in RANDOM_JOBS]
)
def test_random_lengths_are_vllm_bench_s_where_the_ranges_agree(files, vllm_samples, job):
    tokenizer, seed, n, input_len, output_len, ratio = RANDOM_JOBS[job]
    tok = Tokenizer(files[tokenizer])
    theirs = vllm_samples[1][job]
    ours, _ = sample_random(tok, n, input_len, output_len, ratio, seed)
    # vLLM's lengths are numpy draws from its own ranges, in benchctl's order (inputs, then outputs)
    (in_low, in_high), (out_low, out_high) = vllm_length_ranges(input_len, output_len, ratio, tok.num_special_tokens)
    rng = np.random.default_rng(seed)
    assert rng.integers(in_low, in_high + 1, size=n).tolist() == [v["prompt_len"] for v in theirs]
    assert rng.integers(out_low, out_high + 1, size=n).tolist() == [v["output_len"] for v in theirs]
    same = random_sampler(tok, input_len, output_len, ratio)["lengths_identical_to_vllm_bench"]
    assert same == (
        (length_range(input_len, ratio), length_range(output_len, ratio)) == ((in_low, in_high), (out_low, out_high))
    )
    lengths = [(r.prompt_len, r.output_len) for r in ours]
    assert (lengths == [(v["prompt_len"], v["output_len"]) for v in theirs]) == same
    assert same == (ratio != 0.7778)
