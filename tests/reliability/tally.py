"""What the reliability suite tried, printed at the end of `make test` (tests/conftest.py)."""

from __future__ import annotations

from collections import Counter

KINDS = ("bad configs", "bad data files", "missing services", "faults injected", "rows lost")
COUNTS: Counter[str] = Counter()
SLOWEST: dict[str, float] = {}  # kind: the longest time a case of it took to be answered
MEASURED: dict[str, float] = {}  # what a test timed on the way (seconds), for the closing note


def count(kind: str, n: int = 1, seconds: float | None = None) -> None:
    """Record n more cases of a kind (and how long one took to answer, when timed); call it
    at the end of a test, once it has passed."""
    assert kind in KINDS, kind
    COUNTS[kind] += n
    if seconds is not None:
        SLOWEST[kind] = max(SLOWEST.get(kind, 0.0), seconds)


def line() -> str | None:
    if not COUNTS:
        return None
    parts = []
    for kind in KINDS:
        slowest = f" (each answered within {SLOWEST[kind]:.1f} s)" if kind in SLOWEST else ""
        parts.append(f"{kind}: {COUNTS[kind]}{slowest}")
    return "reliability: " + ", ".join(parts)


def measured(what: str, seconds: float) -> None:
    MEASURED[what] = seconds


def measured_line() -> str | None:
    if not MEASURED:
        return None
    return "measured: " + ", ".join(f"{k} {v:.1f} s" for k, v in MEASURED.items())
