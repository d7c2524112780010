"""The small-sample statistics against values computed by hand (and textbook tables)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gtaray.report import power_note, summarise
from gtaray.seed_noise import (
    bootstrap_interval,
    probability_of_improvement,
    seeds_needed,
    t_test_power,
)


def test_probability_of_improvement_counts_wins_and_half_the_ties():
    # Pairs of (x, y): 3>1, 3<4, 3>2 | 4>1, 4=4, 4>2 | 5>1, 5>4, 5>2: 7 wins, 1 tie of 9.
    assert probability_of_improvement([3, 4, 5], [1, 4, 2]) == pytest.approx(7.5 / 9)
    assert probability_of_improvement([1], [2]) == 0.0
    assert math.isnan(probability_of_improvement([], [1.0]))


def _bootstrap_by_hand(x, y, reps, seed, level=0.95):
    """The same stratified bootstrap, one resample at a time."""
    rng = np.random.default_rng(seed)
    draws_x = rng.integers(0, len(x), size=(reps, len(x)))
    draws_y = rng.integers(0, len(y), size=(reps, len(y)))
    values = []
    for i in range(reps):
        xs, ys = np.asarray(x)[draws_x[i]], np.asarray(y)[draws_y[i]]
        wins = sum(a > b for a in xs for b in ys) + sum(a == b for a in xs for b in ys) / 2
        values.append(wins / (len(xs) * len(ys)))
    tail = (1 - level) / 2 * 100
    return tuple(np.percentile(values, [tail, 100 - tail]))


def test_bootstrap_interval_matches_a_loop_and_brackets_the_estimate(monkeypatch):
    x, y = [0.31, 0.27, 0.29, 0.35], [0.25, 0.28, 0.22]
    low, high = bootstrap_interval(x, y, reps=300, seed=4)
    assert (low, high) == pytest.approx(_bootstrap_by_hand(x, y, 300, 4))
    assert low <= probability_of_improvement(x, y) <= high
    assert bootstrap_interval([2, 3], [0, 1]) == (1.0, 1.0)  # every resample: all wins
    # Many runs with ties, resampled in several passes: still the pairwise count.
    monkeypatch.setattr("gtaray.seed_noise.COUNTS_PER_PASS", 1000)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 30, 70) / 100, rng.integers(0, 25, 60) / 100
    assert bootstrap_interval(x, y, reps=200, seed=2) == pytest.approx(
        _bootstrap_by_hand(list(x), list(y), 200, 2)
    )
    assert all(math.isnan(v) for v in bootstrap_interval([1.0], [0.0, 1.0]))


def test_seeds_needed_reproduces_cohens_table():
    # Two-sided two-sample t-test, alpha 0.05, power 0.8 (Cohen 1988, Table 2.4.1).
    for d, n in ((0.5, 64), (0.8, 26), (1.0, 17)):
        assert seeds_needed(d, 1.0, 1.0) == n, d
        assert t_test_power(d, n) >= 0.8 > t_test_power(d, n - 1)
    # The pooled spread of std 0.01 and 0.03 is sqrt(0.0005); Δ 0.02 is d = 0.894.
    assert seeds_needed(0.02, 0.01, 0.03) == seeds_needed(0.02 / math.sqrt(0.0005), 1, 1)
    assert seeds_needed(0.0, 0.01, 0.01) is None and seeds_needed(0.1, 0.0, 0.0) is None
    assert seeds_needed(0.1, math.nan, 0.02) is None


def test_the_ablation_summary_carries_them_per_variant():
    view = pd.DataFrame(
        {
            "experiment": "e",
            "method.variant": ["source_only"] * 3 + ["full"] * 3,
            "train.seed": [0, 1, 2] * 2,
            "status": "completed",
            "miou": [0.20, 0.22, 0.24, 0.23, 0.27, 0.25],
            "miou13": math.nan,
        }
    )
    table = summarise(view).set_index("variant")
    full = table.loc["full"]
    assert full["p_improvement"] == pytest.approx(8 / 9)  # 0.23 loses to 0.24 only
    assert full["p_improvement_low"] <= 8 / 9 <= full["p_improvement_high"]
    assert full["seeds_needed"] == seeds_needed(0.03, 0.02, 0.02)
    assert math.isnan(table.loc["source_only", "p_improvement"])
    assert f"full {int(full['seeds_needed'])}." in power_note(table.reset_index())
