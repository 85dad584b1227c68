"""Load shapes, precomputed like every benchctl schedule (docs/load-shapes.md): time-bounded runs, vLLM's ramps,
stages, and the warm-up / cool-down windows that steady-state metrics leave out.

- `--duration T` draws arrivals until T (as many requests as the schedule needs, at most MAX_SCHEDULED_REQUESTS);
- a ramp without a duration is vLLM 0.32's rule (`_get_current_request_rate`): request i's rate is
  start + (end - start) * i / (n - 1) (linear) or start * (end / start) ** (i / (n - 1)) (exponential), and its gap
  is drawn at that rate; with a duration the rate is the same function of time t / T, and arrivals come from the
  time-rescaled process (unit-rate gaps through the inverse of the cumulative rate);
- `--stages "2:30s,4:30s"`: each stage its own rate for its own time, arrivals restarting at the stage's start;
- windows by time (`10s`: arrivals in the first / last 10 s) or by count (`20r`: the first / last 20 requests).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from benchctl.workload.base import WorkloadError
from benchctl.workload.schedule import arrival_times, schedule_description

RAMP_STRATEGIES = ("linear", "exponential")
# Every request is a RequestSpec with its prompt in memory before the run: a cap, with a clear error, beats a
# schedule that exhausts the memory (100k ShareGPT prompts are ~0.5 GB).
MAX_SCHEDULED_REQUESTS = 100_000
_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}
_QUANTITY = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m|h|r|)\s*")


def parse_seconds(value: Any, name: str) -> float:
    """60, "60", "60s", "1.5m", "500ms" -> seconds (finite, > 0)."""
    return _quantity(value, name, allow_requests=False)[1]


def parse_window(value: Any, name: str) -> tuple[str, float]:
    """A window: ("s", seconds) from 10 / "10s" / "1m", or ("r", count) from "20r"."""
    return _quantity(value, name, allow_requests=True)


def _quantity(value: Any, name: str, allow_requests: bool) -> tuple[str, float]:
    example = "10s or 20r" if allow_requests else "60s, 1.5m or 500ms"
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = repr(float(value))
    elif isinstance(value, str):
        text = value
    else:
        raise WorkloadError(f"{name} must be a time such as {example}, got {value!r}")
    match = _QUANTITY.fullmatch(text.lower())
    unit = match.group(2) if match else None
    if match is None or (unit == "r" and not allow_requests):
        raise WorkloadError(f"{name} must be a time such as {example}, got {value!r}")
    amount = float(match.group(1))
    if unit == "r":
        if amount != int(amount) or amount < 1:
            raise WorkloadError(f"{name} in requests must be a whole number >= 1, got {value!r}")
        return "r", float(int(amount))
    seconds = amount * _SECONDS[unit or ""]
    if not 0 < seconds < math.inf:
        raise WorkloadError(f"{name} must be more than 0 seconds, got {value!r}")
    return "s", seconds


def parse_stages(text: Any) -> list[tuple[float, float]]:
    """ "2:30s,4:30s,8:30s" -> [(rate req/s, seconds), ...]."""
    if not isinstance(text, str) or not text.strip():
        raise WorkloadError(f"--stages expects RATE:TIME items such as 2:30s,4:30s, got {text!r}")
    stages = []
    for item in text.split(","):
        rate_text, sep, time_text = item.partition(":")
        try:
            rate = float(rate_text)
        except ValueError:
            rate = math.nan
        if not sep or not 0 < rate < math.inf:
            raise WorkloadError(f"--stages expects RATE:TIME items with a finite rate > 0, got {item.strip()!r}")
        stages.append((rate, parse_seconds(time_text, f"--stages item {item.strip()!r}")))
    return stages


def shaped(o: Any) -> bool:
    """Does the workload have a load shape beyond --num-prompts at one rate?"""
    return o.duration is not None or o.ramp_up_strategy is not None or o.stages is not None


def check_shape(o: Any, trace: bool) -> None:
    """The load-shape options of WorkloadOptions `o`, on their own and with the others."""
    if o.duration is not None:
        parse_seconds(o.duration, "--duration")
    for name in ("warmup", "cooldown"):
        if getattr(o, name) is not None:
            parse_window(getattr(o, name), f"--{name}")
    if o.stages is not None:
        parse_stages(o.stages)
    given = [
        n
        for n, v in (("--duration", o.duration), ("--stages", o.stages), ("--ramp-up-strategy", o.ramp_up_strategy))
        if v is not None
    ]
    windows = [n for n, v in (("--warmup", o.warmup), ("--cooldown", o.cooldown)) if v is not None]
    if o.kind == "conversations" and given + windows:
        raise WorkloadError(
            f"{', '.join(given + windows)}: load shapes and windows apply to single-turn workloads; "
            f"--workload conversations takes --num-prompts conversations"
        )
    if trace and given:
        raise WorkloadError(
            f"{', '.join(given)}: a trace replays its own timestamps; use --trace-window START:END "
            f"and --trace-speed to cut or stretch it"
        )
    if len(given) > 1 and not (given == ["--duration", "--ramp-up-strategy"]):
        raise WorkloadError(f"{' and '.join(given)} cannot be combined (stages have their own durations)")
    if (o.ramp_up_start_rps is not None or o.ramp_up_end_rps is not None) and o.ramp_up_strategy is None:
        raise WorkloadError("--ramp-up-start-rps and --ramp-up-end-rps need --ramp-up-strategy linear|exponential")
    if o.ramp_up_strategy is not None:
        _check_ramp(o)
    if (given or windows) and not math.isinf(o.request_rate) and (o.stages or o.ramp_up_strategy):
        raise WorkloadError("--request-rate is set by the ramp or the stages; leave it out")
    if o.duration is not None and o.ramp_up_strategy is None and math.isinf(o.request_rate):
        raise WorkloadError(
            "--duration needs a finite --request-rate or a ramp: all-at-once arrivals have no time to fill"
        )
    counted = [n for n in given if n != "--ramp-up-strategy"]  # a ramp without a duration spans --num-prompts
    if counted and o.num_prompts is not None:
        raise WorkloadError(f"{counted[0]} decides how many requests the run sends; leave out --num-prompts")


def _check_ramp(o: Any) -> None:
    if o.ramp_up_strategy not in RAMP_STRATEGIES:
        raise WorkloadError(
            f"--ramp-up-strategy must be one of {', '.join(RAMP_STRATEGIES)}, got {o.ramp_up_strategy!r}"
        )
    start, end = o.ramp_up_start_rps, o.ramp_up_end_rps
    if start is None or end is None:
        raise WorkloadError("--ramp-up-strategy needs both --ramp-up-start-rps and --ramp-up-end-rps")
    for name, v in (("--ramp-up-start-rps", start), ("--ramp-up-end-rps", end)):
        if not isinstance(v, int | float) or isinstance(v, bool) or not 0 < v < math.inf:
            raise WorkloadError(f"{name} must be a finite rate > 0, got {v!r}")
    if start > end:
        raise WorkloadError(f"--ramp-up-start-rps ({start:g}) must not exceed --ramp-up-end-rps ({end:g}), as in vLLM")


def _unit_gaps(rng: np.random.Generator, kind: str, burstiness: float, n: int) -> np.ndarray:
    """n gaps of a unit-rate renewal process: exponential (poisson), Gamma(b, 1/b) (gamma) or exactly 1."""
    if kind == "constant":
        return np.ones(n)
    shape = 1.0 if kind == "poisson" else burstiness
    return rng.gamma(shape, 1.0 / shape, size=n)


def _unit_points(rng: np.random.Generator, kind: str, burstiness: float, total: float) -> np.ndarray:
    """Points 0 = u_0 < u_1 < ... of a unit-rate process below `total` (the cumulative rate at the deadline)."""
    if total > MAX_SCHEDULED_REQUESTS:
        raise WorkloadError(
            f"the schedule needs about {total:,.0f} requests, more than the {MAX_SCHEDULED_REQUESTS:,}"
            f" a run holds; shorten --duration or lower the rate"
        )
    points = np.zeros(1)
    while points[-1] < total:
        more = int(total - points[-1] + 6 * math.sqrt(total) + 16)
        points = np.concatenate([points, points[-1] + np.cumsum(_unit_gaps(rng, kind, burstiness, more))])
    points = points[points < total]
    if points.size > MAX_SCHEDULED_REQUESTS:
        raise WorkloadError(
            f"the schedule drew {points.size:,} requests, more than the {MAX_SCHEDULED_REQUESTS:,} a "
            f"run holds; shorten --duration or lower the rate"
        )
    return points


def _ramp_inverse(u: np.ndarray, strategy: str, start: float, end: float, span_s: float) -> np.ndarray:
    """t with cumulative rate Λ(t) = u, for rate(t) = the ramp from start to end over span_s."""
    if strategy == "linear":  # Λ(t) = a t + (b - a) t^2 / (2T); the root in its cancellation-free form
        c = (end - start) / (2 * span_s)
        return 2 * u / (start + np.sqrt(start * start + 4 * c * u))
    ratio = end / start  # exponential: Λ(t) = a T (r^(t/T) - 1) / ln r
    if ratio == 1:
        return u / start
    return span_s * np.log1p(u * math.log(ratio) / (start * span_s)) / math.log(ratio)


def _ramp_total(strategy: str, start: float, end: float, span_s: float) -> float:
    if strategy == "linear":
        return (start + end) / 2 * span_s
    return start * span_s if end == start else start * span_s * (end / start - 1) / math.log(end / start)


def ramp_rate(strategy: str, start: float, end: float, progress: float | np.ndarray) -> float | np.ndarray:
    """vLLM's rate at a progress in [0, 1] (request index / (n - 1), or t / T with a duration)."""
    if strategy == "linear":
        return start + (end - start) * progress
    return start * (end / start) ** progress


