"""The command line: bad input is one line on stderr and exit 2 before Ray starts."""

from __future__ import annotations

import pytest

from tests.conftest import EXPERIMENTS, run_cli

SMOKE = str(EXPERIMENTS / "smoke.yaml")


def no_ray_env(tmp_path):
    """Point Ray's temp dir somewhere empty, so a Ray start would leave a session folder."""
    ray_tmp = tmp_path / "raytmp"
    ray_tmp.mkdir()
    return ray_tmp, {"RAY_TMPDIR": str(ray_tmp), "RAY_ADDRESS": ""}


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("body", "args", "fragments"),
    [
        ("name: t\noptim: {lr_f: -1}\n", [], ["bad.yaml", "optim.lr_f", "> 0"]),
        ("name: t\nmethod: {variant: magic}\n", [], ["bad.yaml", "method.variant"]),
        ("name: t\n", ["-o", "train.nope=3"], ["bad.yaml", "train.nope", "unknown key"]),
        ("name: t\n", ["-o", "oops"], ["bad.yaml", "oops", "key.path=value"]),
        ("name: t\nscaling: {num_workers: 0}\n", [], ["bad.yaml", "scaling.num_workers"]),
        # a key given twice is refused, not silently last-wins
        ("name: t\noptim:\n  lr_f: 1\n  lr_f: 2\n", [], ["bad.yaml", "line 4", "'lr_f'"]),
        ("name: t\nname: u\n", [], ["bad.yaml", "duplicate key 'name'"]),
        ("name: t\ntrain: {checkpoint_every: 5}\n", [], ["train.checkpoint_every", "unknown"]),
        # a URI is refused, never folded into a local folder named "s3:"
        ("name: t\n", ["--out", "s3://bucket/res"], ["--out", "s3://bucket/res", "URIs"]),
        ("name: t\nresults: {dir: 'gs://b/r'}\n", [], ["bad.yaml", "results.dir", "URIs"]),
        ("name: t\n", ["-o", "data.root=s3://b/d"], ["bad.yaml", "data.root", "URIs"]),
        # pretrained weights: found and usable before any trial starts
        (
            "name: t\nmodel: {width: 0.5, pretrained: imagenet}\n",
            [],
            ["bad.yaml", "model.pretrained", "width 1.0"],
        ),
        (
            "name: t\nmodel: {pretrained: /nonexistent/vgg16.pth}\n",
            [],
            ["model.pretrained", "/nonexistent/vgg16.pth", "never downloads"],
        ),
        # seeds must fit the int64 result columns and NumPy's generators
        ("name: t\ntrain: {seed: 100000000000000000000}\n", [], ["bad.yaml", "train.seed"]),
        ("name: t\nsweep: {seeds: [0, -1]}\n", [], ["bad.yaml", "sweep.seeds.1"]),
    ],
)
def test_sweep_with_invalid_config_exits_2_without_starting_ray(tmp_path, body, args, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    ray_tmp, env = no_ray_env(tmp_path)
    result = run_cli("sweep", str(path), "--out", str(tmp_path / "out"), *args, env=env)
    assert_one_line_error(result, *fragments)
    assert list(ray_tmp.iterdir()) == []
    assert not (tmp_path / "out").exists()


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
