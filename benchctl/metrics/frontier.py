"""Across a sweep: what one user sees against what the server delivers, and the runs no other run beats on both.

tokens/s per user = 1 / median TPOT (the decode speed of one stream; vLLM's plot_pareto estimates it as output
throughput / concurrency, which also counts the wait for the first token); total = the run's output tokens/s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def per_user_tok_s(summary: Mapping[str, Any] | None) -> float | None:
    """1 / median TPOT of the run's completed requests; None without a TPOT."""
    median = ((summary or {}).get("tpot_s") or {}).get("median")
    return 1.0 / median if isinstance(median, int | float) and median > 0 else None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (both larger is better), by x."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best_y = [], float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return sorted(front, key=lambda i: points[i][0])
