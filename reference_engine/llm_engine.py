"""LLMEngine: add requests, call `step()` until done. Each step is schedule -> forward -> sample -> postprocess."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence as SequenceABC
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from reference_engine.attention import get_attention_ops, resolve_attention_backend
from reference_engine.block_manager import BlockManager
from reference_engine.config import EngineConfig, ModelConfig
from reference_engine.detokenizer import IncrementalDetokenizer, find_stop, load_tokenizer
from reference_engine.model_runner import ModelRunner
from reference_engine.profiling import annotate, enable_nvtx, nvtx_enabled, nvtx_requested
from reference_engine.sampler import Sampler
from reference_engine.sampling_params import SamplingParams
from reference_engine.scheduler import Scheduler, SchedulerOutput
from reference_engine.sequence import CompletionOutput, Request, RequestOutput, Sequence, SequenceStatus
from reference_engine.stats import EngineStats, StepStats

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name != "auto":
        return _DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class LLMEngine:
    def __init__(self, model_dir: str | Path, **options):
        try:
            self.config = cfg = EngineConfig(str(model_dir), **options)
        except TypeError as exc:
            raise ValueError(f"{exc}; engine options are: {', '.join(EngineConfig.option_names())}") from None
        self.model_config = ModelConfig.from_dir(model_dir)
        if nvtx_requested(cfg.nvtx):
            enable_nvtx()
        if cfg.max_model_len > self.model_config.max_position_embeddings:
            raise ValueError(
                f"max_model_len={cfg.max_model_len} exceeds the model's "
                f"{self.model_config.max_position_embeddings} positions"
            )
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.attention_backend = resolve_attention_backend(cfg.attention_backend, self.device.type)
        self.tokenizer = load_tokenizer(model_dir)
        self.runner = ModelRunner(
            cfg, self.model_config, self.device, self.dtype, get_attention_ops(self.attention_backend)
        )
        contiguous = cfg.kv_layout == "contiguous"
        self.block_manager = BlockManager(
            self.runner.num_blocks,
            cfg.block_size,
            cfg.enable_prefix_caching,
            cfg.watermark,
            cfg.max_model_len if contiguous else None,
        )
        if contiguous and self.block_manager.reserve_blocks > self.runner.num_blocks:
            raise ValueError(
                f"kv_layout='contiguous' reserves max_model_len={cfg.max_model_len} tokens per "
                f"sequence, more than the cache's {self.runner.num_blocks * cfg.block_size} slots"
            )
        self.scheduler = Scheduler(cfg, self.block_manager)
        self.sampler = Sampler(
            self.device,
            cfg.seed,
            self.model_config.eos_token_ids,
            cfg.sampler,
            cfg.host_transfer,
            self.runner.ops.argmax,
        )
        self.detokenizer = IncrementalDetokenizer(self.tokenizer)
        self.requests: dict[str, Request] = {}
        self.stats = EngineStats()
        self._pending_outputs: list[RequestOutput] = []  # made outside step(): aborts
        self._detok_pool = ThreadPoolExecutor(1, "detokenize") if cfg.detokenize == "thread" else None
        self._detok_future: Future | None = None
        self._request_counter = itertools.count()
        self._step_accepted = 0  # draft tokens kept this step

    # -- requests -------------------------------------------------------------------------------------------

    def add_request(
        self,
        request_id: str,
        prompt: str | list[int],
        sampling_params: SamplingParams | None = None,
        arrival_time_s: float | None = None,
    ) -> None:
        params = sampling_params or SamplingParams()
        if request_id in self.requests:
            raise ValueError(f"request {request_id!r} already exists")
        if params.stop and self.config.detokenize != "inline":
            raise ValueError("stop strings need detokenize='inline'")
        token_ids = self.tokenizer.encode(prompt).ids if isinstance(prompt, str) else [int(t) for t in prompt]
        if not token_ids:
            raise ValueError(f"request {request_id!r}: empty prompt")
        request = Request(request_id, token_ids, params, arrival_time_s or time.time())
        seq = Sequence(request_id, list(token_ids), len(token_ids), params)
        if params.seed is not None:
            seq.generator = torch.Generator(self.device).manual_seed(params.seed)
        request.seqs.append(seq)
        if params.n > 1 and self.config.kv_layout == "contiguous":
            # No sharing in a contiguous layout: each sample prefills the prompt into its own reservation.
            request.seqs += [seq.fork(i) for i in range(1, params.n)]
            request.forked = True
        self.requests[request_id] = request
        for s in request.seqs:
            self.scheduler.add(s)

    def abort(self, request_id: str) -> None:
        request = self.requests.pop(request_id, None)
        if request is None:
            return
        for seq in request.seqs:
            if not seq.is_finished:
                self.scheduler.abort(seq)
        self._pending_outputs.append(self._request_output(request, {}, {}))

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests or self._pending_outputs or self._detok_future)

    # -- the step -------------------------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        """One iteration: returns an output for every request that got tokens (or finished) in it."""
        with annotate("engine.step"):
            return self._step()

    def _step(self) -> list[RequestOutput]:
        t0 = time.perf_counter()
        self._step_accepted = 0
        with annotate("engine.schedule"):
            sched = self.scheduler.schedule()
            kv_used, kv_filled = self.block_manager.num_used_blocks, self.block_manager.num_filled_slots
        t1 = t2 = time.perf_counter()
        new_tokens: dict[int, list[int]] = {}
        touched: dict[str, Request] = {s.request_id: self.requests[s.request_id] for s in sched.failed}
        if sched.scheduled:
            with annotate("engine.forward"):
                logits, seqs = self.runner.execute(sched)  # logits: (num_sampled, vocab)
            t2 = time.perf_counter()
            # Drafts leave token_ids before sampling, so each row's sampler sees its own position (min_tokens).
            drafts = {s.seq.seq_id: s.seq.token_ids[-s.num_draft :] for s in sched.scheduled if s.num_draft}
            for s in sched.scheduled:
                if s.num_draft:
                    del s.seq.token_ids[-s.num_draft :]
            with annotate("engine.sample"):
                logits, seqs = self._fork_new_parents(logits, seqs)
                result = self.sampler(logits, seqs)
        t3 = time.perf_counter()
        with annotate("engine.detokenize"):
            # Thread mode: the previous step's text must be done before these tokens land in the sequences.
            ready = self._collect_detokenized()
            if sched.scheduled:
                row = 0
                while row < len(seqs):
                    seq = seqs[row]
                    draft = drafts.get(seq.seq_id, [])
                    rows = 1 + len(draft)
                    new_tokens[seq.seq_id] = self._append_tokens(
                        seq, result.token_ids[row : row + rows], result.logprobs[row : row + rows], draft
                    )
                    touched[seq.request_id] = self.requests[seq.request_id]
                    row += rows
            outputs = self._postprocess(touched, new_tokens)
            self.scheduler.free_finished()
        t4 = time.perf_counter()
        self._record_stats(
            sched, sum(map(len, new_tokens.values())), kv_used, kv_filled, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
        )
        pending, self._pending_outputs = self._pending_outputs, []
        return pending + ready + outputs

    def _fork_new_parents(self, logits: torch.Tensor, seqs: list[Sequence]):
        """A request with n > 1 whose prompt just finished becomes n sequences sharing the prompt blocks;
        all n sample from the parent's logits row. Returns logits (num_rows, vocab) and a sequence per row."""
        rows, row_seqs = [], []
        for i, seq in enumerate(seqs):
            request = self.requests[seq.request_id]
            if request.params.n > 1 and not request.forked:
                children = [seq.fork(j) for j in range(1, request.params.n)]
                self.scheduler.fork(seq, children)
                request.seqs += children
                request.forked = True
                rows += [i] * request.params.n
                row_seqs += [seq] + children
            else:
                rows.append(i)
                row_seqs.append(seq)
        if len(rows) == len(seqs):
            return logits, seqs
        return logits[torch.tensor(rows, device=logits.device)], row_seqs

    def _append_tokens(self, seq: Sequence, token_ids: list[int], logprobs: list, draft: list[int]) -> list[int]:
        """Add a row's sampled token to seq. With a draft (row j + 1 saw draft[:j + 1]), keep draft tokens while
        they equal the model's greedy choice at their position, then add the choice after the last one kept.
        Stops at a finishing token. Returns the tokens added."""
        num_draft = len(draft)
        accepted = 0
        while accepted < num_draft and draft[accepted] == token_ids[accepted]:
            accepted += 1
        added = []
        for token_id, token_logprobs in zip(token_ids[: accepted + 1], logprobs):
            seq.token_ids.append(token_id)
            if token_logprobs is not None:
                seq.logprobs.append(token_logprobs)
                seq.cumulative_logprob += token_logprobs[token_id]
            added.append(token_id)
            self._check_finished(seq, token_id)
            if seq.is_finished:
                break
        if num_draft:
            # K/V is valid up to the last kept draft token; the newest token's is computed next step.
            self.block_manager.truncate(seq, seq.num_tokens - 1)
            self.scheduler.proposer.observe(seq, num_draft, accepted)
            self._step_accepted += accepted
        return added

    def _check_finished(self, seq: Sequence, token_id: int) -> None:
        p = seq.params
        if token_id in p.stop_token_ids:
            seq.finish_reason, seq.stop_reason = "stop", token_id
        elif not p.ignore_eos and token_id in self.model_config.eos_token_ids:
            seq.finish_reason = "stop"
        elif seq.num_output_tokens >= p.max_tokens or seq.num_tokens >= self.config.max_model_len:
            seq.finish_reason = "length"
        else:
            return
        seq.status = SequenceStatus.FINISHED

    def _postprocess(self, touched: dict[str, Request], new_tokens: dict[int, list[int]]) -> list[RequestOutput]:
        mode = self.config.detokenize
        deltas: dict[int, str] = {}
        if mode == "inline":
            for request in touched.values():
                for seq in request.seqs:
                    if seq.seq_id in new_tokens:
                        deltas[seq.seq_id] = self._detokenize(seq, len(seq.token_ids), seq.is_finished)
        outputs = [self._request_output(r, new_tokens, deltas) for r in touched.values()]
        for request in touched.values():
            if request.is_finished:
                self.requests.pop(request.request_id, None)
        if mode != "thread" or not outputs:
            return outputs
        # The detokenize thread fills the text while the next step schedules and runs the model; the outputs
        # come out of that next step.
        jobs = [
            (seq, co, len(seq.token_ids), seq.is_finished)
            for r, out in zip(touched.values(), outputs)
            for seq, co in zip(r.seqs, out.outputs)
            if seq.seq_id in new_tokens
        ]
        self._detok_future = self._detok_pool.submit(self._detokenize_job, jobs, outputs)
        return []

    def _collect_detokenized(self) -> list[RequestOutput]:
        if self._detok_future is None:
            return []
        ready, self._detok_future = self._detok_future.result(), None
        return ready

    def _detokenize(self, seq: Sequence, upto: int, finished: bool) -> str:
        """Text delta of seq.token_ids[:upto]; applies stop strings; flushes held-back bytes at the end."""
        delta = self.detokenizer.step(seq, upto)
        if seq.params.stop:
            start = len(seq.text) - len(delta)
            if (stop := find_stop(seq, delta)) is not None:
                seq.finish_reason, seq.stop_reason, seq.status = "stop", stop, SequenceStatus.FINISHED
                return seq.text[start:]
        if finished:
            delta += self.detokenizer.flush(seq, upto)
        return delta

    def _detokenize_job(self, jobs, outputs: list[RequestOutput]) -> list[RequestOutput]:
        for seq, completion, upto, finished in jobs:
            completion.text_delta = self._detokenize(seq, upto, finished)
            completion.text = seq.text
        return outputs

    def _request_output(
        self, request: Request, new_tokens: dict[int, list[int]], deltas: dict[int, str]
    ) -> RequestOutput:
        completions = [
            CompletionOutput(
                index=seq.index,
                token_ids=seq.output_token_ids,
                new_token_ids=new_tokens.get(seq.seq_id, []),
                text=seq.text,
                text_delta=deltas.get(seq.seq_id, ""),
                finished=seq.is_finished,
                finish_reason=seq.finish_reason,
                stop_reason=seq.stop_reason,
                logprobs=None if seq.logprobs is None else list(seq.logprobs),
                cumulative_logprob=None if seq.logprobs is None else seq.cumulative_logprob,
            )
            for seq in request.seqs
        ]
        error = next((s.error for s in request.seqs if s.error), None)
        return RequestOutput(
            request.request_id,
            request.prompt_token_ids,
            completions,
            request.is_finished,
            request.seqs[0].num_cached_tokens,
            error,
        )

    def _record_stats(
        self,
        sched: SchedulerOutput,
        num_generated: int,
        kv_used: int,
        kv_filled: int,
        times_s: tuple[float, float, float, float],
    ) -> None:
        bm = self.block_manager
        schedule_s, forward_s, sample_s, detokenize_s = times_s
        decoding = [s for s in sched.scheduled if s.num_new_tokens - s.num_draft == 1]
        decode_tokens = sum(s.num_new_tokens for s in decoding)
        self.stats.record(
            StepStats(
                step=self.stats.num_steps,
                num_running=len(self.scheduler.running),
                num_waiting=len(self.scheduler.waiting),
                num_scheduled_seqs=len(sched.scheduled),
                num_decode_tokens=decode_tokens,
                num_prefill_tokens=sched.num_batched_tokens - decode_tokens,
                num_kv_blocks_used=kv_used,
                num_kv_blocks_total=bm.num_total_blocks,
                num_token_slots_filled=kv_filled,
                num_token_slots_allocated=kv_used * bm.block_size,
                num_preemptions=len(sched.preempted),
                num_prefix_hit_blocks=sched.num_prefix_hit_blocks,
                num_generated_tokens=num_generated,
                num_decode_seqs=len(decoding),
                num_draft_tokens=sum(s.num_draft for s in decoding),
                num_accepted_tokens=self._step_accepted,
                num_drafts=sum(1 for s in decoding if s.num_draft),
                schedule_s=schedule_s,
                forward_s=forward_s,
                sample_s=sample_s,
                detokenize_s=detokenize_s,
            )
        )

    # -- conveniences ---------------------------------------------------------------------------------------

    def generate(
        self,
        prompts: str | list[int] | SequenceABC[str | list[int]],
        sampling_params: SamplingParams | SequenceABC[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Run prompts to completion; returns their final outputs in prompt order."""
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        if sampling_params is None or isinstance(sampling_params, SamplingParams):
            sampling_params = [sampling_params or SamplingParams()] * len(prompts)
        if len(sampling_params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(sampling_params)} sampling params")
        ids = [f"generate-{next(self._request_counter)}" for _ in prompts]
        for request_id, prompt, params in zip(ids, prompts, sampling_params):
            self.add_request(request_id, prompt, params)
        final: dict[str, RequestOutput] = {}
        wanted = set(ids)
        while len(final) < len(ids):
            for out in self.step():
                if out.finished and out.request_id in wanted:
                    final[out.request_id] = out
        return [final[i] for i in ids]

    def info(self) -> dict:
        from reference_engine.kernels import cpu_ops

        return {
            "model_dir": self.config.model_dir,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "attention_backend": self.attention_backend,
            "gemm": self.runner.gemm,
            "gguf_blocks": self.runner.model.gguf_blocks,
            "cpu_kernels": cpu_ops.info(),  # the ISA path the CPU kernels were built for; None: not used
            "random_weights_seed": self.runner.model.random_weights_seed,  # None: the checkpoint's weights
            "kv_layout": self.config.kv_layout,
            "block_size": self.config.block_size,
            "num_kv_blocks_total": self.block_manager.num_total_blocks,
            "kv_cache_bytes": self.runner.kv_cache_bytes,
            "max_model_len": self.config.max_model_len,
            "max_num_seqs": self.config.max_num_seqs,
            "max_num_batched_tokens": self.config.max_num_batched_tokens,
            "enable_prefix_caching": self.config.enable_prefix_caching,
            "enable_chunked_prefill": self.config.enable_chunked_prefill,
            "sampler": self.config.sampler,
            "host_transfer": self.config.host_transfer,
            "detokenize": self.config.detokenize,
            "speculative": self.config.speculative,
            "nvtx": nvtx_enabled(),
            **(
                {
                    "num_speculative_tokens": self.config.num_speculative_tokens,
                    "prompt_lookup_min": self.config.prompt_lookup_min,
                    "prompt_lookup_max": self.config.prompt_lookup_max,
                }
                if self.config.speculative != "off"
                else {}
            ),
        }

    def stats_summary(self) -> dict:
        bm = self.block_manager
        summary = self.stats.summary()
        summary.update(
            {
                "num_prefix_queried_blocks": bm.num_prefix_queries,
                "prefix_cache_hit_rate": bm.num_prefix_hits / bm.num_prefix_queries if bm.num_prefix_queries else 0.0,
                # vLLM's definition (prefix_cache_hits / prefix_cache_queries): over all prompt tokens admitted
                "prefix_cache_token_hit_rate": (
                    bm.num_prefix_hits * bm.block_size / bm.num_prefix_query_tokens
                    if bm.num_prefix_query_tokens
                    else None
                ),
                "num_cow_copies": bm.num_cow_copies,
                "num_kv_blocks_total": bm.num_total_blocks,
                "attention_backend": self.attention_backend,
                "gemm": self.runner.gemm,
                "kv_layout": self.config.kv_layout,
                "block_size": self.config.block_size,
                "kv_cache_bytes": self.runner.kv_cache_bytes,
            }
        )
        return summary

    def reset_stats(self) -> None:
        """Start a new cumulative summary (the block manager's counters keep running)."""
        self.stats = EngineStats(keep_steps=self.stats.keep_steps)

    def close(self) -> None:
        if self._detok_pool is not None:
            self._detok_pool.shutdown(wait=True)
