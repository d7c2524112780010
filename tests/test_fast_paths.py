"""Performance without changing the science: each fast-path switch leaves one step's losses where
fp32 eager puts them, the step never waits for the device, and `gtaray bench --quick --json`
measures every figure docs/benchmarks.md reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from gtaray.bench import QUICK, SWITCHES, first_losses, loss_drift
from gtaray.config import load_experiment
from gtaray.method import losses
from gtaray.models.layers import Fp32Conv2d, Fp32ConvTranspose2d
from gtaray.train import Window
from tests.conftest import run_cli

BENCH_YAML = Path(__file__).parents[1] / "gtaray" / "bench.yaml"
# Relative drift of the first step's loss terms against fp32 eager (dropout off, see
# bench.first_losses). fp32 switches change only the order of float additions; bf16 rounds
# every activation to 8 bits of mantissa.
TOLERANCE = {
    "channels_last": 1e-5,
    "fused_adam": 1e-5,
    "cudnn_benchmark": 1e-5,
    "compile": 1e-4,
    "bf16": 3e-2,
}


def tiny(variant: str = "full", *overrides: str):
    quick = [f"{k}={v}" for k, v in QUICK.items()]
    return load_experiment(
        BENCH_YAML, [*quick, f"method.variant={variant}", "train.batch_size=1", *overrides]
    )


@pytest.fixture(scope="module")
def reference():
    return first_losses(tiny())


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_each_switch_keeps_the_first_steps_losses(switch, reference):
    assert set(TOLERANCE) == set(SWITCHES)
    exp = tiny().with_updates(SWITCHES[switch])
    got = first_losses(exp)
    assert got.keys() == reference.keys()
    assert all(math.isfinite(v) for v in got.values())
    assert loss_drift(reference, got) <= TOLERANCE[switch], (switch, got, reference)


def test_all_switches_together_on_a_bound_variant():
    base = tiny("source_only")
    # Without torch.compile, tested above: a second compilation would cost half a minute.
    together = {k: v for name, s in SWITCHES.items() if name != "compile" for k, v in s.items()}
    fast = base.with_updates(together)
    assert loss_drift(first_losses(base), first_losses(fast)) <= TOLERANCE["bf16"]


def test_rgb_convolutions_run_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    plain, fp32 = nn.Conv2d(3, 8, 3, padding=1), Fp32Conv2d(3, 8, 3, padding=1)
    fp32.load_state_dict(plain.state_dict())  # the same keys: checkpoints and weights still load
    x = torch.rand(1, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, cast = fp32(x), plain(x)
    assert out.dtype == torch.float32 and cast.dtype == torch.bfloat16
    assert torch.equal(out, plain(x))  # exactly the fp32 layer
    up = Fp32ConvTranspose2d(8, 3, 4, stride=2, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert up(torch.rand(1, 8, 8, 8)).dtype == torch.float32


def test_losses_without_labelled_pixels_are_zero_in_both_units():
    logits = torch.randn(2, 19, 4, 4, requires_grad=True)
    labels = torch.full((2, 4, 4), 255, dtype=torch.long)
    for reduction in ("sum", "mean"):
        value = losses.auxiliary(logits, labels, reduction)
        assert value.item() == 0.0
        value.backward()  # still part of the graph
    one = torch.full((1, 4, 4), 255, dtype=torch.long)
    one[0, 0, 0] = 3
    mean = losses.segmentation(logits[:1], one, "mean")
    assert torch.allclose(mean, nn.functional.cross_entropy(logits[:1, :, :1, :1], one[:, :1, :1]))


def test_window_sums_losses_on_the_device_and_reads_them_once():
    window = Window()
    for v in (1.0, 2.0, 6.0):
        window.add({"f/loss": torch.tensor(v), "d/loss": torch.tensor(2 * v)}, data_seconds=0.0)
    assert isinstance(window.sums["f/loss"], torch.Tensor)  # not a float: no sync per step
    out = window.close()
    assert out["f/loss"] == 3.0 and out["d/loss"] == 6.0
    assert out["iters_per_second"] > 0 and out["data_wait_fraction"] == 0.0
    nan = Window()
    nan.add({"f/loss": torch.tensor(float("nan"))}, 0.0)
    nan.add({"f/loss": torch.tensor(1.0)}, 0.0)
    assert math.isnan(nan.close()["f/loss"])  # a divergence inside a window is not averaged away


@pytest.mark.ray
def test_bench_quick_json_has_every_figure(tmp_path, ray_address):
    out = tmp_path / "bench.json"
    result = run_cli(
        "bench", "--quick", "--repeats", "2", "--json", str(out),
        "-o", f"results.dir={tmp_path / 'r'}",
        env={"RAY_ADDRESS": ray_address},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert (tmp_path / "r" / "bench.json").exists()  # what `--dry-run` estimates read

    def positive(x) -> bool:
        return isinstance(x, int | float) and math.isfinite(x) and x > 0

    step = figures["step"]
    variants = ["source_only", "feature_d", "within_domain", "no_aux", "full", "target_oracle"]
    for key in ("iters_per_second", "flops_per_iteration", "tflops_per_second"):
        assert sorted(step[key]) == sorted(variants), key
        assert all(positive(v) for v in step[key].values()), (key, step[key])
    assert all(positive(v) for v in step["peak_memory_bytes"].values())
    # Adversarial variants run D, G and F updates: several times the bounds' FLOPs.
    assert step["flops_per_iteration"]["full"] > 2 * step["flops_per_iteration"]["source_only"]
    assert step["mfu"]["full"] is None and step["peak_tflops"] is None  # no GPU peak on a CPU
    trainer = figures["trainer"]
    for key in ("bare_its", "ray_1w_its", "ray_2w_its", "two_over_one_worker_samples_ratio"):
        assert positive(trainer[key]), (key, trainer)
    assert positive(figures["ray_over_bare_ratio"]) and figures["ray_over_bare_ratio"] < 3
    repeats = figures["repeats"]
    for key in ("ray_over_bare_ratio", "two_over_one_worker_samples_ratio"):
        ranged = trainer[f"{key}_spread"]  # the median of interleaved repeats, and their range
        assert ranged["low"] <= trainer[key] == ranged["median"] <= ranged["high"], key
        assert len(ranged["values"]) == repeats and all(positive(v) for v in ranged["values"])
    assert len(trainer["bare_its_values"]) == 2 * repeats  # before and after the 1-worker fit
    assert 0 <= trainer["data_wait_1w"] <= 1
    trial = figures["trial"]
    assert positive(trial["trial_to_first_report_s"]) and positive(trial["packing"])
    assert trial["trial_to_first_report_s"] <= trial["trial_to_first_report_max_s"]
    switches = figures["switches"]
    assert "compile" not in switches  # --quick leaves compilation out
    assert switches["fp32_eager"]["speedup"] == 1.0
    for name, entry in switches.items():
        assert positive(entry["iters_per_second"]) and positive(entry["speedup"]), name
        assert len(entry["iters_per_second_values"]) >= repeats, name
        if name != "fp32_eager":
            ranged = entry["speedup_spread"]
            assert ranged["low"] <= entry["speedup"] <= ranged["high"], name
            assert len(ranged["values"]) == repeats, name
        assert entry["loss_drift"] <= TOLERANCE.get(name, TOLERANCE["bf16"]), (name, entry)
    assert figures["torch"] == torch.__version__ and figures["device"] == "cpu"
