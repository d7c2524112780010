"""seed_asha against plain ASHA, each checked against the exhaustive grid of the same space.

    python benchmarks/seed_asha_vs_asha.py --out /tmp/seedasha --json docs/bench/.../result.json

experiments/search.yaml's data, networks and step (120 iterations at 64x32), on a discrete
space so that a grid can cover it: variant (4) x beta (2) x lr_f (2) = 16 configurations,
lr_gd and alpha fixed at the file's values. Every configuration runs on seeds 0, 1 and 2.
- the grid: all 16 x 3 trials to the end, as 4 `gtaray sweep` grid runs (one per beta, lr_f
  pair; each runs the 4 variants x 3 seeds); a configuration's value is its 3 seeds' mean
  target val mIoU;
- two searches of 8 Optuna samples, each run as a group of the same 3 seeds (24 trials), with
  ASHA (grace 15, reduction factor 4): `scheduler: asha` decides on each trial's own metric,
  `scheduler: seed_asha` on the group's mean.
Reports per search the iterations used and the configuration it chose (sweep.metric only, as
`gtaray report` chooses), with that configuration's rank and value in the grid. Each run is a
plain `gtaray sweep --resume` into --out, so a stopped measurement continues where it was.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ["full", "no_aux", "within_domain", "feature_d"]
BETAS = [1.0, 10.0]
LRS_F = [3.0e-4, 3.0e-3]
SEEDS = [0, 1, 2]
SAMPLES = 8
KEYS = ("method.variant", "method.beta", "optim.lr_f")  # a configuration, as row columns


def base() -> dict:
    spec = yaml.safe_load((ROOT / "experiments/search.yaml").read_text())
    spec["sweep"].pop("space")
    return spec


def grid_spec(beta: float, lr_f: float) -> dict:
    spec = base()
    spec["name"] = f"grid-beta{beta:g}-lrf{lr_f:g}"
    spec["method"] = {"beta": beta}
    spec["optim"]["lr_f"] = lr_f
    spec["sweep"] = {"mode": "grid", "variants": VARIANTS, "seeds": SEEDS}
    return spec


def search_spec(scheduler: str) -> dict:
    spec = base()
    spec["name"] = f"search-{scheduler}"
    spec["sweep"].update(
        num_samples=SAMPLES,
        seeds=SEEDS,
        scheduler=scheduler,
        space={"variant": VARIANTS, "beta": BETAS, "lr_f": LRS_F},
    )
    return spec


def sweep(spec: dict, out: Path) -> None:
    path = out / "specs" / f"{spec['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec))
    gtaray = Path(sys.executable).parent / "gtaray"
    subprocess.run([str(gtaray), "sweep", str(path), "--out", str(out), "--resume"], check=True)


def configuration(row) -> tuple:
    variant, beta, lr_f = (row[k] for k in KEYS)
    return (variant, float(beta), round(float(lr_f), 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results folder of the runs")
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args()
    from gtaray.config import load_experiment
    from gtaray.results import load_trials
    from gtaray.search_report import best_configuration

    for beta, lr_f in itertools.product(BETAS, LRS_F):
        sweep(grid_spec(beta, lr_f), args.out)
    for scheduler in ("asha", "seed_asha"):
        sweep(search_spec(scheduler), args.out)

    rows = load_trials(args.out)
    grid = rows[rows["experiment"].str.startswith("grid-") & (rows["status"] == "completed")]
    metric = "target_val_miou"
    values = grid.groupby(list(KEYS))[metric].agg(["mean", "std", "count"]).reset_index()
    values["config"] = [configuration(r) for _, r in values.iterrows()]
    values = values.sort_values("mean", ascending=False).reset_index(drop=True)
    ranks = {c: i + 1 for i, c in enumerate(values["config"])}
    means = dict(zip(values["config"], values["mean"], strict=True))
    summary = {
        "space": {"variant": VARIANTS, "beta": BETAS, "lr_f": LRS_F, "seeds": SEEDS},
        "metric": metric,
        "grid": {
            "configurations": len(values),
            "trials": int(len(grid)),
            "iterations": int(grid["iterations_done"].sum()),
            "best": list(values["config"][0]),
            "best_mean": float(values["mean"][0]),
            "table": [
                {"config": list(c), "mean": float(m), "std": float(s), "seeds": int(n)}
                for c, m, s, n in values[["config", "mean", "std", "count"]].itertuples(index=False)
            ],
        },
    }
    for scheduler in ("asha", "seed_asha"):
        spec = search_spec(scheduler)
        exp = load_experiment(args.out / "specs" / f"{spec['name']}.yaml")
        mine = rows[rows["experiment"] == spec["name"]]
        best = best_configuration(mine, exp)
        chosen = (best["method.variant"], best["method.beta"], round(best["optim.lr_f"], 10))
        summary[scheduler] = {
            "trials": int(len(mine)),
            "completed": int((mine["status"] == "completed").sum()),
            "iterations": int(mine["iterations_done"].fillna(0).sum()),
            "distinct_configurations": int(mine.drop_duplicates(list(KEYS)).shape[0]),
            "chosen": list(chosen),
            "chosen_grid_rank": ranks.get(chosen),
            "chosen_grid_mean": means.get(chosen),
            "found_grid_best": chosen == values["config"][0],
        }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
