"""Next-token choice for the whole batch in one pass, with one device-to-host transfer.

Random rows use the exponential race (argmax of p / E with E ~ Exp(1)), which samples exactly from p and lets each
seeded request draw its noise from its own torch.Generator while the arithmetic stays batched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from reference_engine.sequence import Sequence


@dataclass(slots=True)
class SampleResult:
    token_ids: list[int]
    logprobs: list[dict[int, float] | None]  # per row: sampled token and top-k, or None when not asked


class Sampler:
    def __init__(
        self,
        device: torch.device,
        seed: int,
        eos_token_ids: tuple[int, ...] = (),
        mode: str = "batched",
        host_transfer: str = "coalesced",
        argmax: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        """argmax: (rows, vocab) -> (rows,) int64 with torch.argmax's answers (a kernel's, e.g. the CPU ops')."""
        self.device = device
        self.argmax = argmax or (lambda scores: scores.argmax(dim=-1))
        self.eos_token_ids = list(eos_token_ids)
        self.generator = torch.Generator(device).manual_seed(seed)  # rows without a seed of their own
        self.mode, self.host_transfer = mode, host_transfer

    def __call__(self, logits: torch.Tensor, seqs: list[Sequence]) -> SampleResult:
        """logits: (num_rows, vocab) fp32, row i for seqs[i]; a sequence on consecutive rows samples its next
        tokens in order (speculative decoding checks a draft that way)."""
        if self.mode == "per_seq":
            results = [self._sample(logits[i : i + 1], [seq]) for i, seq in enumerate(seqs)]
            return SampleResult([r.token_ids[0] for r in results], [r.logprobs[0] for r in results])
        return self._sample(logits, seqs)

    def _sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> SampleResult:
        num_rows, vocab = logits.shape
        dev = logits.device
        params = [s.params for s in seqs]
        raw = logits
        # min_tokens: stop tokens (eos among them unless ignored) may not be chosen yet. Consecutive rows of one
        # sequence (a speculative draft's) choose its next tokens one position after another.
        banned, prev, ahead = [], None, 0
        for i, s in enumerate(seqs):
            ahead, prev = (ahead + 1 if s is prev else 0), s
            if s.num_output_tokens + ahead < s.params.min_tokens:
                banned += [
                    (i, t) for t in s.params.stop_token_ids + ([] if s.params.ignore_eos else self.eos_token_ids)
                ]
        if banned:
            logits = logits.clone()
            rows, cols = zip(*banned)
            logits[torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)] = float("-inf")
        token_ids = self.argmax(logits)  # (num_rows,) greedy choice
        random_rows = [i for i, p in enumerate(params) if not p.greedy]
        if random_rows:
            token_ids = self._sample_random(logits, seqs, params, random_rows, token_ids)

        want_logprobs = [p.logprobs for p in params if p.logprobs is not None]
        if not want_logprobs:
            ids = self._to_host(token_ids)
            return SampleResult(ids, [None] * num_rows)
        k = max(want_logprobs)
        logp = torch.log_softmax(raw, dim=-1)  # (num_rows, vocab), of the model's own distribution
        chosen = logp.gather(1, token_ids[:, None])  # (num_rows, 1)
        top = logp.topk(k, dim=-1) if k else None
        parts = [token_ids[:, None].double(), chosen.double()]
        if top is not None:
            parts += [top.indices.double(), top.values.double()]
        packed = self._to_host(torch.cat(parts, dim=1))  # (num_rows, 2 + 2k), one transfer
        ids, logprobs = [], []
        for row, p in zip(packed, params):
            ids.append(int(row[0]))
            if p.logprobs is None:
                logprobs.append(None)
                continue
            entry = {int(t): v for t, v in zip(row[2 : 2 + p.logprobs], row[2 + k : 2 + k + p.logprobs])}
            entry[int(row[0])] = row[1]
            logprobs.append(entry)
        return SampleResult(ids, logprobs)

    def _sample_random(self, logits, seqs, params, random_rows, greedy_ids):
        """logits: (num_rows, vocab); returns token ids (num_rows,) with random rows replaced."""
        dev = logits.device
        idx = torch.tensor(random_rows, device=dev)
        sub = logits[idx]  # (num_random, vocab)
        temps = torch.tensor([params[i].temperature for i in random_rows], device=dev, dtype=sub.dtype)
        sub = sub / temps[:, None]
        top_ks = [params[i].top_k if params[i].top_k > 0 else sub.shape[1] for i in random_rows]
        top_ps = [params[i].top_p for i in random_rows]
        if min(top_ks) < sub.shape[1] or min(top_ps) < 1.0:
            sorted_logits, order = sub.sort(dim=-1, descending=True)  # (num_random, vocab)
            k = torch.tensor(top_ks, device=dev)
            ranks = torch.arange(sub.shape[1], device=dev)
            drop = ranks[None, :] >= k[:, None]
            probs = sorted_logits.softmax(dim=-1)
            # Drop a token when the tokens ranked above it already reach top_p; the first always stays.
            drop |= (probs.cumsum(dim=-1) - probs) >= torch.tensor(top_ps, device=dev, dtype=probs.dtype)[:, None]
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            sub = torch.empty_like(sub).scatter_(1, order, sorted_logits)
        probs = sub.softmax(dim=-1)
        noise = torch.empty_like(probs)
        unseeded = [j for j, i in enumerate(random_rows) if seqs[i].generator is None]
        if unseeded:
            noise[unseeded] = torch.empty(len(unseeded), probs.shape[1], device=dev).exponential_(
                generator=self.generator
            )
        for j, i in enumerate(random_rows):
            if seqs[i].generator is not None:
                noise[j].exponential_(generator=seqs[i].generator)
        chosen = self.argmax(probs / noise)  # (num_random,)
        return greedy_ids.index_copy(0, idx, chosen)

    def _to_host(self, t: torch.Tensor) -> list:
        if self.host_transfer == "per_seq":
            return [row.tolist() if row.dim() else row.item() for row in t]
        return t.tolist()
