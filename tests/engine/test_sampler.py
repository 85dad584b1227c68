"""Sampler on synthetic logits: greedy, temperature, top-k, top-p, seeds, min_tokens, logprobs, ablation modes."""

from __future__ import annotations

import math

import pytest
import torch

from reference_engine.sampler import Sampler
from reference_engine.sampling_params import SamplingParams
from reference_engine.sequence import Sequence

VOCAB = 8


def seq(params: SamplingParams, num_outputs: int = 0) -> Sequence:
    s = Sequence("r", [0] * (3 + num_outputs), 3, params)
    if params.seed is not None:
        s.generator = torch.Generator().manual_seed(params.seed)
    return s


def logits_from_probs(probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs).log()[None, :]


def test_greedy_is_argmax_per_row():
    logits = torch.randn(5, VOCAB, generator=torch.Generator().manual_seed(0))
    out = Sampler(torch.device("cpu"), 0)(logits, [seq(SamplingParams(temperature=0)) for _ in range(5)])
    assert out.token_ids == logits.argmax(-1).tolist()
    assert out.logprobs == [None] * 5


@pytest.mark.parametrize(
    "params, allowed",
    [
        (SamplingParams(temperature=1.0, top_k=2), {0, 1}),
        (SamplingParams(temperature=1.0, top_p=0.55), {0, 1}),  # 0.4 alone is short of 0.55; 0.4+0.3 reaches it
        (SamplingParams(temperature=1.0, top_p=0.3), {0}),  # the most likely token always stays
        (SamplingParams(temperature=1.0, top_k=1), {0}),
    ],
)
def test_top_k_and_top_p_restrict_the_support(params, allowed):
    probs = [0.4, 0.3, 0.2, 0.1]
    sampler = Sampler(torch.device("cpu"), 0)
    logits = logits_from_probs(probs).repeat(400, 1)
    out = sampler(logits, [seq(params) for _ in range(400)])
    assert set(out.token_ids) == allowed


def test_sampling_follows_the_distribution_and_temperature_sharpens_it():
    probs = [0.5, 0.25, 0.125, 0.125]
    n = 4000
    sampler = Sampler(torch.device("cpu"), 1)
    counts = torch.bincount(
        torch.tensor(
            sampler(
                logits_from_probs(probs).repeat(n, 1), [seq(SamplingParams(temperature=1.0)) for _ in range(n)]
            ).token_ids
        ),
        minlength=4,
    )
    for p, c in zip(probs, counts.tolist()):
        assert abs(c / n - p) < 4 * math.sqrt(p * (1 - p) / n)
    cold = sampler(logits_from_probs(probs).repeat(n, 1), [seq(SamplingParams(temperature=0.25)) for _ in range(n)])
    expected0 = 0.5**4 / (0.5**4 + 0.25**4 + 2 * 0.125**4)  # p^(1/T), renormalized
    assert abs(cold.token_ids.count(0) / n - expected0) < 0.02


def test_seeded_rows_do_not_depend_on_the_batch():
    logits = torch.randn(6, VOCAB, generator=torch.Generator().manual_seed(3))
    alone = Sampler(torch.device("cpu"), 0)(logits[2:3], [seq(SamplingParams(temperature=1.0, seed=42))])
    batch = [seq(SamplingParams(temperature=1.0)) for _ in range(6)]
    batch[2] = seq(SamplingParams(temperature=1.0, seed=42))
    in_batch = Sampler(torch.device("cpu"), 99)(logits, batch)
    assert in_batch.token_ids[2] == alone.token_ids[0]


def test_min_tokens_masks_eos_and_stop_tokens_until_reached():
    logits = torch.tensor([[0.0, 0.0, 10.0, 9.0, 1.0, 0, 0, 0]])  # eos (2) then stop token 3 are the favourites
    sampler = Sampler(torch.device("cpu"), 0, eos_token_ids=(2,))
    params = SamplingParams(temperature=0, min_tokens=2, max_tokens=4, stop_token_ids=[3])
    assert sampler(logits, [seq(params, num_outputs=1)]).token_ids == [4]
    assert sampler(logits, [seq(params, num_outputs=2)]).token_ids == [2]
    ignore = SamplingParams(temperature=0, min_tokens=2, max_tokens=4, ignore_eos=True)
    assert sampler(logits, [seq(ignore, num_outputs=0)]).token_ids == [2]  # eos is no stop token here


def test_logprobs_are_of_the_raw_distribution():
    logits = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(4))
    params = [
        SamplingParams(temperature=0, logprobs=2),
        SamplingParams(temperature=0),
        SamplingParams(temperature=0.5, seed=1, logprobs=0),
    ]
    out = Sampler(torch.device("cpu"), 0)(logits, [seq(p) for p in params])
    logp = torch.log_softmax(logits, -1)
    top2 = logp[0].topk(2).indices.tolist()
    assert set(out.logprobs[0]) == set(top2) and out.token_ids[0] == top2[0]
    assert out.logprobs[0][top2[1]] == pytest.approx(logp[0, top2[1]].item())
    assert out.logprobs[1] is None
    assert out.logprobs[2] == {out.token_ids[2]: pytest.approx(logp[2, out.token_ids[2]].item())}


@pytest.mark.parametrize("mode, transfer", [("per_seq", "coalesced"), ("batched", "per_seq"), ("per_seq", "per_seq")])
def test_ablation_modes_give_the_same_tokens(mode, transfer):
    logits = torch.randn(5, VOCAB, generator=torch.Generator().manual_seed(5))
    params = [
        SamplingParams(temperature=0),
        SamplingParams(temperature=0.7, seed=3, top_k=4, logprobs=1),
        SamplingParams(temperature=1.2, seed=4, top_p=0.8),
        SamplingParams(temperature=0, logprobs=3),
        SamplingParams(temperature=1.0, seed=5),
    ]
    reference = Sampler(torch.device("cpu"), 0)(logits, [seq(p) for p in params])
    other = Sampler(torch.device("cpu"), 0, mode=mode, host_transfer=transfer)(logits, [seq(p) for p in params])
    assert other.token_ids == reference.token_ids
    assert other.logprobs == reference.logprobs


def test_a_kernel_argmax_answers_both_greedy_and_random_rows():
    logits = torch.randn(5, VOCAB, generator=torch.Generator().manual_seed(6))
    params = [
        SamplingParams(temperature=0),
        SamplingParams(temperature=0.8, seed=7),
        SamplingParams(temperature=0, logprobs=2),
        SamplingParams(temperature=1.0, seed=8, top_k=3),
        SamplingParams(temperature=0),
    ]
    calls = []

    def argmax(scores):
        calls.append(tuple(scores.shape))
        return scores.argmax(dim=-1)

    reference = Sampler(torch.device("cpu"), 0)(logits, [seq(p) for p in params])
    out = Sampler(torch.device("cpu"), 0, argmax=argmax)(logits, [seq(p) for p in params])
    assert out.token_ids == reference.token_ids and out.logprobs == reference.logprobs
    assert calls == [(5, VOCAB), (2, VOCAB)]  # the whole batch once, then the two random rows' race
