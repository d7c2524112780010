"""What the reliability suite tried, printed at the end of `make test` (tests/conftest.py)."""

from __future__ import annotations

from collections import Counter

KINDS = ("bad configs", "bad data files", "faults injected", "rows lost")
COUNTS: Counter[str] = Counter()


def count(kind: str, n: int = 1) -> None:
    """Record n more cases of a kind; call it at the end of a test, once it has passed."""
    assert kind in KINDS, kind
    COUNTS[kind] += n


def line() -> str | None:
    if not COUNTS:
        return None
    return "reliability: " + ", ".join(f"{kind}: {COUNTS[kind]}" for kind in KINDS)
