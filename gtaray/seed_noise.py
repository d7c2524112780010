"""Statistics for a handful of seeds: how often a variant beats a baseline, and how many seeds
a difference of the observed size needs.

    probability_of_improvement(full, source_only)        # P(X > Y) + P(X = Y) / 2
    bootstrap_interval(full, source_only)                # its 95% percentile interval
    seeds_needed(delta=0.04, std_a=0.02, std_b=0.03)     # per variant, t-test at power 0.8

P(X > Y) is rliable's "probability of improvement" (Agarwal et al., NeurIPS 2021): the chance
that a run of X, drawn at random, scores above a random run of Y (the Mann-Whitney U statistic
over n_x * n_y). Its interval is a stratified bootstrap: each variant's runs are resampled
with replacement, on their own, with a fixed generator so that a report prints the same
figures every time.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
COUNTS_PER_PASS = 4_000_000  # the bootstrap's memory: rank counts held at once


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2 over all pairs of a run of x and a run of y; NaN if either is
    empty."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not len(x) or not len(y):
        return math.nan
    wins = (x[:, None] > y[None, :]).mean()
    ties = (x[:, None] == y[None, :]).mean()
    return float(wins + ties / 2)


def bootstrap_interval(
    x: np.ndarray,
    y: np.ndarray,
    level: float = 0.95,
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """The percentile interval of probability_of_improvement under a stratified bootstrap;
    (NaN, NaN) under 2 runs on either side (one run resamples to itself)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or len(y) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    pick_x = rng.integers(0, len(x), size=(reps, len(x)))
    pick_y = rng.integers(0, len(y), size=(reps, len(y)))
    # Each value as its rank among the distinct values of both: a resample's wins and ties
    # then come from counting y's ranks, O(n) per resample instead of all x-y pairs (a
    # thousand runs a side made the pairwise form seconds long).
    distinct, codes = np.unique(np.concatenate([x, y]), return_inverse=True)
    code_x, code_y = codes[: len(x)], codes[len(x) :]
    k = len(distinct)
    values = np.empty(reps)
    chunk = max(1, COUNTS_PER_PASS // k)  # resamples per pass
    for start in range(0, reps, chunk):
        xs, ys = code_x[pick_x[start : start + chunk]], code_y[pick_y[start : start + chunk]]
        rows = np.arange(len(xs))[:, None] * k
        counts = np.bincount((ys + rows).ravel(), minlength=len(xs) * k).reshape(len(xs), k)
        below = np.cumsum(counts, axis=1) - counts  # y's below each rank
        wins = np.take_along_axis(below, xs, axis=1).sum(axis=1)
        ties = np.take_along_axis(counts, xs, axis=1).sum(axis=1)
        values[start : start + chunk] = (wins + ties / 2) / (len(x) * len(y))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def t_test_power(d: float, n: int, alpha: float = 0.05) -> float:
    """Power of a two-sided two-sample t-test with n runs per variant, for an effect of d
    standard deviations (the noncentral t distribution)."""
    df = 2 * n - 2
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = d * math.sqrt(n / 2)
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def seeds_needed(
    delta: float,
    std_a: float,
    std_b: float,
    alpha: float = 0.05,
    power: float = 0.8,
    most: int = 10_000,
) -> int | None:
    """Seeds per variant for a two-sided t-test at `alpha` to detect a difference of `delta`
    with probability `power`, if the runs spread as observed (the two stds pooled). None when
    it cannot be said: no difference, no spread, or more than `most`."""
    values = (delta, std_a, std_b)
    if any(v is None or math.isnan(v) for v in values) or delta == 0:
        return None
    spread = math.sqrt((std_a**2 + std_b**2) / 2)
    if spread == 0:
        return None
    d = abs(delta) / spread
    low, high = 1, 2  # the power rises with n: bracket the answer by doubling, then bisect
    while t_test_power(d, high, alpha) < power:
        low, high = high, high * 2
        if low > most:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if t_test_power(d, middle, alpha) >= power else (middle, high)
    return high if high <= most else None
