"""The experiment file: every invalid input names the file and the key; overrides are typed."""

from __future__ import annotations

import pytest

from gtaray.config import ConfigError, Experiment, load_experiment
from tests.conftest import EXPERIMENTS

GOOD = """\
name: t
train: {iterations: 10, eval_every: 5}
sweep: {variants: [full, source_only], seeds: [0, 1]}
"""


def write(tmp_path, text: str, name: str = "exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_file_loads_frozen_with_defaults(tmp_path):
    exp = load_experiment(write(tmp_path, GOOD))
    assert exp.train.iterations == 10 and exp.optim.lr_f == 1e-5 and exp.method.variant == "full"
    with pytest.raises(Exception, match="frozen"):
        exp.train.iterations = 3


def test_overrides_are_parsed_to_the_field_type(tmp_path):
    path = write(tmp_path, GOOD)
    exp = load_experiment(
        path,
        [
            "train.iterations=50",
            "optim.lr_f=1e-4",
            "scaling.use_gpu=true",
            "sweep.seeds=[3, 4]",
            "method.variant=no_aux",
            "model.pretrained=/w/vgg.pth",
        ],
    )
    assert exp.train.iterations == 50 and isinstance(exp.train.iterations, int)
    assert exp.optim.lr_f == pytest.approx(1e-4)
    assert exp.scaling.use_gpu is True
    assert exp.sweep.seeds == [3, 4]
    assert exp.method.variant == "no_aux"
    assert exp.model.pretrained == "/w/vgg.pth"


def test_shipped_experiments_are_valid():
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        assert isinstance(load_experiment(path), Experiment), path


def test_config_hash_changes_with_content(tmp_path):
    path = write(tmp_path, GOOD)
    a, b = load_experiment(path), load_experiment(path, ["method.alpha=0.5"])
    assert a.config_hash() == load_experiment(path).config_hash() != b.config_hash()


def test_config_hash_ignores_where_results_live(tmp_path, monkeypatch):
    """`--out r1`, `--out /abs/r1` and a moved folder are the same experiment."""
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, GOOD)
    hashes = {
        load_experiment(path, [f"results.dir={out}"]).config_hash()
        for out in ("r1", str(tmp_path / "r1"), "/elsewhere/moved")
    }
    assert len(hashes) == 1


INVALID = [
    # (file body, overrides, expected fragment of the message)
    ("name: t\nnmae: x\n", [], "exp.yaml: nmae: unknown key"),
    ("name: t\ntrain: {iters: 5}\n", [], "exp.yaml: train.iters: unknown key"),
    ("name: t\ntrain: {iterations: lots}\n", [], "exp.yaml: train.iterations: must be a valid"),
    ("name: t\noptim: {lr_f: -0.001}\n", [], "exp.yaml: optim.lr_f: must be > 0"),
    ("name: t\nmethod: {variant: magic}\n", [], "exp.yaml: method.variant: must be"),
    ("name: t\nsweep: {variants: []}\n", [], "exp.yaml: sweep.variants:"),
    ("name: t\nsweep: {seeds: []}\n", [], "exp.yaml: sweep.seeds:"),
    ("name: t\ntrain: [1, 2\n", [], "exp.yaml: line 3: malformed YAML"),
    ("name: t\n", ["train.iterations"], "exp.yaml: override 'train.iterations': expected"),
    ("name: t\n", ["train.nope=1"], "exp.yaml: train.nope: unknown key"),
    ("name: t\n", ["nope.deeper=1"], "exp.yaml: nope.deeper: unknown key"),
    ("name: t\nscaling: {num_workers: 0}\n", [], "exp.yaml: scaling.num_workers: must be >= 1"),
    ("name: t\ndata: {width: 100}\n", [], "exp.yaml: data.width: must be a multiple of 32"),
    ("name: t\ntrain: {iterations: 5, eval_every: 10}\n", [], "exp.yaml: train.eval_every:"),
    ("name: t\ndata: {source: gta5, target: cityscapes}\n", [], "exp.yaml: data.root: required"),
    ("train: {iterations: 5}\n", [], "exp.yaml: name: Field required"),
    ("- just\n- a list\n", [], "exp.yaml: top level must be a mapping"),
    ("name: t\nsweep: {mode: search}\n", [], "exp.yaml: sweep.space: search mode needs"),
    ("name: t\nsweep: {space: {lr_f: {low: 1, high: 0.1}}}\n", [], "sweep.space.lr_f: low must"),
]


@pytest.mark.parametrize(("body", "overrides", "expected"), INVALID)
def test_invalid_input_names_file_and_key(tmp_path, body, overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_experiment(write(tmp_path, body), overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.yaml: file not found"):
        load_experiment(tmp_path / "nowhere.yaml")


def test_plan_concurrency_follows_cpus_and_gpus(tmp_path):
    from gtaray.plan import plan

    exp = load_experiment(write(tmp_path, GOOD), ["scaling.num_workers=2"])
    assert plan(exp, [{"CPU": 8}]).concurrency == 4  # 4 trials of 2 one-CPU workers
    assert plan(exp, [{"CPU": 3}]).concurrency == 1
    assert plan(exp, [{"CPU": 1}, {"CPU": 1}, {"CPU": 1.5}]).concurrency == 1  # workers span nodes
    assert plan(exp.with_updates({"sweep.max_concurrent": 1}), [{"CPU": 8}]).concurrency == 1
    gpu = exp.with_updates({"scaling.use_gpu": True})
    assert plan(gpu, [{"CPU": 64, "GPU": 4}]).concurrency == 2
    assert plan(gpu, [{"CPU": 64, "GPU": 0}]).concurrency == 0  # refused before a sweep starts
    shared = gpu.with_updates({"scaling.gpus_per_worker": 0.5, "scaling.backend": "gloo"})
    assert plan(shared, [{"CPU": 64, "GPU": 1}]).concurrency == 1  # 2 workers on one GPU
    assert plan(shared, [{"CPU": 64, "GPU": 1}]).gpus_per_trial == 1.0


def test_gpu_keys_resolve_to_ray_resources_and_a_backend(tmp_path):
    from gtaray.trainer import worker_resources

    exp = load_experiment(write(tmp_path, GOOD))
    assert exp.scaling.dist_backend == "gloo" and worker_resources(exp) == {"CPU": 1.0}
    gpu = exp.with_updates({"scaling.use_gpu": True})
    assert gpu.scaling.dist_backend == "nccl"
    assert worker_resources(gpu) == {"CPU": 1.0, "GPU": 1.0}
    shared = gpu.with_updates(
        {"scaling.gpus_per_worker": 0.5, "scaling.backend": "gloo", "scaling.num_workers": 2}
    )
    assert worker_resources(shared) == {"CPU": 1.0, "GPU": 0.5}
    assert shared.scaling.dist_backend == "gloo"


def test_each_search_space_entry_names_the_experiment_key_it_samples():
    from gtaray.config import SEARCHED_PATHS, SearchSpace

    assert set(SEARCHED_PATHS) == set(SearchSpace.model_fields)
    exp = load_experiment(EXPERIMENTS / "search.yaml")
    for name, key in SEARCHED_PATHS.items():
        section, field = key.split(".")
        assert field == name and field in type(getattr(exp, section)).model_fields
    assert list(exp.sweep.space.searched()) == [
        SEARCHED_PATHS[n] for n, v in exp.sweep.space if v is not None
    ]
