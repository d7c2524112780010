"""F's step decay (the released code's schedule) and feature_d's adversarial units."""

from __future__ import annotations

import pytest
import torch

from gtaray.config import load_experiment
from gtaray.data.synthetic import example_batch
from gtaray.method import lsd
from tests.conftest import EXPERIMENTS

SMOKE = EXPERIMENTS / "smoke.yaml"


def f_lrs(opt: torch.optim.Optimizer) -> list[float]:
    return [g["lr"] for g in opt.param_groups]


def test_step_decay_follows_the_iteration_and_survives_a_restore():
    exp = load_experiment(SMOKE, ["optim.lr_f=1e-3", "optim.lr_f_step=3", "optim.lr_f_gamma=0.5"])
    nets = lsd.build(exp)
    opt = lsd.make_optimizers(nets, exp).f
    seen = []
    for iteration in range(1, 8):
        lsd.schedule_lr_f(opt, exp, iteration)
        seen.append(f_lrs(opt))
    # weights at lr_f, biases at 2 x lr_f; halved after iterations 3 and 6
    want = [[1e-3 * f, 2e-3 * f] for f in (1, 1, 1, 0.5, 0.5, 0.5, 0.25)]
    assert [x for lrs in seen for x in lrs] == pytest.approx([x for lrs in want for x in lrs])
    # A restored optimizer (state saved after iteration 5) continues on the same schedule.
    saved = opt.state_dict()
    fresh = lsd.make_optimizers(lsd.build(exp), exp).f
    fresh.load_state_dict(saved)
    lsd.schedule_lr_f(fresh, exp, 7)
    assert f_lrs(fresh) == pytest.approx(want[6])


def test_no_step_leaves_the_learning_rates_alone():
    exp = load_experiment(SMOKE, ["optim.lr_f=1e-3"])
    opt = lsd.make_optimizers(lsd.build(exp), exp).f
    lsd.schedule_lr_f(opt, exp, 10_000)
    assert f_lrs(opt) == pytest.approx([1e-3, 2e-3])


def _feature_d_adv(units: str, reduction: str = "sum") -> float:
    exp = load_experiment(
        SMOKE,
        [
            "method.variant=feature_d",
            f"method.feature_d_units={units}",
            f"method.reduction={reduction}",
            "data.width=128",
            "data.height=64",
        ],
    )
    torch.manual_seed(0)
    nets = lsd.build(exp)
    opts = lsd.make_optimizers(nets, exp)
    return lsd.train_step(nets, opts, example_batch(exp), exp)["f/adv"]


def test_feature_d_weighs_an_image_like_the_image_d_in_summed_units():
    # 128x64: the image D's map is 16x8 = 128 positions, fc7's 4x2 = 8: a factor of 16.
    native, image_d = _feature_d_adv("native"), _feature_d_adv("image_d")
    assert image_d == pytest.approx(16 * native, rel=1e-5)
    # per-pixel means need no such factor
    assert _feature_d_adv("image_d", "mean") == pytest.approx(_feature_d_adv("native", "mean"))


def test_the_scale_is_the_position_ratio_for_the_authors_geometry_too():
    exp = load_experiment(SMOKE, ["model.arch=authors", "data.width=1024", "data.height=512"])
    image = torch.empty(1, 3, 512, 1024, device="meta")
    fc7 = torch.empty(1, 8, 17, 33, device="meta")  # the authors' fc7 at 1024x512
    assert lsd.feature_d_scale(exp, image, fc7) == pytest.approx(64 * 128 / (17 * 33))
