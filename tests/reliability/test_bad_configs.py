"""Invalid experiment files, overrides and results folders, as a hostile user would write them:
each is one line on stderr naming the file and the key (or path), exit status 2, no Ray session
started and nothing written anywhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, no_ray_env, run_cli
from tests.reliability.tally import count

NAME = "name: t\n"
# A real pair's data section, open for more keys (indented by two spaces).
REAL = "data:\n  source: gta5\n  target: cityscapes\n  root: /nonexistent\n"
Setup = Callable[[Path], None]


def _results_dir_is_a_file(out: Path) -> None:
    out.write_text("not a folder")


def _snapshot(text: str) -> Setup:
    def setup(out: Path) -> None:
        (out / "t").mkdir(parents=True)
        (out / "t" / "experiment.json").write_text(text)

    return setup


def _existing(out: Path) -> None:
    (out / "t" / "trials").mkdir(parents=True)


def _trials_is_a_file(out: Path) -> None:
    (out / "t").mkdir(parents=True)
    (out / "t" / "trials").write_text("not a folder")


# (id, file body, extra arguments, fragments of the one error line, setup of the results dir)
CASES: list[tuple[str, str | bytes, list[str], list[str], Setup | None]] = [
    # values out of range or of the wrong type
    ("negative lr", NAME + "optim: {lr_f: -1}\n", [], ["optim.lr_f", "> 0"], None),
    ("infinite lr", NAME + "optim: {lr_f: 1e400}\n", [], ["optim.lr_f", "finite"], None),
    ("nan alpha", NAME, ["-o", "method.alpha=.nan"], ["method.alpha", "finite"], None),
    ("unknown variant", NAME + "method: {variant: magic}\n", [], ["method.variant"], None),
    ("zero workers", NAME + "scaling: {num_workers: 0}\n", [], ["scaling.num_workers"], None),
    ("dropout 1", NAME + "model: {dropout: 1.0}\n", [], ["model.dropout", "< 1"], None),
    ("width not /32", NAME + "data: {width: 100}\n", [], ["data.width", "multiple of 32"], None),
    ("num_classes 7", NAME + "data: {num_classes: 7}\n", [], ["data.num_classes"], None),
    ("precision fp16", NAME + "train: {precision: fp16}\n", [], ["train.precision"], None),
    ("one beta", NAME + "optim: {betas_f: [0.9]}\n", [], ["optim.betas_f"], None),
    ("eval > iters", NAME + "train: {iterations: 5, eval_every: 9}\n", [], ["eval_every"], None),
    ("huge seed", NAME + "train: {seed: 100000000000000000000}\n", [], ["train.seed"], None),
    ("negative seed", NAME + "sweep: {seeds: [0, -1]}\n", [], ["sweep.seeds.1"], None),
    # the test split never selects
    ("test metric", NAME + "sweep: {metric: target_test_miou}\n", [], ["sweep.metric"], None),
    # a list that names the same trial twice
    ("seed twice", NAME + "sweep: {seeds: [0, 1, 0]}\n", [], ["sweep.seeds", "than once: 0"], None),
    (
        "variant twice",
        NAME + "sweep: {variants: [full, full]}\n",
        [],
        ["sweep.variants", "more than once: full"],
        None,
    ),
    ("search no space", NAME + "sweep: {mode: search}\n", [], ["sweep.space"], None),
    (
        "seed_asha on a grid",
        NAME,
        ["-o", "sweep.scheduler=seed_asha"],
        ["sweep.scheduler", "mode: search"],
        None,
    ),
    (
        "seed_asha, one seed",
        NAME + "sweep: {mode: search, space: {lr_f: {low: 1e-5, high: 1e-2}}}\n",
        ["-o", "sweep.scheduler=seed_asha"],
        ["sweep.scheduler", "at least two sweep.seeds"],
        None,
    ),
    (
        "ablation, variant searched",
        NAME + "sweep: {mode: ablation, final_seeds: [1], space: {variant: [full]}}\n",
        [],
        ["sweep.space.variant", "sweep.variants"],
        None,
    ),
    (
        "ablation, no final seeds",
        NAME + "sweep: {mode: ablation, space: {lr_f: {low: 1e-5, high: 1e-2}}}\n",
        [],
        ["sweep.final_seeds", "at least one"],
        None,
    ),
    (
        "ablation, final seed searched",
        NAME
        + "sweep: {mode: ablation, final_seeds: [0, 5], space: {lr_f: {low: 1e-5, high: 1e-2}}}\n",
        [],
        ["sweep.final_seeds", "[0] also searched"],
        None,
    ),
    (
        "final seeds on a grid",
        NAME,
        ["-o", "sweep.final_seeds=[3]"],
        ["sweep.final_seeds", "ablation"],
        None,
    ),
    (
        "lcb without seed_asha",
        NAME,
        ["-o", "sweep.rung_statistic=lcb"],
        ["sweep.rung_statistic"],
        None,
    ),
    (
        "low >= high",
        NAME + "sweep: {mode: search, space: {lr_f: {low: 1, high: 1}}}\n",
        [],
        ["sweep.space.lr_f", "low must be < high"],
        None,
    ),
    (
        "searched values negative",
        NAME + "sweep: {mode: search, space: {beta: [1, -2]}}\n",
        [],
        ["sweep.space.beta.1", "must be > 0"],
        None,
    ),
    (
        "searched values twice",
        NAME + "sweep: {mode: search, space: {beta: [10, 10]}}\n",
        [],
        ["sweep.space.beta", "listed more than once"],
        None,
    ),
    (
        "searched value neither range nor list",
        NAME + "sweep: {mode: search, space: {beta: 10}}\n",
        [],
        ["sweep.space.beta", "{low: L, high: H} or a list"],
        None,
    ),
    # keys: unknown, dead, given twice
    ("typo key", "nmae: t\n", [], ["nmae", "unknown key"], None),
    ("dead key", NAME + "train: {checkpoint_every: 5}\n", [], ["train.checkpoint_every"], None),
    ("unknown override", NAME, ["-o", "train.nope=3"], ["train.nope", "unknown key"], None),
    ("bare override", NAME, ["-o", "oops"], ["oops", "key.path=value"], None),
    ("key twice", NAME + "optim:\n  lr_f: 1\n  lr_f: 2\n", [], ["line 4", "'lr_f'"], None),
    ("name twice", NAME + "name: u\n", [], ["duplicate key 'name'"], None),
    # names that would escape or be the results folder
    ("name ..", "name: '..'\n", [], ["name", "pattern"], None),
    ("name .", "name: '.'\n", [], ["name", "pattern"], None),
    ("name with /", "name: a/b\n", [], ["name", "pattern"], None),
    ("no name", "data: {width: 64}\n", [], ["name", "required"], None),
    # files that are not a YAML mapping in UTF-8
    ("empty file", "", [], ["name", "required"], None),
    ("top-level list", "- name: t\n", [], ["top level must be a mapping"], None),
    ("malformed", "name: [t\n", [], ["malformed YAML"], None),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", [], ["not UTF-8"], None),
    ("latin-1", "name: caf\xe9\n".encode("latin-1"), [], ["not UTF-8"], None),
    ("utf-16", "name: t\n".encode("utf-16"), [], ["not UTF-8"], None),
    # places that are not local folders
    ("out hdfs", NAME, ["--out", "hdfs://nn/res"], ["--out", "unsupported URI scheme hdfs"], None),
    ("dir http", NAME + "results: {dir: 'http://h/r'}\n", [], ["results.dir", "http://"], None),
    ("no bucket", NAME, ["-o", "results.dir=s3://"], ["results.dir", "names no bucket"], None),
    ("root s3", NAME, ["-o", "data.root=s3://b/d"], ["data.root", "URIs"], None),
    # real-data options: crops, split lists and F's input format
    (
        "crop synthetic",
        NAME + "data: {train_crop: random}\n",
        [],
        ["data.train_crop", "real"],
        None,
    ),
    ("eval crop synth", NAME + "data: {eval_crop: center}\n", [], ["data.eval_crop", "real"], None),
    ("train crop center", NAME + REAL + "  train_crop: center\n", [], ["data.train_crop"], None),
    ("eval crop random", NAME + REAL + "  eval_crop: random\n", [], ["data.eval_crop"], None),
    (
        "lists synthetic",
        NAME + "data: {split_lists: {target_test: test.txt}}\n",
        [],
        ["data.split_lists", "only for real datasets"],
        None,
    ),
    (
        "train list alone",
        NAME + REAL + "  split_lists: {source_train: train.txt}\n",
        [],
        ["data.split_lists.source_val", "required with data.split_lists.source_train"],
        None,
    ),
    (
        "val list alone",
        NAME + REAL + "  split_lists: {target_val: val.txt}\n",
        [],
        ["data.split_lists.target_train", "required with data.split_lists.target_val"],
        None,
    ),
    (
        "list on s3",
        NAME + REAL + "  split_lists: {target_test: 's3://b/test.txt'}\n",
        [],
        ["data.split_lists.target_test", "URIs"],
        None,
    ),
    (
        "unknown list",
        NAME + REAL + "  split_lists: {test: t.txt}\n",
        [],
        ["split_lists.test"],
        None,
    ),
    ("input rgb", NAME + "model: {input_format: rgb}\n", [], ["model.input_format"], None),
    (
        "caffe imagenet",
        NAME + "model: {input_format: bgr_caffe, pretrained: imagenet}\n",
        [],
        ["model.input_format", "Caffe-converted"],
        None,
    ),
    # pretrained weights, found before any trial starts
    ("thin vgg", NAME + "model: {width: 0.5, pretrained: imagenet}\n", [], ["width 1.0"], None),
    (
        "no weights file",
        NAME + "model: {pretrained: /nonexistent/vgg16.pth}\n",
        [],
        ["model.pretrained", "/nonexistent/vgg16.pth", "never downloads"],
        None,
    ),
    # GPU keys without a GPU to apply them to, or that no GPU can satisfy
    (
        "gpu share, no gpu",
        NAME + "scaling: {gpus_per_worker: 0.5}\n",
        [],
        ["scaling", "gpus_per_worker needs use_gpu"],
        None,
    ),
    ("nccl on cpu", NAME + "scaling: {backend: nccl}\n", [], ["scaling", "backend nccl"], None),
    (
        "gpu share > 1",
        NAME + "scaling: {use_gpu: true, gpus_per_worker: 2}\n",
        [],
        ["scaling.gpus_per_worker", "<= 1"],
        None,
    ),
    (
        "nccl shares a gpu",
        NAME + "scaling: {use_gpu: true, num_workers: 2, gpus_per_worker: 0.5}\n",
        [],
        ["scaling", "nccl refuses two workers on one GPU"],
        None,
    ),
    # resources this machine can never give one trial (Ray would wait for them forever)
    ("gpu here", NAME, ["-o", "scaling.use_gpu=true"], ["scaling.use_gpu", "0 GPUs"], None),
    ("64 workers", NAME, ["-o", "scaling.num_workers=64"], ["scaling.num_workers", "64"], None),
    ("fat worker", NAME, ["-o", "scaling.cpus_per_worker=512"], ["scaling.cpus_per_worker"], None),
    # results folders that cannot be used
    ("out is a file", NAME, [], ["results.dir", "is a file"], _results_dir_is_a_file),
    ("exists", NAME, [], ["already exists", "--resume"], _existing),
    ("trials a file", NAME, ["--resume"], ["t/trials", "is a file"], _trials_is_a_file),
    ("corrupt snapshot", NAME, ["--resume"], ["experiment.json", "unreadable"], _snapshot("{x")),
    ("foreign snapshot", NAME, ["--resume"], ["experiment.json", "config_hash"], _snapshot("[]")),
    (
        "changed config",
        NAME,
        ["--resume"],
        ["experiment.json", "config changed"],
        _snapshot(json.dumps({"config_hash": "0123456789ab"})),
    ),
]


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(
    ("body", "args", "fragments", "setup"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_is_one_line_before_ray_and_writes_nothing(
    tmp_path, body, args, fragments, setup
):
    path = tmp_path / "bad.yaml"
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body)
    out = tmp_path / "out"
    if setup is not None:
        setup(out)
    ray_tmp, env = no_ray_env(tmp_path)
    before = _tree(tmp_path)
    result = run_cli("sweep", str(path), "--out", str(out), *args, env=env)
    # Errors about the file's content name the file; those about --out or an existing
    # experiment folder name that path instead.
    if "--out" not in args and setup in (None, _results_dir_is_a_file):
        fragments = ["bad.yaml", *fragments]
    assert_one_line_error(result, *fragments)
    assert list(ray_tmp.iterdir()) == []  # no Ray session was started
    assert _tree(tmp_path) == before  # nothing written or touched, inside or outside out/
    count("bad configs")


def test_at_least_30_bad_inputs_are_covered():
    assert len(CASES) >= 30
