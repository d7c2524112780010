"""Seed-aware ASHA in real Ray Tune, with a scripted trainable whose metric is fixed per
(configuration, seed): configuration "good" is better on average (0.6 against 0.5) but worse
on one seed (0.3). Plain ASHA cuts that seed's trial; seed_asha keeps the group, and with the
group's lower confidence bound it stops the whole group together, at one iteration."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
from ray import cloudpickle, tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from gtaray.seed_asha import SeedASHA, group_statistic
from gtaray.seed_groups import GROUP, SeedGroups

pytestmark = pytest.mark.ray

METRIC = "target_val_miou"
SCRIPT = {("ok", 0): 0.5, ("ok", 1): 0.5, ("good", 0): 0.9, ("good", 1): 0.3}
MAX_T = 4


def scripted(config: dict) -> None:
    """Reports the scripted value at iterations 1..MAX_T, with a checkpoint each time, so a
    paused trial continues where it stopped."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start = int((Path(folder) / "iteration").read_text())
    value = SCRIPT[(config["quality"], config["train.seed"])]
    for iteration in range(start + 1, MAX_T + 1):
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "iteration").write_text(str(iteration))
            tune.report(
                {"iteration": iteration, METRIC: value},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import tests


def run(tmp_path, name: str, scheduler, concurrent: int):
    optuna = OptunaSearch(
        metric=METRIC, mode="max", points_to_evaluate=[{"quality": "ok"}, {"quality": "good"}]
    )
    searcher = SeedGroups(optuna, seeds=[0, 1], metric=METRIC)
    tuner = tune.Tuner(
        tune.with_resources(scripted, {"cpu": 1}),
        param_space={"quality": tune.choice(["ok", "good"])},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=4,
            max_concurrent_trials=concurrent,
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    ended = {}
    for result in results:
        config = result.config
        ended[(config["quality"], config["train.seed"])] = (
            result.metrics["iteration"],
            config[GROUP],
        )
    return ended, searcher


def seed_asha(statistic: str) -> SeedASHA:
    return SeedASHA(
        metric=METRIC,
        time_attr="iteration",
        max_t=MAX_T,
        grace_period=1,
        reduction_factor=2,
        group_size=2,
        statistic=statistic,
    )


def test_plain_asha_cuts_the_unlucky_seed_and_seed_asha_keeps_its_group(tmp_path, ray_address):
    asha = ASHAScheduler(
        time_attr="iteration", metric=METRIC, mode="max", max_t=MAX_T, grace_period=1,
        reduction_factor=2,
    )  # fmt: skip
    plain, _ = run(tmp_path, "asha", asha, concurrent=1)
    assert plain[("good", 1)][0] == 1  # 0.3 is under the rung's median (0.5): cut
    assert plain[("good", 0)][0] == MAX_T

    grouped, searcher = run(tmp_path, "seed_asha", seed_asha("mean"), concurrent=2)
    assert all(iteration == MAX_T for iteration, _ in grouped.values()), grouped
    assert grouped[("good", 0)][1] == grouped[("good", 1)][1] != grouped[("ok", 0)][1]
    # The searcher was told each group's mean, once per configuration.
    assert sorted(searcher.told.values()) == pytest.approx([0.5, 0.6])
    trials = searcher.searcher._ot_study.get_trials()
    assert sorted(t.value for t in trials) == pytest.approx([0.5, 0.6])


def test_with_the_lower_bound_the_whole_group_stops_at_one_iteration(tmp_path, ray_address):
    # good's lower bound: 0.6 - t(0.975, 1) * 0.42 / sqrt(2), far below ok's 0.5.
    assert group_statistic([0.9, 0.3], "lcb") < 0.5 == group_statistic([0.5, 0.5], "lcb")
    ended, _ = run(tmp_path, "lcb", seed_asha("lcb"), concurrent=2)
    assert ended[("good", 0)][0] == ended[("good", 1)][0] == 1
    assert ended[("ok", 0)][0] == ended[("ok", 1)][0] == MAX_T
