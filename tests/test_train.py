"""Ray Train: DDP workers, exact evaluation, checkpoint/restore, worker failure, divergence."""

from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path

import pytest
import torch

from gtaray.checkpoint import load_file
from gtaray.config import load_experiment
from gtaray.trainer import fit_trial, run_trial
from tests.conftest import EXPERIMENTS, run_cli
from tests.faults import KillOnce

pytestmark = pytest.mark.ray


def tiny(tmp_path, *overrides: str):
    return load_experiment(
        EXPERIMENTS / "smoke.yaml",
        [
            f"results.dir={tmp_path}",
            "train.num_to_keep=10",
            "method.variant=source_only",
            *overrides,
        ],
    )


def final_state(result) -> dict:
    with result.checkpoint.as_directory() as folder:
        return load_file(Path(folder) / "state.pt")


def test_two_workers_batch_1_equal_one_worker_batch_2(tmp_path, ray_address):
    # Dropout off and strided sharding: the same samples and the same averaged gradient.
    common = ("model.dropout=0.0", "train.iterations=5", "train.eval_every=5")
    one = fit_trial(tiny(tmp_path, *common, "train.batch_size=2"), "one", tmp_path / "train")
    two = fit_trial(
        tiny(tmp_path, *common, "train.batch_size=1", "scaling.num_workers=2"),
        "two",
        tmp_path / "train",
    )
    for result, workers in ((one, 1), (two, 2)):
        assert len(result.metrics_dataframe) == 1  # one evaluation at iteration 5
        assert result.metrics["workers"] == workers
        assert 0 <= result.metrics["target_miou"] <= 1
    f_one, f_two = final_state(one)["nets"]["F"], final_state(two)["nets"]["F"]
    for key in f_one:
        torch.testing.assert_close(f_one[key], f_two[key], atol=1e-5, rtol=0)


def test_reports_once_per_evaluation_with_two_workers(tmp_path, ray_address):
    exp = tiny(tmp_path, "train.iterations=6", "train.eval_every=2", "scaling.num_workers=2")
    result = fit_trial(exp, "evals", tmp_path / "train")
    frame = result.metrics_dataframe
    assert frame["iteration"].tolist() == [2.0, 4.0, 6.0]
    assert frame["target_miou"].between(0, 1).all()
    assert (frame["workers"] == 2).all()


@pytest.mark.parametrize("arch", ["compact", "authors"])
def test_full_two_workers_batch_1_equal_one_worker_batch_2(tmp_path, ray_address, arch):
    """The GAN variant under DDP: every net moves as in one process with the whole batch (the
    frozen nets are called unwrapped, G's forward serves D's and G's updates)."""
    # lr 1e-5: Adam turns a float-noise gradient into a step of up to lr, so a large lr would
    # amplify the last-bit differences of a split all-reduce into visible ones.
    common = ("method.variant=full", "model.dropout=0.0", "train.iterations=3")
    common += (f"model.arch={arch}",)
    common += ("train.eval_every=3", "optim.lr_f=1e-5", "optim.lr_gd=1e-5")
    one = fit_trial(tiny(tmp_path, *common, "train.batch_size=2"), "gan-one", tmp_path / "train")
    two = fit_trial(
        tiny(tmp_path, *common, "train.batch_size=1", "scaling.num_workers=2"),
        "gan-two",
        tmp_path / "train",
    )
    nets_one, nets_two = final_state(one)["nets"], final_state(two)["nets"]
    assert set(nets_one) == {"F", "C", "G", "D"}
    for name in nets_one:
        for key in nets_one[name]:
            if name == "D" and key.startswith("feature.") and key.endswith(".bias"):
                # The authors' D: conv biases before instance norm. Their gradient is 0
                # analytically, so Adam moves them by rounding noise: about lr per step
                # (betas (0.7, 0.999) allow a little more), 3 steps at lr 1e-5.
                diff = (nets_one[name][key] - nets_two[name][key]).abs().max()
                assert diff <= 2 * 3 * 1e-5, f"D.{key}: {diff}"
                continue
            a, b = nets_one[name][key], nets_two[name][key]
            # Within torch.testing's 1e-5 + 1e-4 |b|, except a rare element whose gradient is
            # near 0: Adam turns its rounding noise into a step of up to lr (on an AMD EPYC
            # host 1 of F's 9,216 weights of one conv moved 1.46e-5 apart), still bounded.
            off = ~torch.isclose(a, b, atol=1e-5, rtol=1e-4)
            assert off.float().mean() <= 1e-3, f"{name}.{key}: {int(off.sum())} elements apart"
            assert (a - b).abs().max() <= 2 * 3 * 1e-5, f"{name}.{key}: {(a - b).abs().max()}"


def test_full_with_two_workers_reports_the_adaptation_diagnostics(tmp_path, ray_address):
    """The GAN variant under DDP: D/G/F updates on two ranks, diagnostics summed over ranks."""
    exp = tiny(
        tmp_path,
        "method.variant=full",
        "scaling.num_workers=2",
        "train.iterations=2",
        "train.eval_every=2",
    )
    metrics = fit_trial(exp, "gan-ddp", tmp_path / "train").metrics
    assert metrics["workers"] == 2 and metrics["diverged"] == 0
    assert 0 <= metrics["diag/d_fake_domain_acc"] <= 1
    assert 0 < metrics["diag/g_l1"] < 1 and 0 < metrics["diag/mean_l1"] < 1
    assert metrics["diag/g_l1_vs_mean"] == pytest.approx(
        metrics["diag/g_l1"] / metrics["diag/mean_l1"]
    )
    assert math.isfinite(metrics["f/adv"]) and metrics["f/adv"] > 0


