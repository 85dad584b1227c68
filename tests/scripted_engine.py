"""A scripted stand-in for reference_engine.LLMEngine: what StreamingEngine and the reference server call, with
no model. Each request gets one token per step until max_tokens; special prompts script the faults.

Shared by tests/engine (the streaming loop) and tests/backends (the reference server's app on this engine).
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from reference_engine.sequence import CompletionOutput, RequestOutput

POISON, BROKEN_ADD, REFUSED = [666], [667], [668]  # a step raises / adding raises half-way / refused (ValueError)
VOCAB_SIZE = 1000


class ScriptedEngine:
    def __init__(self, step_s: float = 0.0, max_model_len: int = 256):
        self.step_s = step_s  # each step sleeps this long (a client can leave mid-request)
        self.requests: dict[str, dict] = {}
        self._pending: list[RequestOutput] = []
        self.aborted: list[str] = []
        self.lock = threading.Lock()
        self.config = SimpleNamespace(max_model_len=max_model_len)
        self.model_config = SimpleNamespace(vocab_size=VOCAB_SIZE)
        # text prompts: one token per character
        self.tokenizer = SimpleNamespace(encode=lambda text: SimpleNamespace(ids=[ord(c) % VOCAB_SIZE for c in text]))
        self.block_manager = SimpleNamespace(
            num_used_blocks=0, num_total_blocks=64, num_prefix_query_tokens=0, num_prefix_hits=0, block_size=16
        )
        self.scheduler = SimpleNamespace(running=[], waiting=[])
        self.stats = SimpleNamespace(
            num_preemptions=0,
            num_generated_tokens=0,
            num_steps=0,
            num_drafts=0,
            num_draft_tokens=0,
            num_accepted_tokens=0,
        )

    def add_request(self, request_id, prompt, params):
        if list(prompt) == REFUSED:
            raise ValueError("refused")
        self.requests[request_id] = {"prompt": list(prompt), "left": params.max_tokens, "tokens": []}
        if list(prompt) == BROKEN_ADD:
            raise RuntimeError("add broke half-way")

    def abort(self, request_id):
        if self.requests.pop(request_id, None) is not None:
            self.aborted.append(request_id)
            self._pending.append(_output(request_id, [], [], "abort"))

    def has_unfinished_requests(self):
        return bool(self.requests or self._pending)

    def step(self):
        if any(r["prompt"] == POISON for r in self.requests.values()):
            raise ValueError("Overflow when unpacking long long")  # what torch said of top_k = 2**70
        time.sleep(self.step_s)
        self.stats.num_steps += 1
        outs, self._pending = self._pending, []
        for request_id, r in list(self.requests.items()):
            r["tokens"].append(len(r["tokens"]))
            r["left"] -= 1
            self.stats.num_generated_tokens += 1
            done = r["left"] == 0
            outs.append(_output(request_id, r["tokens"], r["tokens"][-1:], "length" if done else None))
            if done:
                del self.requests[request_id]
        return outs

    def close(self):
        pass


def _output(request_id, tokens, new, reason):
    text = "".join(f"<{t}>" for t in tokens)
    completion = CompletionOutput(
        0, list(tokens), list(new), text, "".join(f"<{t}>" for t in new), reason is not None, reason
    )
    return RequestOutput(request_id, [1], [completion], reason is not None)
