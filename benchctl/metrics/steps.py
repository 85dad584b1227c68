"""Engine steps (steps.jsonl, run.json engine_stats): where a step's time goes.

Imported on its own, not from benchctl.metrics, so that the CLI starts without pandas.
"""

from __future__ import annotations

# The parts an engine step's time is split into (steps.jsonl columns and engine_stats totals, seconds).
STEP_TIME_PARTS = ("schedule_s", "forward_s", "sample_s", "detokenize_s")
