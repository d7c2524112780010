"""The built-in benchmark can show a domain shift, and every curve row says whether adaptation is
happening (DESIGN: source_only must score clearly below target_oracle on the target test split).

One small grid through the CLI, as a user runs it: the demo's own file (experiments/ablations.yaml)
at 64x32 with fewer images and iterations, one seed of source_only, full and target_oracle.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import EXPERIMENTS, run_cli

pytestmark = pytest.mark.ray

SMALL = [
    "data.width=64", "data.height=32", "data.source_train=64", "data.target_train=64",
    "data.target_test=32", "train.iterations=240", "train.eval_every=120",
    "sweep.variants=[source_only, full, target_oracle]", "sweep.seeds=[0]",
]  # fmt: skip
ADVERSARIAL_DIAGNOSTICS = [
    "diag_g_l1",
    "diag_mean_l1",
    "diag_g_l1_vs_mean",
    "diag_d_fake_domain_acc",
]


def test_small_grid_shows_the_shift_and_logs_the_diagnostics(tmp_path, ray_address):
    out = tmp_path / "results"
    args = [a for o in SMALL for a in ("-o", o)]
    result = run_cli(
        "sweep", str(EXPERIMENTS / "ablations.yaml"), "--out", str(out), *args,
        env={"RAY_ADDRESS": ray_address},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.concat(pd.read_parquet(f) for f in (out / "ablations" / "trials").glob("*.parquet"))
    assert (rows["status"] == "completed").all()
    miou = rows.set_index("method.variant")["target_miou"]
    # the shift is real: the oracle beats the source-only model on the target test split
    assert miou["target_oracle"] - miou["source_only"] >= 0.05, miou.to_dict()

    curves = pd.concat(pd.read_parquet(f) for f in (out / "ablations" / "curves").glob("*.parquet"))
    assert curves.groupby("method.variant").size().to_dict() == {
        "full": 2,
        "source_only": 2,
        "target_oracle": 2,
    }
    full = curves[curves["method.variant"] == "full"]
    for column in ADVERSARIAL_DIAGNOSTICS:
        assert full[column].notna().all(), column
    assert full["diag_g_l1"].between(0, 1).all() and full["diag_mean_l1"].between(0, 1).all()
    assert (full["diag_g_l1_vs_mean"] > 0).all()
    assert full["diag_d_fake_domain_acc"].between(0, 1).all()
    assert full["f_adv"].notna().all() and (full["f_adv"] >= 0).all()
    bounds = curves[curves["method.variant"] != "full"]
    assert bounds[ADVERSARIAL_DIAGNOSTICS].isna().all().all()  # no G or D to measure
