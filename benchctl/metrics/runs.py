"""Across runs: each run's value against the first (the baseline), and the mean and spread of repetitions."""

from __future__ import annotations

from collections.abc import Sequence


def ratios_to_first(values: Sequence[float | None]) -> list[float | None]:
    """Each value ÷ the first; None where a value is missing or the first is missing or zero."""
    base = values[0] if values else None
    return [v / base if v is not None and base else None for v in values]


def mean_present(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are there; None when none is."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def spread_fraction(values: Sequence[float | None]) -> float | None:
    """(max − min) ÷ mean over the values that are there: how far one repetition can be trusted; None without a
    mean."""
    present = [v for v in values if v is not None]
    mean = mean_present(present)
    return (max(present) - min(present)) / mean if mean else None
