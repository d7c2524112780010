"""`gtaray report` on Parquet fixtures with known numbers: the protocol, the statistics (equal
to scipy's), the paste-ready markdown (a golden file), search summaries, plots, bad files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from gtaray.config import load_experiment
from gtaray.report import protocol_view, summarise
from gtaray.results import load_curves, load_trials, trial_row, write_curve, write_trial
from tests.conftest import EXPERIMENTS, run_cli
from tests.test_results import CLASSES, row

GOLDEN = Path(__file__).parent / "golden" / "report.md"

# (variant, seed, status, [(target_miou, target_val, source_val, iou_road) per evaluation])
FIXTURE = [
    ("source_only", 0, "completed", [(0.20, 0.30, 0.50, 0.6), (0.22, 0.29, 0.55, 0.62)]),
    ("source_only", 1, "completed", [(0.18, 0.31, 0.52, 0.58), (0.25, 0.30, 0.51, 0.64)]),
    ("source_only", 2, "completed", [(0.21, 0.28, 0.49, 0.61), (0.23, 0.33, 0.53, 0.63)]),
    ("full", 0, "completed", [(0.30, 0.40, 0.45, 0.70), (0.28, 0.38, 0.47, 0.69)]),
    ("full", 1, "completed", [(0.27, 0.36, 0.46, 0.66), (0.33, 0.41, 0.44, 0.72)]),
    ("full", 2, "completed", [(0.31, 0.39, 0.48, 0.71), (0.29, 0.42, 0.43, 0.70)]),
    ("full", 3, "pruned", [(0.05, 0.10, 0.20, 0.1)]),
    ("full", 4, "failed", []),
]


def curve_rows(trial_id: str, variant: str, seed: int, evals) -> list[dict]:
    return [
        {
            "trial_id": trial_id, "method.variant": variant, "train.seed": seed,
            "iteration": 10 * (i + 1), "target_miou": t, "target_val_miou": tv,
            "source_val_miou": sv, "iou_road": road, "iou_traffic_light": math.nan,
        }
        for i, (t, tv, sv, road) in enumerate(evals)
    ]  # fmt: skip


def write_fixture(folder: Path, experiment: str = "exp", source: str = "synthetic") -> None:
    exp = load_experiment(EXPERIMENTS / "smoke.yaml", [f"name={experiment}", "train.iterations=20"])
    for i, (variant, seed, status, evals) in enumerate(FIXTURE):
        trial_id = f"{experiment}-t{i}"
        curve = curve_rows(trial_id, variant, seed, evals)
        if curve:
            write_curve(curve, folder, experiment, trial_id)
        last = curve[-1] if curve else {}
        one = row(trial_id, variant, seed, last.get("target_miou", math.nan), status=status)
        picked = trial_row(
            exp.with_updates({"method.variant": variant}),
            trial_id,
            {**last, "iteration": 20 if status == "completed" else 10},
            CLASSES,
            error="RuntimeError: boom" if status == "failed" else None,
            curve=curve,
        )
        one |= {k: picked[k] for k in picked if k.startswith(("test_miou", "iteration_"))}
        one |= {"experiment": experiment, "iou_road": last.get("iou_road", math.nan)}
        one |= {"data.source": source}
        write_trial(one, CLASSES, folder)


def test_the_protocol_columns_pick_the_evaluation_their_metric_selects(tmp_path):
    write_fixture(tmp_path)
    rows = load_trials(tmp_path).set_index("trial_id")
    first = rows.loc["exp-t0"]  # target val best at eval 1 (0.30), source val at eval 2 (0.55)
    assert first["test_miou_target_val"] == 0.20 and first["iteration_target_val"] == 10
    assert first["test_miou_source_val"] == 0.22 and first["iteration_source_val"] == 20
    assert first["target_miou"] == 0.22  # the last evaluation
    assert math.isnan(rows.loc["exp-t7", "test_miou_target_val"])  # failed before any
    # Per-class IoUs come from the curve row of the selected evaluation.
    curves = load_curves(tmp_path, "exp")
    view = protocol_view(load_trials(tmp_path), curves, "source_val").set_index("trial_id")
    assert view.loc["exp-t0", "iou_road"] == 0.62 and view.loc["exp-t3", "iou_road"] == 0.69
    assert math.isnan(view.loc["exp-t7", "iou_road"])
    view = protocol_view(load_trials(tmp_path), curves, "target_val").set_index("trial_id")
    assert view.loc["exp-t0", "iou_road"] == 0.6 and view.loc["exp-t6", "iou_road"] == 0.1


@pytest.mark.parametrize("select", ["last", "target_val", "source_val"])
def test_statistics_equal_scipy_over_completed_trials_only(tmp_path, select):
    write_fixture(tmp_path)
    trials = load_trials(tmp_path)
    from gtaray.results import load_curves

    summary = summarise(protocol_view(trials, load_curves(tmp_path, "exp"), select))
    summary = summary.set_index("variant")
    column = {"last": 0, "target_val": 1, "source_val": 2}[select]

    def picked(variant: str) -> np.ndarray:
        out = []
        for v, _, status, evals in FIXTURE:
            if v == variant and status == "completed":
                if select == "last":
                    out.append(evals[-1][0])
                else:
                    out.append(max(evals, key=lambda e: e[column])[0])
        return np.array(out)

    full, base = picked("full"), picked("source_only")
    got = summary.loc["full"]
    assert got["n"] == 3 and got["completed"] == 3 and got["pruned"] == 1 and got["failed"] == 1
    assert got["miou_mean"] == pytest.approx(full.mean(), abs=1e-9)
    assert got["miou_std"] == pytest.approx(full.std(ddof=1), abs=1e-9)
    low, high = stats.t.interval(0.95, 2, loc=full.mean(), scale=stats.sem(full))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((low, high), abs=1e-9)
    assert got["delta_source_only"] == pytest.approx(full.mean() - base.mean(), abs=1e-9)
    p = stats.ttest_ind(full, base, equal_var=False).pvalue
    assert got["p_source_only"] == pytest.approx(p, abs=1e-9)
    # seeds 0-2 of both variants completed: the paired test matches them seed by seed
    paired = stats.ttest_rel(full, base).pvalue
    assert got["p_paired_source_only"] == pytest.approx(paired, abs=1e-9)
    assert got["p_paired_source_only"] != pytest.approx(p, abs=1e-3)
    assert math.isnan(summary.loc["source_only", "p_source_only"])
    assert list(summary.index) == ["source_only", "full"]  # paper order


def test_markdown_report_matches_the_golden_file(tmp_path):
    write_fixture(tmp_path)
    write_fixture(tmp_path, "other")  # two experiments: every row says which
    result = run_cli("report", str(tmp_path), "--format", "markdown", "--select", "target_val")
    assert result.returncode == 0, result.stderr
    assert result.stdout == GOLDEN.read_text()


def test_experiments_on_different_dataset_pairs_are_tabulated_apart(tmp_path):
    write_fixture(tmp_path, "gta", source="gta5")
    write_fixture(tmp_path, "synthia", source="synthia")
    result = run_cli("report", str(tmp_path), "--format", "markdown")
    assert result.returncode == 0, result.stderr
    gta, synthia = result.stdout.split("### synthia→synthetic")
    assert gta.startswith("### gta5→synthetic") and "| gta |" in gta and "| synthia |" not in gta
    assert "| synthia |" in synthia and "| gta |" not in synthia
    terminal = run_cli("report", str(tmp_path), env={"COLUMNS": "80"}).stdout
    assert "gta5→synthetic: target mIoU by variant" in terminal
    assert "synthia→synthetic: target mIoU by variant" in terminal


def test_plots_are_valid_and_not_blank(tmp_path):
    write_fixture(tmp_path)
    result = run_cli("report", str(tmp_path), "--plots", str(tmp_path / "figures"))
    assert result.returncode == 0, result.stderr
    pngs = sorted((tmp_path / "figures").glob("*.png"))
    assert [p.name for p in pngs] == ["exp-class-iou.png", "exp-curves.png"]
    for png in pngs:
        image = Image.open(png)
        image.verify()
        colours = np.unique(np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3), axis=0)
        assert len(colours) > 10, png


def test_search_summary_ranks_the_deciding_parameter_first(tmp_path):
    from gtaray.search_report import summarise_search

    exp = load_experiment(
        EXPERIMENTS / "search.yaml", [f"results.dir={tmp_path}", "sweep.metric=target_val_miou"]
    )
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        lr_f = float(10 ** rng.uniform(-5, -2))
        rows.append(
            {
                "trial_id": f"s{i}", "status": "completed", "optim.lr_f": lr_f,
                "optim.lr_gd": float(10 ** rng.uniform(-5, -3)),
                "method.alpha": float(rng.uniform(0.01, 10)),
                "method.beta": float(rng.uniform(0.1, 100)),
                "method.variant": str(rng.choice(["full", "no_aux"])),
                "target_val_miou": 0.1 * (np.log10(lr_f) + 5), "target_miou": 0.5,
            }
        )  # fmt: skip
    summary = summarise_search(pd.DataFrame(rows), exp, k=3)
    assert next(iter(summary.importances)) == "optim.lr_f"
    assert len(summary.top) == 3
    best = max(rows, key=lambda r: r["target_val_miou"])
    assert summary.top.iloc[0]["trial_id"] == best["trial_id"]
    assert f"-o optim.lr_f={best['optim.lr_f']:.4g}" in summary.best_overrides
    from io import StringIO

    from rich.console import Console

    from gtaray.search_report import render_search

    out = StringIO()
    render_search(summary, console=Console(file=out, width=200))  # the terminal's table
    assert "top 3 trials of the search" in out.getvalue() and "optim.lr_f" in out.getvalue()
    assert best["trial_id"] in out.getvalue()


def test_bad_files_are_named_and_skipped_and_nothing_readable_is_exit_2(tmp_path):
    write_fixture(tmp_path)
    trials = tmp_path / "exp" / "trials"
    (trials / "truncated.parquet").write_bytes((trials / "exp-t0.parquet").read_bytes()[:100])
    (trials / "empty.parquet").write_bytes(b"")
    pd.DataFrame({"x": [1]}).to_parquet(trials / "foreign.parquet")
    # A row written before the protocol columns existed: read, with those columns empty.
    old = pd.read_parquet(trials / "exp-t0.parquet").drop(columns=["test_miou_target_val"])
    old.assign(trial_id="old").to_parquet(trials / "old.parquet")
    result = run_cli("report", str(tmp_path), "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in ("truncated", "empty", "foreign"):
        assert f"{name}.parquet: skipped" in result.stderr
    assert "old.parquet: older schema, 1 column(s) empty" in result.stderr
    assert "exp,source_only,4," in result.stdout  # the old row counts, every trial once
    assert "exp,full,5," in result.stdout

    only_bad = tmp_path / "bad"
    (only_bad / "x" / "trials").mkdir(parents=True)
    (only_bad / "x" / "trials" / "empty.parquet").write_bytes(b"")
    result = run_cli("report", str(only_bad))
    assert result.returncode == 2
    assert "empty.parquet: skipped" in result.stderr
    assert "no readable trial results" in result.stderr.strip().splitlines()[-1]


def paper_sized_summary(experiments=("ablations",)) -> pd.DataFrame:
    """Six variants x 3 seeds (and a pruned trial each) over the 19 Cityscapes classes."""
    from gtaray.config import VARIANTS
    from gtaray.data.labels import CLASSES as NAMES

    rng = np.random.default_rng(0)
    rows = []
    for experiment in experiments:
        for variant in VARIANTS:
            for seed in range(4):
                rows.append(
                    {
                        "experiment": experiment, "method.variant": variant, "train.seed": seed,
                        "trial_id": f"{experiment}-{variant}-{seed}", "miou13": math.nan,
                        "status": "completed" if seed < 3 else "pruned",
                        "miou": rng.uniform(0.2, 0.4),
                        **{f"iou_{c.replace(' ', '_')}": rng.uniform() for c in NAMES[19]},
                    }
                )  # fmt: skip
    return summarise(pd.DataFrame(rows))


def names_in_full(text: str, experiments) -> None:
    from gtaray.config import VARIANTS
    from gtaray.data.labels import CLASSES as NAMES

    lines = text.splitlines()
    for name in [*VARIANTS, *(c.replace(" ", "_") for c in NAMES[19]), *experiments]:
        assert any(name in line for line in lines), f"{name!r} is cut or missing:\n{text}"
    assert "…" not in text


@pytest.mark.parametrize("width", [80, 120, 200])
@pytest.mark.parametrize("experiments", [("ablations",), ("gta5_to_cityscapes", "synthia_x")])
def test_the_report_never_cuts_a_name_at_any_width(width, experiments):
    import io

    from rich.console import Console

    from gtaray.report import render

    out = io.StringIO()
    render(paper_sized_summary(experiments), console=Console(width=width, file=out))
    text = out.getvalue()
    names_in_full(text, experiments)
    tables = [line for line in text.splitlines() if line.startswith(("┏", "│", "└"))]
    assert all(len(line) <= width for line in tables), "a table is wider than the terminal"
    if width == 200 and len(experiments) == 1:  # wide enough: one table each, nothing split
        assert text.count("┏") == 2 and "(1 of" not in text


def test_the_report_through_a_pipe_keeps_every_name(tmp_path):
    write_fixture(tmp_path, "a_rather_long_experiment_name")
    result = run_cli("report", str(tmp_path), env={"COLUMNS": ""})  # a pipe: 80 columns
    assert result.returncode == 0, result.stderr
    for name in ("source_only", "full", "road", "a_rather_long_experiment_name"):
        assert name in result.stdout, result.stdout
    assert "…" not in result.stdout
