"""Ratios of two speeds that mean something: measured interleaved (A, B, A, B, ...) so that a
slow drift of the machine (another process, a frequency change) falls on both sides, and
reported as the median and range of the per-repeat ratios (`gtaray bench`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, lowest and highest of `values`, and the values themselves in the order taken."""
    if not values:
        raise ValueError("spread of no values")
    values = [float(v) for v in values]
    return {
        "median": statistics.median(values),
        "low": min(values),
        "high": max(values),
        "values": values,
    }


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-repeat ratios of paired measurements (same length, same order)."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators for {len(denominators)} denominators")
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def interleaved(
    measure_a: Callable[[], float], measure_b: Callable[[], float], repeats: int
) -> dict[str, Any]:
    """Measure A, B, A, B, ... (`repeats` pairs) and return the `spread` of B/A per pair, plus
    the raw measurements `a` and `b` in the order taken.

    B/A of adjacent measurements, not median(B)/median(A): a change of the machine's speed
    during the run moves both members of a pair, so the ratios stay put while the raw
    figures drift, and the range of the ratios says how far one repeat can be trusted.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        a.append(float(measure_a()))
        b.append(float(measure_b()))
    return spread(ratios(b, a)) | {"a": a, "b": b}
