"""When may a worker hand a request to its engine: arrival time reached and concurrency cap not hit.

The schedule (`arrival_s`) is precomputed by the harness; the worker only compares it with its own
clock, so IPC latency never shifts arrivals. Used by every backend that accepts requests over time.
"""

from __future__ import annotations

from collections import deque


class Admission:
    def __init__(self, requests: list[dict], max_concurrency: int | None = None):
        self._pending = deque(sorted(requests, key=lambda r: r["arrival_s"]))
        self.max_concurrency = max_concurrency
        self.in_flight = 0
        self.peak_in_flight = 0

    def pending(self) -> int:
        return len(self._pending)

    def next_arrival_s(self) -> float | None:
        """Arrival time of the next request that is waiting only on the clock (None if none)."""
        if not self._pending or self._capped():
            return None
        return self._pending[0]["arrival_s"]

    def due(self, now_s: float) -> list[dict]:
        """Requests to submit now; counts them as in flight."""
        admitted = []
        while self._pending and self._pending[0]["arrival_s"] <= now_s and not self._capped():
            admitted.append(self._pending.popleft())
            self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return admitted

    def finished(self, count: int = 1) -> None:
        if count > self.in_flight:
            raise RuntimeError("more requests finished than were admitted")
        self.in_flight -= count

    def _capped(self) -> bool:
        return self.max_concurrency is not None and self.in_flight >= self.max_concurrency