def test_restore_from_checkpoint_continues_exactly(tmp_path, ray_address):
    # Dropout stays on (0.5): equality needs the RNG state restored, not just the weights.
    common = ("method.variant=full", "model.dropout=0.5", "train.eval_every=3")
    straight = fit_trial(tiny(tmp_path, *common, "train.iterations=6"), "straight", tmp_path / "t")
    # The halves read through a DataLoader process: same batches, and a restore is still exact.
    halves = (*common, "train.loader_workers=1")
    fit_trial(tiny(tmp_path, *halves, "train.iterations=3"), "halves", tmp_path / "t")
    resumed = fit_trial(tiny(tmp_path, *halves, "train.iterations=6"), "halves", tmp_path / "t")
    assert resumed.metrics["iteration"] == 6
    a, b = final_state(straight), final_state(resumed)
    for net in ("F", "C", "G", "D"):
        for key, value in a["nets"][net].items():
            assert torch.equal(value, b["nets"][net][key]), (net, key)
    assert straight.metrics["target_miou"] == resumed.metrics["target_miou"]
    assert straight.metrics["f/loss"] == resumed.metrics["f/loss"]


def test_killed_worker_restarts_from_checkpoint_and_finishes(tmp_path, ray_address):
    marker = tmp_path / "rank1-died"
    exp = tiny(
        tmp_path,
        "train.iterations=6",
        "train.eval_every=3",
        "scaling.num_workers=2",
        "train.max_failures=1",
    )
    hook = KillOnce(rank=1, iteration=5, marker=str(marker))
    result = fit_trial(exp, "faulty", tmp_path / "train", step_hook=hook)
    assert marker.exists()  # rank 1 really was SIGKILLed at iteration 5
    assert result.metrics["iteration"] == 6
    assert result.error is None


def test_huge_learning_rate_gives_diverged_and_never_checkpoints_nan(tmp_path, ray_address):
    # Evaluations at 1, 2, ...: finite checkpoints come before the divergence.
    exp = tiny(tmp_path, "optim.lr_f=1e4", "train.iterations=12", "train.eval_every=1")
    metrics = run_trial(exp, name="diverge")
    assert metrics["diverged"] == 1.0
    assert 1 < metrics["iteration"] < 12
    assert math.isnan(metrics["target_miou"])
    # The run's latest checkpoint holds the last finite weights, not the NaN ones.
    assert metrics["checkpoint_path"]
    state = load_file(Path(metrics["checkpoint_path"]) / "state.pt")
    assert state["iteration"] < metrics["iteration"]
    for net in state["nets"].values():
        assert all(torch.isfinite(t).all() for t in net.values() if t.is_floating_point())


def test_lean_trainer_drops_only_the_datasets_callback_and_falls_back(monkeypatch):
    import ray.train
    from ray.train.torch import TorchTrainer

    from gtaray.train import train_fn_per_worker
    from gtaray.trainer import lean_trainer_class

    def callbacks(cls) -> list[str]:
        trainer = cls(train_fn_per_worker, scaling_config=ray.train.ScalingConfig(num_workers=1))
        return [type(cb).__name__ for cb in trainer._create_default_callbacks()]

    lean = lean_trainer_class()
    assert lean is not TorchTrainer and issubclass(lean, TorchTrainer)  # in effect on Ray 2.60
    assert callbacks(lean) == [c for c in callbacks(TorchTrainer) if c != "DatasetsCallback"]
    # A Ray without the private class: plain TorchTrainer.
    monkeypatch.setitem(sys.modules, "ray.train.v2._internal.callbacks.datasets", None)
    assert lean_trainer_class() is TorchTrainer


class Exploit:
    """A pickle that runs code when loaded unsafely."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_tampered_checkpoint_is_refused_not_executed(tmp_path, capsys):
    path = tmp_path / "state.pt"
    path.write_bytes(pickle.dumps({"nets": Exploit()}))
    with pytest.raises(pickle.UnpicklingError):
        load_file(path)
    assert "pwned" not in capsys.readouterr().out


def test_train_command_resumes_only_the_same_config(tmp_path, ray_address):
    def train(*overrides: str):
        args = ["results.dir=" + str(tmp_path), "method.variant=full", "train.iterations=4"]
        args += ["train.eval_every=2", *overrides]
        command = ["train", str(EXPERIMENTS / "smoke.yaml")]
        for o in args:
            command += ["-o", o]
        result = run_cli(*command, env={"RAY_ADDRESS": ray_address})
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        return result

    first = train()
    assert "final metrics" in first.stdout and "target_miou" in first.stdout
    runs = tmp_path / "smoke" / "train"
    (run,) = runs.glob("smoke-full-s0-*/")  # the config's hash is in the run's name
    checkpoints = sorted(p for p in run.glob("checkpoint_*") if p.is_dir())
    assert len(checkpoints) == 2
    # The same config resumes its finished run: nothing is trained again.
    train()
    assert sorted(p for p in run.glob("checkpoint_*") if p.is_dir()) == checkpoints
    # A changed config trains anew, even one that changes the workers (once a crash).
    train("scaling.num_workers=2")
    assert len(list(runs.glob("smoke-full-s0-*/"))) == 2
