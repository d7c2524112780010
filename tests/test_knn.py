"""The paper's k-NN study: the measure on known clouds, and `gtaray analyze knn` on a real
checkpoint written the way trials write them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gtaray import checkpoint
from gtaray.config import load_experiment
from gtaray.data.pairs import TripletStream
from gtaray.data.splits import make_splits
from gtaray.knn import source_fraction
from gtaray.method import lsd
from tests.conftest import EXPERIMENTS, run_cli


def test_identical_clouds_mix_and_separated_clouds_do_not():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(200, 16))
    same = rng.normal(size=(200, 16))
    apart = rng.normal(size=(200, 16)) + 50 * np.eye(16)[0]  # another direction entirely
    assert source_fraction(source, same, k=10) == pytest.approx(200 / 399, abs=0.05)
    assert source_fraction(source, apart, k=10) == pytest.approx(0.0, abs=0.01)


def test_analyze_knn_reads_a_trial_checkpoint(tmp_path):
    exp = load_experiment(
        EXPERIMENTS / "smoke.yaml", [f"results.dir={tmp_path}", "method.variant=source_only"]
    )
    torch.manual_seed(0)
    nets = lsd.build(exp)
    opts = lsd.make_optimizers(nets, exp)
    splits = make_splits(exp)
    stream = TripletStream(splits.source_train, splits.target_train, 2, 0)
    folder = tmp_path / "checkpoint_000"
    folder.mkdir()
    metrics = {"iteration": 6.0, "workers": 1.0, "target_miou": 0.1}
    checkpoint.save(folder, nets, opts, stream, metrics, 0, exp)
    figures = tmp_path / "fig"
    result = run_cli("analyze", "knn", str(folder), "--k", "5", "--plots", str(figures))
    assert result.returncode == 0, result.stderr
    assert "source_only" in result.stdout and "8:8" in result.stdout
    assert (figures / "knn.png").read_bytes()[:4] == b"\x89PNG"
    missing = run_cli("analyze", "knn", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "not a readable gtaray checkpoint" in missing.stderr
