"""What each tracker costs a trial: the finished smoke sweep's results replayed through it.

    gtaray sweep experiments/smoke.yaml --out /tmp/smoke
    python benchmarks/tracker_cost.py /tmp/smoke [--mlflow-uri http://127.0.0.1:5000]

Every trial's curve rows (the evaluations Tune handed the trackers) go through each tracker's
Tune callbacks, on_trial_result per row then on_trial_complete, as in the sweep's process,
where the callbacks block Tune's loop. Prints the seconds per trial of each tracker: W&B
offline, MLflow on a file store, and MLflow on --mlflow-uri when given. Trackers write into a
scratch folder; the results stay untouched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gtaray.config import load_experiment  # noqa: E402
from gtaray.results import load_curves  # noqa: E402
from gtaray.trackers import MLflowTracker, TensorBoardTracker, WandBTracker  # noqa: E402


def replay(tracker, curves) -> list[float]:
    """Seconds each trial spent in the tracker's callbacks."""
    seconds = []
    for trial_id, curve in curves.groupby("trial_id"):
        trial = SimpleNamespace(trial_id=f"bench-{trial_id}", config={})
        results = [{k: v for k, v in row.items() if v == v} for row in curve.to_dict("records")]
        start = time.perf_counter()
        for result in results:
            tracker.on_trial_result(0, [], trial, result)
        tracker.on_trial_complete(0, [], trial)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", help="a finished smoke sweep's results.dir")
    parser.add_argument("--experiment", default="smoke")
    parser.add_argument("--mlflow-uri", help="an MLflow server to time as well")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    curves = load_curves(args.results, args.experiment)
    if curves.empty:
        sys.exit(f"{args.results}: no curves of experiment {args.experiment!r}")
    scratch = Path(tempfile.mkdtemp(prefix="gtaray-tracker-cost-"))
    exp = load_experiment(
        ROOT / "experiments/smoke.yaml",
        [
            f"name={args.experiment}",
            "tracking.wandb={project: gtaray-bench, mode: offline}",
            f"tracking.mlflow={{tracking_uri: '{(scratch / 'mlruns').as_uri()}'}}",
        ],
    )
    chosen = {
        "tensorboard": TensorBoardTracker(exp, str(scratch)),
        "wandb_offline": WandBTracker(exp, str(scratch)),
        "mlflow_file_store": MLflowTracker(exp, str(scratch)),
    }
    if args.mlflow_uri:
        server = exp.with_updates({"tracking.mlflow": {"tracking_uri": args.mlflow_uri}})
        chosen["mlflow_server"] = MLflowTracker(server, str(scratch))
    report = {"trials": int(curves["trial_id"].nunique()), "evaluations": len(curves)}
    for name, tracker in chosen.items():
        seconds = replay(tracker, curves)
        report[name] = {"median_s": statistics.median(seconds), "max_s": max(seconds)}
        print(f"{name:18s} {statistics.median(seconds):7.3f} s per trial (max {max(seconds):.3f})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