def shaped_arrivals(o: Any, count: int, kind: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(arrival offsets in s, stage index per request or None, the schedule's description). `count` is only used
    without a duration or stages (they decide the count)."""
    rng = np.random.default_rng(o.seed)
    schedule = schedule_description(o.request_rate, o.burstiness, kind, o.max_concurrency)
    if o.stages is not None:
        parts: list[np.ndarray] = []
        stage_of: list[np.ndarray] = []
        stages, t = [], 0.0
        for k, (rate, span_s) in enumerate(parse_stages(o.stages)):
            points = t + _unit_points(rng, kind, o.burstiness, rate * span_s) / rate
            parts.append(points)
            stage_of.append(np.full(points.size, k))
            stages.append(
                {"stage": k, "request_rate": rate, "start_s": t, "end_s": t + span_s, "requests": int(points.size)}
            )
            t += span_s
        schedule.update(kind=f"stages ({kind})", request_rate=None, duration_s=t, stages=stages)
        return np.concatenate(parts), np.concatenate(stage_of), schedule
    strategy, start, end = o.ramp_up_strategy, o.ramp_up_start_rps, o.ramp_up_end_rps
    duration_s = parse_seconds(o.duration, "--duration") if o.duration is not None else None
    if strategy is not None and duration_s is not None:
        u = _unit_points(rng, kind, o.burstiness, _ramp_total(strategy, start, end, duration_s))
        arrivals = _ramp_inverse(u, strategy, start, end, duration_s)
    elif strategy is not None:  # vLLM: request i's gap drawn at request i's rate; benchctl's first leaves at 0
        rates = ramp_rate(strategy, start, end, np.arange(count) / max(count - 1, 1))
        gaps = _unit_gaps(rng, kind, o.burstiness, count) / rates
        arrivals = np.cumsum(gaps) - gaps[0]
    elif duration_s is not None:
        arrivals = _unit_points(rng, kind, o.burstiness, o.request_rate * duration_s) / o.request_rate
    else:
        return arrival_times(count, o.request_rate, o.burstiness, kind, o.seed), None, schedule
    if strategy is not None:
        schedule.update(
            kind=f"ramp-{strategy} ({kind})",
            request_rate=None,
            ramp={
                "strategy": strategy,
                "start_rps": start,
                "end_rps": end,
                "over": "duration" if duration_s is not None else "requests",
                "rule": "vLLM 0.32 vllm/benchmarks/serve.py _get_current_request_rate",
            },
        )
    schedule["duration_s"] = duration_s
    return arrivals, None, schedule


def windows(o: Any, arrivals: np.ndarray, end_s: float | None) -> tuple[list[str] | None, dict | None]:
    """(phase per request: warmup | steady | cooldown, the windows' description) for arrivals in order; (None,
    None) without --warmup or --cooldown. Time windows are cut at the schedule's end (the duration, else the last
    arrival); the steady window's span is what steady-state throughput is divided by (benchctl.metrics.windows)."""
    if o.warmup is None and o.cooldown is None:
        return None, None
    n = arrivals.size
    end = end_s if end_s is not None else float(arrivals[-1]) if n else 0.0
    phase = np.full(n, "steady", dtype=object)
    steady_start_s, steady_end_s = 0.0, end
    if o.warmup is not None:
        unit, amount = parse_window(o.warmup, "--warmup")
        cut = arrivals < amount if unit == "s" else np.arange(n) < amount
        phase[cut] = "warmup"
        steady_start_s = amount if unit == "s" else float(arrivals[int(min(amount, n - 1))])
    if o.cooldown is not None:
        unit, amount = parse_window(o.cooldown, "--cooldown")
        cut = arrivals >= end - amount if unit == "s" else np.arange(n) >= n - amount
        phase[cut & (phase != "warmup")] = "cooldown"
        steady_end_s = end - amount if unit == "s" else float(arrivals[max(int(n - amount), 0)]) if n else end
    counts = {p: int((phase == p).sum()) for p in ("warmup", "steady", "cooldown")}
    if counts["steady"] == 0:
        raise WorkloadError(
            f"--warmup {o.warmup} and --cooldown {o.cooldown} leave no request in the steady state "
            f"({n} requests in {end:g} s)"
        )
    return phase.tolist(), {
        "warmup": o.warmup,
        "cooldown": o.cooldown,
        "steady_start_s": steady_start_s,
        "steady_end_s": max(steady_end_s, steady_start_s),
        "requests": counts,
    }
