"""The command line: bad input is one line on stderr and exit 2 before Ray starts."""

from __future__ import annotations

import pytest

from tests.conftest import EXPERIMENTS, assert_one_line_error, no_ray_env, run_cli

SMOKE = str(EXPERIMENTS / "smoke.yaml")


def test_missing_file_exits_2(tmp_path):
    result = run_cli("validate", str(tmp_path / "absent.yaml"))
    assert_one_line_error(result, "absent.yaml", "file not found")


def test_validate_prints_the_resolved_config():
    result = run_cli("validate", SMOKE, "-o", "train.iterations=9")
    assert result.returncode == 0, result.stderr
    assert '"iterations": 9' in result.stdout


def test_dry_run_prints_the_plan_and_starts_no_ray(tmp_path):
    ray_tmp, env = no_ray_env(tmp_path)
    result = run_cli("sweep", SMOKE, "--dry-run", "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 0, result.stderr
    assert "4 trials" in result.stdout
    for variant in ("source_only", "target_oracle"):
        assert variant in result.stdout
    assert "total iterations: 24" in result.stdout
    assert list(ray_tmp.iterdir()) == []
    assert not (tmp_path / "out").exists()


def test_dry_run_of_a_gpu_plan_on_a_cpu_machine_says_so_instead_of_refusing(tmp_path):
    # A plan for a GPU cluster is often made on a laptop: the plan prints, with a warning.
    paper = str(EXPERIMENTS / "gta5_cityscapes.yaml")
    result = run_cli("sweep", paper, "--dry-run", "--out", f"s3://bucket/{tmp_path.name}")
    assert result.returncode == 0, result.stderr
    assert "15 trials" in result.stdout
    if "0 GPUs" in result.stdout:  # this machine has no GPU
        assert "not runnable here: scaling.use_gpu" in result.stdout


def test_sweep_refuses_to_overwrite_an_existing_experiment(tmp_path):
    (tmp_path / "out" / "smoke").mkdir(parents=True)
    ray_tmp, env = no_ray_env(tmp_path)
    result = run_cli("sweep", SMOKE, "--out", str(tmp_path / "out"), env=env)
    assert_one_line_error(result, "already exists", "--resume")
    assert list(ray_tmp.iterdir()) == []


def test_report_on_missing_folder_exits_2(tmp_path):
    result = run_cli("report", str(tmp_path / "nothing"))
    assert_one_line_error(result, "nothing", "no such results folder")


def test_data_check_on_unusable_root_exits_2(tmp_path):
    result = run_cli("data", "check", str(tmp_path), "--dataset", "gta5")
    assert result.returncode == 2


def test_version_prints_the_package_version():
    from gtaray import __version__

    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gtaray {__version__}"


@pytest.mark.parametrize("steps", ["0", "-1"])
def test_bench_refuses_non_positive_steps(steps):
    result = run_cli("bench", "--steps", steps, "--only", "step")
    assert_one_line_error(result, "--steps", ">= 1")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--size", "1024"], "--size"),
        (["--size", "axb"], "--size"),
        (["--device", "tpu"], "--device"),
        (["--repeats", "0"], "--repeats"),
        (["--json", "/nonexistent-folder/bench.json"], "--json"),
        (["--only", "step,warp"], "--only"),
        (["-o", "train.loader_workers=-1"], "train.loader_workers"),
    ],
)
def test_bench_refuses_bad_options_in_one_line(args, names, tmp_path):
    only = [] if "--only" in args else ["--only", "step"]
    result = run_cli("bench", *only, *args, "-o", f"results.dir={tmp_path}")
    assert_one_line_error(result, names)
    assert not (tmp_path / "bench.json").exists()  # refused before anything ran
