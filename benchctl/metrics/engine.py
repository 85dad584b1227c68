"""Engine and server counters turned into metrics: speculative decoding's acceptance, the prefix cache's hit rate."""

from __future__ import annotations

from typing import Any


def spec_decode_acceptance(
    num_drafts: float | None, num_draft_tokens: float | None, num_accepted_tokens: float | None
) -> dict[str, Any] | None:
    """Speculative decoding, vLLM's definitions: acceptance rate = accepted ÷ draft tokens; mean acceptance length =
    1 + accepted ÷ drafts (sequence-steps that had a draft: the tokens such a step yields). None when nothing was
    drafted."""
    if not num_draft_tokens or num_accepted_tokens is None:
        return None
    return {
        "num_drafts": num_drafts,
        "num_draft_tokens": num_draft_tokens,
        "num_accepted_tokens": num_accepted_tokens,
        "acceptance_rate": num_accepted_tokens / num_draft_tokens,
        "mean_acceptance_length": 1 + num_accepted_tokens / num_drafts if num_drafts else None,
    }


def server_prefix_cache_hit_rate(hit_tokens: float | None, query_tokens: float | None) -> dict[str, Any] | None:
    """Server side, from its own counters over the run: prompt tokens found in the prefix cache / prompt tokens
    looked up (vLLM's prefix_cache_hits / prefix_cache_queries); None when the server counts neither. The records'
    view of the same cache is metrics.cached_prompt_fraction."""
    if hit_tokens is None or query_tokens is None:
        return None
    return {
        "hit_tokens": hit_tokens,
        "query_tokens": query_tokens,
        "hit_rate": hit_tokens / query_tokens if query_tokens > 0 else None,
    }
