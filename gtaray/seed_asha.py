"""Seed-aware ASHA: asynchronous successive halving whose decisions are taken on whole seed
groups (gtaray.seed_groups), on the group's mean (or its 95% lower bound) at each rung.

Plain ASHA promotes or cuts a trial on one seed's metric at a rung, so luck decides; Tune's
Repeater averages seeds for the searcher only, and its docs warn against pairing it with an
early-stopping scheduler. Here, as in Tune's AsyncHyperBandScheduler (one bracket), rungs sit at
grace_period * reduction_factor**k below max_t and a group is cut when its statistic is below
the (1 - 1/reduction_factor) quantile of the statistics earlier groups had at that rung. What
differs:
- a member that reaches a rung before its siblings is PAUSED there: it frees its resources
  (siblings that have not started can run) and Ray Train resumes it from its checkpoint if
  the group goes on;
- when the last live member arrives, the group is decided: all members continue, or all are
  stopped, at that rung's iteration, so a cut group's rows all end at the same iteration;
- a member that ended early (failed, diverged) counts as absent from its group's later rungs.
A FIFO scheduler with our own decisions was the alternative; a TrialScheduler gets Tune's PAUSE
and `stop_trial`, which is what stopping a group together needs.
"""

from __future__ import annotations

import math
import pickle
import statistics

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from scipy import stats

from gtaray.seed_groups import config_id


def group_statistic(values: list[float], statistic: str) -> float:
    """The mean of the group's values, or its 95% lower confidence bound (Student's t)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan
    mean = sum(values) / len(values)
    if statistic == "mean" or len(values) < 2:
        return mean
    std = statistics.stdev(values)
    return mean - stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))


class SeedASHA(FIFOScheduler):
    def __init__(
        self,
        metric: str,
        time_attr: str,
        max_t: int,
        grace_period: int,
        reduction_factor: int,
        group_size: int,
        statistic: str = "mean",
        ignore: str | None = None,  # a result key that marks a replayed result: no decision
    ) -> None:
        super().__init__()
        self._mode = "max"
        self._metric, self.time_attr, self.group_size = metric, time_attr, group_size
        self.statistic, self.ignore, self.reduction_factor = statistic, ignore, reduction_factor
        self.rungs: list[int] = []
        milestone = grace_period
        while milestone < max_t:
            self.rungs.append(milestone)
            milestone *= reduction_factor
        self.recorded: dict[int, dict[str, float]] = {m: {} for m in self.rungs}  # group: stat
        self.values: dict[str, dict[int, dict[str, float]]] = {}  # group: rung: trial: value
        self.decided: dict[str, dict[int, str]] = {}  # group: rung: CONTINUE or STOP
        self.members: dict[str, set[str]] = {}  # group: its trial ids
        self.ended: dict[str, set[str]] = {}  # group: members that ended before a rung
        self.waiting: dict[str, int] = {}  # trial id: the rung it is paused at

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        group = config_id(trial.config, trial.trial_id)
        self.members.setdefault(group, set()).add(trial.trial_id)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if self._metric not in result or self.time_attr not in result:
            return TrialScheduler.CONTINUE
        if self.ignore and result.get(self.ignore):
            return TrialScheduler.CONTINUE
        group = config_id(trial.config, trial.trial_id)
        values = self.values.setdefault(group, {})
        crossed = [m for m in self.rungs if result[self.time_attr] >= m]
        fresh = [m for m in crossed if trial.trial_id not in values.get(m, {})]
        if not fresh:
            return TrialScheduler.CONTINUE
        rung = fresh[-1]  # the highest rung reached and not yet recorded, as ASHA does
        metric = result[self._metric]
        value = float(metric) if isinstance(metric, int | float) else math.nan
        for m in fresh:  # a jump over several rungs is recorded at each
            values.setdefault(m, {})[trial.trial_id] = value
        decision = self.decided.get(group, {}).get(rung)
        if decision is None:
            if not self._complete(group, rung):
                self.waiting[trial.trial_id] = rung
                return TrialScheduler.PAUSE
            decision = self._decide(tune_controller, group, rung)
        return decision

    def _complete(self, group: str, rung: int) -> bool:
        """Every member of the group has reported the rung, or has ended."""
        reported = set(self.values.get(group, {}).get(rung, {})) | self.ended.get(group, set())
        members = self.members.get(group, set())
        return len(members) >= self.group_size and members <= reported

    def _decide(self, tune_controller, group: str, rung: int) -> str:
        statistic = group_statistic(list(self.values[group][rung].values()), self.statistic)
        earlier = [v for v in self.recorded[rung].values() if not math.isnan(v)]
        cutoff = None
        if earlier:  # ASHA's cutoff: this quantile of the earlier groups at the rung
            cutoff = float(np.percentile(earlier, (1 - 1 / self.reduction_factor) * 100))
        stop = math.isnan(statistic) or (cutoff is not None and statistic < cutoff)
        self.recorded[rung][group] = statistic
        decision = TrialScheduler.STOP if stop else TrialScheduler.CONTINUE
        self.decided.setdefault(group, {})[rung] = decision
        paused = [t for t, r in self.waiting.items() if r == rung and t in self.members[group]]
        for trial_id in paused:
            del self.waiting[trial_id]  # promoted: choose_trial_to_run resumes it
        if stop:
            trials = {t.trial_id: t for t in tune_controller.get_trials()}
            for trial_id in paused:
                tune_controller.stop_trial(trials[trial_id])
        return decision

    def _member_ended(self, tune_controller, trial: Trial) -> None:
        group = config_id(trial.config, trial.trial_id)
        self.ended.setdefault(group, set()).add(trial.trial_id)
        self.waiting.pop(trial.trial_id, None)
        for rung in self.rungs:  # siblings waiting for it no longer do
            undecided = rung not in self.decided.get(group, {})
            if undecided and self.values.get(group, {}).get(rung) and self._complete(group, rung):
                self._decide(tune_controller, group, rung)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._member_ended(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        self._member_ended(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._member_ended(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        """Promoted members first (their group goes on together), then new trials; members
        paused at an undecided rung wait."""
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PAUSED and trial.trial_id not in self.waiting:
                return trial
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        return None

    def debug_string(self) -> str:
        return f"seed_asha: rungs {self.rungs}, {len(self.waiting)} member(s) waiting"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
