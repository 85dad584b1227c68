"""When may a worker hand a request to its engine: arrival time reached and concurrency cap not hit.

The schedule (`arrival_s`) is precomputed by the harness; the worker only compares it with its own
clock, so IPC latency never shifts arrivals. Used by every backend that accepts requests over time.

A request with `after` set (a conversation's later turn) has no precomputed arrival: it is held until the
request it follows has finished, then arrives `think_time_s` later (its `arrival_s` is set then, so its record
says when it really became due).
"""

from __future__ import annotations

import heapq
import itertools


class Admission:
    def __init__(self, requests: list[dict], max_concurrency: int | None = None):
        self._by_id = {r["request_id"]: r for r in requests}
        self._held = {r["after"]: r for r in requests if r.get("after")}  # previous request id -> next turn
        # (arrival, submission order, request): a heap, ties in the order requests were given or released
        self._order = itertools.count()
        self._pending = [(r["arrival_s"], next(self._order), r) for r in requests if not r.get("after")]
        heapq.heapify(self._pending)
        orphans = sorted(after for after in self._held if after not in self._by_id)
        if orphans:
            raise ValueError(f"requests follow unknown request ids: {', '.join(orphans[:3])}")
        self.max_concurrency = max_concurrency
        self.in_flight = 0
        self.peak_in_flight = 0

    def pending(self) -> int:
        """Requests not yet admitted, including turns that wait for their previous turn."""
        return len(self._pending) + len(self._held)

    def next_arrival_s(self) -> float | None:
        """Arrival time of the next request that is waiting only on the clock (None if none)."""
        if not self._pending or self._capped():
            return None
        return self._pending[0][0]

    def due(self, now_s: float) -> list[dict]:
        """Requests to submit now; counts them as in flight."""
        admitted = []
        while self._pending and self._pending[0][0] <= now_s and not self._capped():
            admitted.append(heapq.heappop(self._pending)[2])
            self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if not admitted and self.in_flight == 0 and not self._pending and self._held:
            raise RuntimeError(f"{len(self._held)} requests wait for requests that will never finish")
        return admitted

    def finished(
        self, request_id: str | None = None, now_s: float = 0.0, output_token_ids: list[int] | None = None
    ) -> None:
        """A request left the engine (done or failed) at now_s; the turn that follows it becomes due. A follower
        of --history generated gets its prompt now: this request's prompt + the tokens it generated + its suffix."""
        if self.in_flight < 1:
            raise RuntimeError("more requests finished than were admitted")
        self.in_flight -= 1
        follower = self._held.pop(request_id, None) if request_id is not None else None
        if follower is not None and follower.get("suffix_ids") is not None and output_token_ids is not None:
            follower["prompt_token_ids"] = (
                list(self._by_id[request_id]["prompt_token_ids"])
                + list(output_token_ids)
                + list(follower["suffix_ids"])
            )
        if follower is not None:
            follower["arrival_s"] = now_s + float(follower.get("think_time_s") or 0.0)
            heapq.heappush(self._pending, (follower["arrival_s"], next(self._order), follower))

    def _capped(self) -> bool:
        return self.max_concurrency is not None and self.in_flight >= self.max_concurrency
