"""Stopping a serving run early: when the server cannot keep up (guidellm's over-saturation stop), or when too many
requests fail (--max-error-rate). A pure detector fed each finished record; the caller does the stopping.

Three tests, each on the run clock (seconds since t0) at the finish of the record just seen:
- backlog: over the last window, fewer requests finished than arrived on the schedule by more than chance allows
  (the deficit exceeds DEFICIT_SIGMAS standard deviations of a Poisson count of the arrivals, and MIN_DEFICIT) in
  PATIENCE windows in a row: the completion rate stays below the arrival rate and the backlog grows;
- TTFT: the median TTFT of the requests finished in the last window is TTFT_GROWTH times the first requests' and
  its slope against the send time is positive beyond SLOPE_T standard errors, in PATIENCE windows in a row;
- errors: more than max_error_rate of the last ERROR_WINDOW finished requests failed (after MIN_FINISHED).
The median end-to-end latency of the first MIN_FINISHED requests is about the time the backlog of a server that keeps
up takes to settle; the window is WINDOW_E2ELS times it, within [MIN_WINDOW_S, MAX_WINDOW_S], and the first one
begins once that time has passed. Against a server that keeps up, the deficit is a stationary fluctuation and TTFT
flat, so neither test holds twice in a row.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchctl.metrics import is_completed, request_latencies


@dataclass(slots=True)
class StopRules:
    on_saturation: bool = True
    max_error_rate: float | None = None
    min_window_s: float = 2.0
    max_window_s: float = 30.0
    window_e2els: float = 3.0
    min_finished: int = 20
    error_window: int = 50
    deficit_sigmas: float = 3.0
    min_deficit: int = 5
    ttft_growth: float = 2.0
    slope_t: float = 3.0
    patience: int = 2


class SaturationDetector:
    """Feed every finished record to add(); once a test fires, `stopped` says why and when (and add returns it)."""

    def __init__(self, arrivals_s: Sequence[float], rules: StopRules | None = None):
        self.rules = rules or StopRules()
        self.arrivals = np.sort(np.asarray(arrivals_s, dtype=np.float64))
        self.finishes: list[float] = []  # sorted finish times of every record seen
        self.recent_errors: deque[bool] = deque(maxlen=self.rules.error_window)
        self.first_ttft_s: list[float] = []
        self.first_e2el_s: list[float] = []
        self.done: list[tuple[float, float, float]] = []  # completed: (finish_s, start_s, ttft_s)
        self.window_s: float | None = None
        self.settle_s = 0.0
        self.next_check_s = 0.0
        self.streaks = {"backlog": 0, "ttft": 0}
        self.stopped: dict[str, Any] | None = None
        self.checks: list[dict[str, Any]] = []  # every window test's numbers (for run.json and the tests)

    def add(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        if self.stopped is not None:
            return None
        now = record.get("finish_s")
        if now is None:
            return None  # never sent: says nothing about the server
        bisect.insort(self.finishes, now)
        ok = is_completed(record)
        self.recent_errors.append(not ok)
        if ok:
            lat = request_latencies(record)
            self.done.append((now, record.get("start_s") or 0.0, lat["ttft_s"] or 0.0))
            if len(self.first_ttft_s) < self.rules.min_finished:
                self.first_ttft_s.append(lat["ttft_s"] or 0.0)
                self.first_e2el_s.append(lat["e2el_s"] or 0.0)
        rules = self.rules
        seen = len(self.finishes)
        if rules.max_error_rate is not None and seen >= rules.min_finished:
            rate = sum(self.recent_errors) / len(self.recent_errors)
            if rate > rules.max_error_rate:
                return self._stop(
                    "error-rate",
                    now,
                    f"{rate:.0%} of the last {len(self.recent_errors)} requests "
                    f"failed, more than --max-error-rate {rules.max_error_rate:g}",
                )
        return self.check(now)

    def check(self, now: float) -> dict[str, Any] | None:
        """The window tests at run time `now`, at most once per window (add calls it; a timer may too)."""
        rules = self.rules
        if self.stopped is not None or not rules.on_saturation or now < self.next_check_s:
            return None
        if self.window_s is None:
            if len(self.first_e2el_s) < rules.min_finished:
                return None
            self.settle_s = float(np.median(self.first_e2el_s))
            self.window_s = min(max(rules.window_e2els * self.settle_s, rules.min_window_s), rules.max_window_s)
        w = self.window_s
        first_s = float(self.arrivals[0]) if self.arrivals.size else 0.0
        if now < first_s + self.settle_s + w:  # the first window begins once a backlog that keeps up has settled
            return None
        self.next_check_s = now + w
        arrived = int(np.searchsorted(self.arrivals, now, "right") - np.searchsorted(self.arrivals, now - w, "right"))
        finished = bisect.bisect_right(self.finishes, now) - bisect.bisect_right(self.finishes, now - w)
        deficit = arrived - finished
        backlog = int(np.searchsorted(self.arrivals, now, "right")) - bisect.bisect_right(self.finishes, now)
        behind = deficit >= max(rules.min_deficit, rules.deficit_sigmas * math.sqrt(max(arrived, 1)))
        growth, slope_t = self._ttft_trend(now, w)
        rising = growth >= rules.ttft_growth and slope_t >= rules.slope_t
        self.streaks["backlog"] = self.streaks["backlog"] + 1 if behind else 0
        self.streaks["ttft"] = self.streaks["ttft"] + 1 if rising else 0
        self.checks.append(
            {
                "t_s": now,
                "window_s": w,
                "arrived": arrived,
                "finished": finished,
                "backlog": backlog,
                "ttft_growth": growth,
                "ttft_slope_t": slope_t,
            }
        )
        if self.streaks["backlog"] >= rules.patience:
            return self._stop(
                "over-saturated",
                now,
                f"{finished} requests finished in the last {w:.3g} s while "
                f"{arrived} arrived ({backlog} waiting or in flight)",
            )
        if self.streaks["ttft"] >= rules.patience:
            return self._stop(
                "ttft-growing",
                now,
                f"median TTFT {growth:.3g}x the first requests' and still rising ({slope_t:.3g} standard errors)",
            )
        return None

    def _ttft_trend(self, now: float, w: float) -> tuple[float, float]:
        """(recent median TTFT / the first requests', t statistic of TTFT's slope over send time, last 2 windows)."""
        recent = [(start, ttft) for finish, start, ttft in self.done if finish > now - 2 * w]
        last = [ttft for finish, _, ttft in self.done if finish > now - w]
        base = float(np.median(self.first_ttft_s)) if self.first_ttft_s else math.nan
        if len(recent) < 8 or not last or not base > 0:
            return 0.0, 0.0
        x, y = np.array(recent).T
        x = x - x.mean()
        sxx = float((x * x).sum())
        if sxx <= 0:
            return float(np.median(last)) / base, 0.0
        slope = float((x * (y - y.mean())).sum()) / sxx
        residual = y - y.mean() - slope * x
        se = math.sqrt(float((residual * residual).sum()) / max(len(y) - 2, 1) / sxx)
        return float(np.median(last)) / base, slope / se if se > 0 else (math.inf if slope > 0 else 0.0)

    def _stop(self, reason: str, now: float, detail: str) -> dict[str, Any]:
        self.stopped = {
            "reason": reason,
            "t_s": now,
            "detail": detail,
            "finished": len(self.finishes),
            "window_s": self.window_s,
        }
        return self.stopped


def stop_rules(schedule: Mapping[str, Any] | None) -> StopRules | None:
    """The rules a workload's schedule asks for (its `stop`: --stop-on-saturation, --max-error-rate); None: none."""
    stop = (schedule or {}).get("stop")
    if not stop:
        return None
    return StopRules(on_saturation=bool(stop.get("on_saturation")), max_error_rate=stop.get("max_error_rate"))


def watch(
    detector: SaturationDetector, emit: Callable[[dict], None], stop: Callable[[str], None]
) -> Callable[[dict], None]:
    """`emit`, feeding the detector after each record; the first time it fires, stop(reason) (the load client's
    interrupt: nothing more is sent, requests in flight end as failed with the reason)."""

    def on_record(record: dict) -> None:
        emit(record)
        stopped = detector.add(record)
        if stopped is not None:
            stop(f"stopped early ({stopped['reason']}): {stopped['detail']}")

    return on_record
