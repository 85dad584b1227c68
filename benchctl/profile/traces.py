"""torch.profiler Chrome traces: top operators, engine ranges and steps, idle time, and the timeline views the
report draws (nsys's traces are turned into the same events)."""

from __future__ import annotations

import gzip
import json
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any

STEP_RANGE = "engine.step"  # the range the reference engine opens around each step
STEP_PARTS = ("engine.schedule", "engine.forward", "engine.sample", "engine.detokenize")  # its children
TIMELINE_MAX_EVENTS = 1500  # per lane: the longest events (a browser draws a few thousand bars at ease)
# Events that make the host wait for the device: scalar reads (.item()) and explicit synchronizations.
SYNC_EVENTS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def load_trace(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def _union_us(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def summarize_torch_trace(path: Path, top: int = 25) -> dict[str, Any]:
    """Top operators by self time, named-range coverage and idle time between engine steps."""
    events = [e for e in load_trace(path) if e.get("ph") == "X" and "dur" in e]
    annotations = [e for e in events if e.get("cat") == "user_annotation"]
    steps = sorted((e["ts"], e["ts"] + e["dur"]) for e in annotations if e.get("name") == STEP_RANGE)
    result: dict[str, Any] = {"trace": path.name, "num_events": len(events), "num_steps": len(steps)}
    if steps:
        window = (steps[0][0], steps[-1][1])
        span = window[1] - window[0]
        named = [
            (max(e["ts"], window[0]), min(e["ts"] + e["dur"], window[1]))
            for e in annotations
            if e["ts"] < window[1] and e["ts"] + e["dur"] > window[0]
        ]
        step_time = _union_us(steps)
        result.update(
            {
                "window_s": span / 1e6,
                "range_coverage": _union_us(named) / span if span > 0 else 1.0,
                "idle_between_steps_fraction": 1 - step_time / span if span > 0 else 0.0,
                "ranges": _range_totals([e for e in annotations if e.get("name", "").startswith("engine.")]),
                # .item()-style reads and device synchronizations per step (on CPU they cost little, on a GPU
                # each one stalls the stream; a count that grows with the batch means per-sequence reads)
                "host_syncs_per_step": sum(1 for e in events if e.get("name") in SYNC_EVENTS) / len(steps),
            }
        )
    ops: dict[str, list[float]] = {}
    for e, self_us in _self_times([e for e in events if is_operator(e)]):
        ops.setdefault(e["name"], []).append(self_us)
    table = sorted(((name, sum(d), len(d)) for name, d in ops.items()), key=lambda t: -t[1])
    total = sum(t[1] for t in table) or 1.0
    result["top_operators"] = [
        {"name": n, "self_ms": t / 1e3, "calls": c, "self_share": t / total} for n, t, c in table[:top]
    ]
    if events:
        result.update(trace_views(events))
    return result


DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


def trace_views(events: list[dict]) -> dict[str, Any]:
    """What the report draws of a trace (torch's, or nsys's as nsys_trace_events): `step_split`, each engine step's
    milliseconds in its child ranges (STEP_PARTS; other = the rest of the step), and `timeline`, lanes of events
    (start and duration in ms from the first step's start, the longest TIMELINE_MAX_EVENTS of each lane)."""
    annotations = [e for e in events if e.get("cat") == "user_annotation"]
    steps = sorted((e for e in annotations if e.get("name") == STEP_RANGE), key=lambda e: e["ts"])
    origin = steps[0]["ts"] if steps else min(e["ts"] for e in events)
    host_ops = _outermost([e for e in events if is_operator(e) and e.get("cat") not in DEVICE_CATS])
    lanes = {
        "engine steps": steps,
        "engine phases": [e for e in annotations if e.get("name") in STEP_PARTS],
        # worker.run spans the whole run: its admit / emit ranges are what the lane shows
        "worker": [
            e for e in annotations if str(e.get("name", "")).startswith("worker.") and e.get("name") != "worker.run"
        ],
        "host ops (outermost)": host_ops,
        "device kernels": [e for e in events if e.get("cat") in DEVICE_CATS],
    }
    timeline = []
    for lane, found in lanes.items():
        shown = sorted(sorted(found, key=lambda e: -e["dur"])[:TIMELINE_MAX_EVENTS], key=lambda e: e["ts"])
        if shown:
            timeline.append(
                {
                    "lane": lane,
                    "of": len(found),
                    "name": [str(e["name"]) for e in shown],
                    "start_ms": [round((e["ts"] - origin) / 1e3, 4) for e in shown],
                    "dur_ms": [round(e["dur"] / 1e3, 4) for e in shown],
                }
            )
    views: dict[str, Any] = {"timeline": timeline}
    if steps:
        views["step_split"] = _step_split(steps, [e for e in annotations if e.get("name") in STEP_PARTS], origin)
    return views


def _outermost(ops: list[dict]) -> list[dict]:
    """The operators not nested in another one on the same thread (what the host was doing, once)."""
    out: list[dict] = []
    end_of: dict[object, float] = {}  # thread -> end of its current outermost operator
    for e in sorted(ops, key=lambda e: (str(e.get("tid")), e["ts"], -e["dur"])):
        if e["ts"] >= end_of.get(e.get("tid"), float("-inf")):
            out.append(e)
            end_of[e.get("tid")] = e["ts"] + e["dur"]
    return out


def _step_split(steps: list[dict], children: list[dict], origin: float) -> dict[str, Any]:
    children = sorted(children, key=lambda e: e["ts"])
    starts = [c["ts"] for c in children]
    parts: dict[str, list[float]] = {name.removeprefix("engine."): [] for name in STEP_PARTS}
    parts["other"] = []
    for step in steps:
        end = step["ts"] + step["dur"]
        inside = dict.fromkeys(STEP_PARTS, 0.0)
        for c in children[bisect_left(starts, step["ts"]) : bisect_right(starts, end)]:
            if c.get("tid") == step.get("tid") and c["ts"] + c["dur"] <= end + 1e-3:
                inside[c["name"]] += c["dur"]
        for name, us in inside.items():
            parts[name.removeprefix("engine.")].append(round(us / 1e3, 4))
        parts["other"].append(round(max(step["dur"] - sum(inside.values()), 0.0) / 1e3, 4))
    return {"start_ms": [round((s["ts"] - origin) / 1e3, 4) for s in steps], "parts": parts}


def is_operator(event: dict) -> bool:
    """torch's own ops and device kernels, and the ranges (user annotations) named `<library>::<kernel>` that an
    engine opens around kernels it calls outside torch's dispatcher (the reference engine's `cpu_ops::packed_linear`,
    `cpu_ops::paged_attention`, ...): without them a profile would not show what such an engine spends its time on."""
    cat = event.get("cat")
    return cat in ("cpu_op", "kernel", "gpu_op") or (cat == "user_annotation" and "::" in event.get("name", ""))


def _self_times(ops: list[dict]) -> list[tuple[dict, float]]:
    """Each op's duration minus its direct children's on the same thread (nested ops are not double counted)."""
    out: list[tuple[dict, float]] = []
    by_thread: dict[tuple, list[dict]] = {}
    for e in ops:
        by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    for events in by_thread.values():
        events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[list] = []  # [event, end_us, children_us]
        for e in events:
            while stack and e["ts"] >= stack[-1][1]:
                done = stack.pop()
                out.append((done[0], done[0]["dur"] - done[2]))
            if stack:
                stack[-1][2] += e["dur"]
            stack.append([e, e["ts"] + e["dur"], 0.0])
        out.extend((d[0], d[0]["dur"] - d[2]) for d in stack)
    return out


def _range_totals(events: list[dict]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = {}
    for e in events:
        t = totals.setdefault(e["name"], {"total_ms": 0.0, "count": 0})
        t["total_ms"] += e["dur"] / 1e3
        t["count"] += 1
    return totals
