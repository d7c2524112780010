"""The statistic behind every ratio `gtaray bench` reports: measured interleaved (A, B, A, B...),
reported as the median of the per-repeat ratios with their range and values. Checked with
deterministic measurements, and the table shows the range next to the median."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from rich.console import Console

from gtaray.bench import _windows, show
from gtaray.ratios import interleaved, ratios, spread


def test_spread_is_median_min_max_and_values_in_order():
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "low": 1.0, "high": 3.0, "values": [3, 1, 2]}
    assert spread([1, 2, 3, 10])["median"] == 2.5  # even count: mean of the middle two
    assert spread([4])["median"] == 4.0
    with pytest.raises(ValueError):
        spread([])


def test_interleaved_alternates_a_and_b():
    calls: list[str] = []

    def a() -> float:
        calls.append("a")
        return 10.0

    def b() -> float:
        calls.append("b")
        return 5.0

    out = interleaved(a, b, 3)
    assert calls == ["a", "b"] * 3
    assert out["a"] == [10.0] * 3 and out["b"] == [5.0] * 3
    assert out["values"] == [0.5] * 3 and out["median"] == out["low"] == out["high"] == 0.5


def test_interleaved_ratio_survives_a_drifting_machine():
    # The machine's speed changes between pairs (another process, a clock change): each pair
    # sees the same speed, so B/A stays 1.2 while the raw rates move 4x.
    speed = iter([1.0, 1.0, 0.5, 0.5, 2.0, 2.0])
    out = interleaved(lambda: 10 * next(speed), lambda: 12 * next(speed), 3)
    assert out["a"] == [10, 5, 20] and out["b"] == [12, 6, 24]
    assert out["values"] == pytest.approx([1.2] * 3)
    assert out["low"] == pytest.approx(1.2) and out["high"] == pytest.approx(1.2)


def test_one_disturbed_repeat_moves_the_range_not_the_median():
    b_values = iter([11.0, 30.0, 9.0])  # repeat 2 was disturbed: one ratio is off
    out = interleaved(lambda: 10.0, lambda: next(b_values), 3)
    assert out["median"] == pytest.approx(1.1)
    assert out["low"] == pytest.approx(0.9) and out["high"] == pytest.approx(3.0)
    assert out["values"] == pytest.approx([1.1, 3.0, 0.9])


def test_bad_repeats_and_unpaired_ratios_are_refused():
    with pytest.raises(ValueError):
        interleaved(lambda: 1.0, lambda: 1.0, 0)
    with pytest.raises(ValueError):
        ratios([1.0, 2.0], [1.0])
    assert ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]


def test_trainer_windows_leave_out_the_warm_up_window_and_keep_order():
    rows = [{"iteration": i, "iters_per_second": float(i)} for i in (9, 3, 6)]  # any order
    result = SimpleNamespace(metrics_dataframe=pd.DataFrame(rows), metrics=rows[0])
    assert [w["iteration"] for w in _windows(result, steps=3)] == [6, 9]
    # No history kept (another Ray): the last report is the one window there is.
    bare = SimpleNamespace(metrics_dataframe=None, metrics={"iteration": 6})
    assert _windows(bare, steps=3) == [{"iteration": 6}]


def test_table_shows_a_ratio_with_its_range():
    results = {
        "size": [64, 32],
        "width": 0.0625,
        "device_name": "cpu",
        "trainer": {
            "ray_over_bare_ratio": 0.98,
            "ray_over_bare_ratio_spread": spread([0.95, 0.98, 1.01]),
            "bare_its_values": [19.0, 20.0],
        },
    }
    console = Console(record=True, width=200)
    show(results, console)
    text = console.export_text()
    assert "trainer.ray_over_bare_ratio" in text and "0.98 [0.95, 1.01]" in text
    assert "_spread" not in text and "_values" not in text  # shown with the median only
