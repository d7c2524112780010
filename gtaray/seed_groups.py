"""Seed groups: each configuration a searcher samples runs once per seed, as one group.

    searcher = SeedGroups(OptunaSearch(...), seeds=[0, 1, 2], metric="target_val_miou")
    # trial configs: {..., "train.seed": 0, "config_id": "<first trial id>"}, then seeds 1, 2

The searcher suggests one configuration per group and is told the group's mean of the metric,
once, when the last member has finished (like Tune's Repeater, which sets an index instead of
a seed). `config_id` (the group's first trial id) goes into every member's row; it is not an
experiment key, so `trial_updates` leaves it out of what a trial's experiment is built from.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from ray.tune.search import Searcher

GROUP = "config_id"


def trial_updates(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config as experiment updates (`{"optim.lr_f": ...}`), without its group; a
    dict value (one entry of a grid over whole configurations) is merged in."""
    updates: dict[str, Any] = {}
    for key, value in config.items():
        if key == GROUP:
            continue
        updates |= value if isinstance(value, dict) else {key: value}
    return updates


def config_id(config: dict[str, Any], trial_id: str) -> str:
    """The group a trial belongs to; a trial outside any group is its own."""
    return str(config.get(GROUP, trial_id))


class SeedGroups(Searcher):
    def __init__(self, searcher: Searcher, seeds: list[int], metric: str) -> None:
        super().__init__(metric=metric, mode="max")
        self.searcher, self.seeds = searcher, list(seeds)
        self._pending: list[tuple[str, int]] = []  # (group, seed) still to hand out
        self._configs: dict[str, dict] = {}  # group: the sampled configuration
        self._members: dict[str, str] = {}  # trial id: group
        self._scores: dict[str, dict[str, float]] = {}  # group: {trial id: final metric}
        self.told: dict[str, float] = {}  # group: the mean the searcher was told

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        if not self._pending:
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self._configs[trial_id] = dict(config)
            self._scores[trial_id] = {}
            self._pending = [(trial_id, seed) for seed in self.seeds]
        group, seed = self._pending.pop(0)
        self._members[trial_id] = group
        return {**self._configs[group], "train.seed": seed, GROUP: group}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error=False) -> None:
        group = self._members.get(trial_id)
        if group is None:
            return
        value = (result or {}).get(self.metric)
        ok = not error and isinstance(value, int | float) and not math.isnan(value)
        self._scores[group][trial_id] = float(value) if ok else math.nan
        if len(self._scores[group]) < len(self.seeds) or group in self.told:
            return
        values = [v for v in self._scores[group].values() if not math.isnan(v)]
        if not values:  # every seed failed or diverged
            self.searcher.on_trial_complete(group, None, error=True)
            self.told[group] = math.nan
            return
        mean = sum(values) / len(values)
        self.searcher.on_trial_complete(group, {self.metric: mean})
        self.told[group] = mean

    # Tune's wrapper protocol (as its Repeater and ConcurrencyLimiter): this wrapper's state
    # goes into the search state file, the wrapped searcher saves itself (what --resume uses).
    def get_state(self) -> dict:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "searcher"})

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
