"""The experiment file: a frozen, typed tree loaded from YAML.

    exp = load_experiment("experiments/smoke.yaml", ["train.iterations=50"])

Every model forbids unknown keys, so a typo fails at load time with the file and the key path,
not an hour into a sweep. The README's config reference documents every field below.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from gtaray.errors import ConfigError

# The variants in paper order: the bounds around the method and its ablations (the report's
# row order).
VARIANTS = ("source_only", "feature_d", "within_domain", "no_aux", "full", "target_oracle")
Variant = Literal[VARIANTS]
PositiveFloat = Annotated[float, Field(gt=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]
Betas = tuple[Beta, Beta]
# Seeds fit the int64 result columns and NumPy's generators.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Results may live in these besides plain local paths (gtaray.storage reads and writes them).
SCHEMES = ("s3", "gs", "file")
OBJECT_STORES = ("s3", "gs")


def scheme(location: str | Path) -> str | None:
    """The URI scheme of a location ("s3"), None for a plain path."""
    match = _URI.match(str(location))
    return match.group(1).lower() if match else None


def check_location(value: str) -> str:
    """A results location gtaray can use, or ValueError naming what is supported."""
    kind = scheme(value)
    if kind is not None and kind not in SCHEMES:
        raise ValueError(
            f"unsupported URI scheme {kind}:// in {value!r}; use a local path, s3://, gs:// or "
            "file://"
        )
    if kind in OBJECT_STORES and not value.split("://", 1)[1].strip("/"):
        raise ValueError(f"{value!r} names no bucket")
    return value


def local_path(value: Any) -> Any:
    """Refuse URIs (s3://, gs://, file://, ...) instead of letting Path() fold them into a
    local folder named "s3:"."""
    if isinstance(value, str) and _URI.match(value):
        raise ValueError(
            f"URIs are not supported (got {value!r}); use a local or mounted shared folder"
        )
    return value


def _unique(values: list | None) -> list | None:
    """A list that names the same trial twice would run it twice and fake a spread of 0."""
    if isinstance(values, list):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
    return values


class _Frozen(BaseModel):
    # inf/nan are never a valid setting (1e400 in YAML reads as infinity).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class SplitLists(_Frozen):
    source_train: Path | None = None
    source_val: Path | None = None
    target_train: Path | None = None  # names under Cityscapes' leftImg8bit/train
    target_val: Path | None = None  # also Cityscapes train: held out of target_train
    target_test: Path | None = None  # names under Cityscapes' leftImg8bit/val
    _local = field_validator("*", mode="before")(local_path)

    @model_validator(mode="after")
    def _train_and_val_together(self) -> SplitLists:
        # A list replaces the hold-out that keeps val out of train: half of it would leave
        # the other split without a definition that cannot overlap.
        for domain in ("source", "target"):
            train, val = f"{domain}_train", f"{domain}_val"
            for given, missing in ((train, val), (val, train)):
                if getattr(self, given) is not None and getattr(self, missing) is None:
                    raise ValueError(
                        f"{missing}: required with data.split_lists.{given} (a domain's train and "
                        "val lists are given together)"
                    )
        return self


class Data(_Frozen):
    source: Literal["synthetic", "gta5", "synthia"] = "synthetic"
    target: Literal["synthetic", "cityscapes"] = "synthetic"
    # Real datasets live under root/<dataset name> (root/gta5, root/cityscapes, ...).
    root: Path | None = None
    _root_is_local = field_validator("root", mode="before")(local_path)
    width: int = Field(256, ge=32, multiple_of=32)
    height: int = Field(128, ge=32, multiple_of=32)
    # 13 is refused (see _no_13_class_model): papers score SYNTHIA's 13 classes as mIoU* of
    # the 16-class model, which every 16-class row carries (target_miou_13).
    num_classes: Literal[19, 16] = 19
    # Split sizes in images. Real datasets: a cap, None = all available (synthetic needs numbers).
    source_train: int | None = Field(200, ge=1)
    source_val: int | None = Field(50, ge=1)
    target_train: int | None = Field(200, ge=1)
    target_val: int | None = Field(50, ge=1)
    target_test: int | None = Field(50, ge=1)
    # Seed of the built-in scenes: the same data for every trial, whatever train.seed is.
    seed: Seed = 0
    # Built-in target domain: "global" = a class-agnostic appearance shift (palette mix, white
    # balance, contrast, texture, noise, blur, lighting, tone; the kind GTA5 -> Cityscapes has),
    # "hard" = class colours swapped (a conditional shift marginal alignment cannot undo).
    target_style: Literal["global", "hard"] = "global"
    # mIoU at the label files' own resolution (predictions resized up, the authors' protocol) or
    # at the training input size (labels resized down; cheaper, not comparable to papers).
    eval_resolution: Literal["label", "input"] = "label"
    # The released code's crops (real datasets): each training image cropped at random to the
    # training size's aspect (2:1 at 1024x512) before it is resized; evaluation images centre
    # cropped to it, or (none) resized whole, squashing GTA5's 1.82 and SYNTHIA's 1.68 to 2:1.
    train_crop: Literal["none", "random"] = "none"
    eval_crop: Literal["none", "center"] = "none"
    # Text files of image names (one per line, relative to the split's image folder) that
    # define a split instead of gtaray's hold-out (real datasets).
    split_lists: SplitLists = SplitLists()

    @field_validator("num_classes", mode="before")
    @classmethod
    def _no_13_class_model(cls, value: Any) -> Any:
        if value == 13:
            raise ValueError(
                "13 trains a 13-class model that no paper reports; use 16 (SYNTHIA's "
                "protocol): its rows carry mIoU* over the 13 classes as target_miou_13"
            )
        return value

    @model_validator(mode="after")
    def _real_data_needs_root(self) -> Data:
        if self.root is None and (self.source != "synthetic" or self.target != "synthetic"):
            raise ValueError("root: required when source or target is a real dataset")
        if (self.source == "synthetic") != (self.target == "synthetic"):
            raise ValueError(
                "source/target: the synthetic pair cannot be mixed with a real dataset"
            )
        sizes = ("source_train", "source_val", "target_train", "target_val", "target_test")
        for name in sizes:
            if self.source == "synthetic" and getattr(self, name) is None:
                raise ValueError(f"{name}: the synthetic pair needs a number of images")
        if self.source == "synthetic":
            for key, value, off in (
                ("train_crop", self.train_crop, "none"),
                ("eval_crop", self.eval_crop, "none"),
                ("split_lists", self.split_lists, SplitLists()),
            ):
                if value != off:
                    raise ValueError(f"{key}: only for real datasets (the synthetic pair is drawn)")
        return self


class Model(_Frozen):
    # "authors": the released code's networks (fcn8s_LSD.py: pad-100 FCN-8s, their _netG and
    # _netD); "compact": gtaray's lighter design for CPU-sized runs (README "Networks").
    arch: Literal["authors", "compact"] = "compact"
    width: PositiveFloat = 1.0
    # G and D's own width multiplier (None = `width`): a thin F can keep a G and D that carry
    # the domain.
    gd_width: PositiveFloat | None = None
    # Path to torchvision's vgg16 state dict, or "imagenet" (torch hub cache); None = random init.
    pretrained: str | None = None
    # Every dropout: F's fc6/fc7 and each residual block of G and D (0 turns all of them off).
    dropout: float = Field(0.5, ge=0, lt=1)
    # G and D initialisation: "normal" = conv weights N(0, 0.02), biases U(-0.01, 0.01) (the
    # authors' weights_init); "pytorch" = PyTorch's default.
    gd_init: Literal["normal", "pytorch"] = "normal"
    # FCN-8s's two 2x bilinear upsamplers in C stay fixed (the authors never optimise them).
    freeze_upsampling: bool = True
    # What F eats, matched to the weights: torchvision's VGG16 wants RGB in [0,1] normalised by
    # ImageNet's mean and std; a Caffe-converted VGG16 (the authors') BGR in 0..255 minus the
    # Caffe mean. G and D always see RGB in [0, 1].
    input_format: Literal["rgb_imagenet", "bgr_caffe"] = "rgb_imagenet"

    @model_validator(mode="after")
    def _pretrained_needs_full_width(self) -> Model:
        if self.pretrained and self.width != 1.0:
            raise ValueError(
                f"pretrained: ImageNet VGG16 weights need model.width 1.0, got {self.width} "
                "(set pretrained: null to train a thinner F from scratch)"
            )
        if self.pretrained == "imagenet" and self.input_format != "rgb_imagenet":
            raise ValueError(
                "input_format: pretrained 'imagenet' is torchvision's VGG16, trained on "
                "rgb_imagenet inputs; give the path of a Caffe-converted VGG16 for bgr_caffe"
            )
        return self

    @property
    def gd(self) -> float:
        return self.width if self.gd_width is None else self.gd_width


class Method(_Frozen):
    variant: Variant = "full"
    alpha: float = Field(0.1, ge=0)
    beta: float = Field(0.1, ge=0)
    adv_g: float = Field(0.1, ge=0)
    aux_g: float = Field(1.0, ge=0)
    l1: float = Field(1.0, ge=0)
    # Loss units. "sum": every cross-entropy summed over labelled pixels and divided by the
    # batch size, L1 a mean (the authors' code; the weights above mean the paper's method only
    # in these units). "mean": every term a per-pixel mean.
    reduction: Literal["sum", "mean"] = "sum"
    # feature_d's adversarial term in "sum" units: "image_d" sums its per-position mean over as
    # many positions as the image D's stride-8 map has, so beta weighs an image the same in
    # feature_d as in full; "native" sums over fc7's positions (16x fewer: 16x weaker at the
    # same beta).
    feature_d_units: Literal["image_d", "native"] = "image_d"


class Optim(_Frozen):
    lr_f: PositiveFloat = 1e-5
    lr_gd: PositiveFloat = 2e-4
    betas_f: Betas = (0.9, 0.999)  # F and C
    betas_gd: Betas = (0.7, 0.999)  # G and D
    bias_lr_x2: bool = True
    # Step decay of F's (and C's) learning rate: x lr_f_gamma every lr_f_step iterations (the
    # released code: x0.1 every 8 epochs); None = constant, the paper's text.
    lr_f_step: int | None = Field(None, ge=1)
    lr_f_gamma: float = Field(0.1, gt=0, le=1)


class Train(_Frozen):
    iterations: int = Field(10_000, ge=1)
    eval_every: int = Field(1_000, ge=1)
    batch_size: int = Field(1, ge=1)
    seed: Seed = 0
    # Fast-path switches; measured effects in docs/benchmarks.md.
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast around the forward passes
    channels_last: bool = False
    compile: bool = False  # torch.compile every net (after DDP wrapping)
    fused_adam: bool = False  # Adam(fused=True): one kernel per optimizer step
    cudnn_benchmark: bool = False  # let cuDNN time its algorithms (GPU; fixed input sizes)
    # DataLoader processes decoding batches ahead of the step; None: cpus_per_worker - 1.
    loader_workers: int | None = Field(None, ge=0)
    num_to_keep: int = Field(2, ge=1)
    max_failures: int = Field(0, ge=-1)


class Scaling(_Frozen):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: PositiveFloat = 1.0
    # With use_gpu: the share of one GPU each worker holds (0.5: two workers per GPU, which
    # needs backend gloo: nccl refuses two ranks on one device). None: one whole GPU.
    gpus_per_worker: float | None = Field(None, gt=0, le=1)
    # torch.distributed's backend; None: nccl with use_gpu, else gloo (Ray Train's default).
    backend: Literal["nccl", "gloo"] | None = None
    # How long a trial the cluster cannot place yet waits for nodes to join (an autoscaling
    # cluster) before it is refused; 0 refuses at once.
    wait_for_nodes_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _gpu_keys_need_a_gpu(self) -> Scaling:
        if not self.use_gpu:
            if self.gpus_per_worker is not None:
                raise ValueError("gpus_per_worker needs use_gpu: true")
            if self.backend == "nccl":
                raise ValueError("backend nccl needs use_gpu: true (nccl runs on GPUs only)")
        elif self.dist_backend == "nccl" and self.gpu_share < 1 and self.num_workers > 1:
            raise ValueError(
                f"backend nccl with gpus_per_worker {self.gpus_per_worker:g}: nccl refuses two "
                "workers on one GPU; use backend: gloo to share a GPU"
            )
        return self

    @property
    def device(self) -> str:
        return "cuda" if self.use_gpu else "cpu"

    @property
    def dist_backend(self) -> str:
        return self.backend or ("nccl" if self.use_gpu else "gloo")

    @property
    def gpu_share(self) -> float:
        """GPUs each worker holds: 0 without use_gpu."""
        if not self.use_gpu:
            return 0.0
        return 1.0 if self.gpus_per_worker is None else self.gpus_per_worker


class LogUniform(_Frozen):
    low: PositiveFloat
    high: PositiveFloat

    @model_validator(mode="after")
    def _ordered(self) -> LogUniform:
        if self.low >= self.high:
            raise ValueError("low must be < high")
        return self


# A searched number: log-uniform between bounds, or one of listed values (a discrete space can
# also be run exhaustively, to check what a search finds against the whole grid).
Searched = (
    Annotated[
        Annotated[LogUniform, Tag("range")]
        | Annotated[list[PositiveFloat], Field(min_length=1), Tag("list")],
        # One branch per input shape, so a bad entry gets that branch's error only.
        Discriminator(lambda v: "list" if isinstance(v, list) else "range"),
    ]
    | None
)


# The experiment key each search-space entry samples. Tune's trial configs, the rows' columns
# and Optuna's parameters all use these dotted keys.
SEARCHED_PATHS = {
    "lr_f": "optim.lr_f",
    "lr_gd": "optim.lr_gd",
    "alpha": "method.alpha",
    "beta": "method.beta",
    "variant": "method.variant",
}


class SearchSpace(_Frozen):
    lr_f: Searched = None
    lr_gd: Searched = None
    alpha: Searched = None
    beta: Searched = None
    variant: list[Variant] | None = Field(None, min_length=1)
    _lists_unique = field_validator("lr_f", "lr_gd", "alpha", "beta", "variant")(_unique)

    def searched(self) -> dict[str, LogUniform | list]:
        """What a search samples, by dotted key (`{"optim.lr_f": LogUniform(...)}`), in the
        space's order; entries left out are not searched."""
        return {SEARCHED_PATHS[name]: value for name, value in self if value is not None}


# What a grid varies: variants x seeds.
GRID_KEYS = ("method.variant", "train.seed")


class Sweep(_Frozen):
    mode: Literal["grid", "search", "ablation"] = "grid"
    variants: list[Variant] = Field(default_factory=lambda: ["full"], min_length=1)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    # ablation: the seeds each variant's chosen configuration runs on, none of them searched.
    final_seeds: list[Seed] = Field(default_factory=list)
    _lists_unique = field_validator("variants", "seeds", "final_seeds")(_unique)
    space: SearchSpace = SearchSpace()
    num_samples: int = Field(1, ge=1)
    scheduler: Literal["none", "asha", "seed_asha"] = "none"
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(2, ge=2)
    # seed_asha: what a seed group is ranked by at a rung (lcb: the mean's 95% lower bound).
    rung_statistic: Literal["mean", "lcb"] = "mean"
    metric: Literal["target_val_miou", "source_val_miou"] = "target_val_miou"
    max_concurrent: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _search_needs_space(self) -> Sweep:
        if self.mode in ("search", "ablation") and self.space == SearchSpace():
            raise ValueError(f"space: {self.mode} mode needs at least one searched parameter")
        searching = self.mode in ("search", "ablation")
        if self.scheduler == "seed_asha" and (not searching or len(self.seeds) < 2):
            raise ValueError(
                "scheduler: seed_asha decides on seed groups: it needs mode: search (or "
                f"ablation) and at least two sweep.seeds (got mode {self.mode}, seeds "
                f"{self.seeds})"
            )
        if self.mode == "ablation":
            if self.space.variant is not None:
                raise ValueError(
                    "space.variant: ablation mode tunes each of sweep.variants on its own; "
                    "list them in sweep.variants, not in the space"
                )
            if not self.final_seeds:
                raise ValueError(
                    "final_seeds: ablation mode runs each variant's chosen "
                    "configuration on these seeds; give at least one"
                )
        elif self.final_seeds:
            raise ValueError("final_seeds: only ablation mode has a final phase")
        if self.rung_statistic != "mean" and self.scheduler != "seed_asha":
            raise ValueError("rung_statistic: only seed_asha ranks seed groups")
        return self

    @property
    def seed_group(self) -> list[int] | None:
        """The seeds each sampled configuration runs with, as one group of trials (search mode
        with two or more sweep.seeds); None: each configuration runs once, at train.seed."""
        searching = self.mode in ("search", "ablation")
        return list(self.seeds) if searching and len(self.seeds) > 1 else None


class Results(_Frozen):
    # A local folder, or s3:// / gs:// / file:// (gtaray.storage).
    dir: str = "results"

    _supported = field_validator("dir")(check_location)


class WandB(_Frozen):
    project: str = Field(min_length=1)
    mode: Literal["online", "offline"] = "online"  # offline: run folders to `wandb sync` later
    # A run's group: its configuration (the config hash without the seed), so that the seeds
    # of one configuration are one group in W&B's UI.
    group_by: Literal["config"] = "config"


def _mlflow_uri(value: str) -> str:
    if scheme(value) not in ("http", "https", "file"):
        raise ValueError(
            f"must be a server (http://host:port, https://...) or a file store (file:///path), "
            f"got {value!r}"
        )
    return value


class MLflow(_Frozen):
    tracking_uri: str
    experiment: str | None = None  # MLflow's experiment; None: the gtaray experiment's name
    _supported = field_validator("tracking_uri")(_mlflow_uri)


class Tracking(_Frozen):
    # Where trials are watched while they run (gtaray.trackers); not part of the experiment's
    # identity: turning a tracker on for a --resume continues the same experiment.
    tensorboard: bool = False
    wandb: WandB | None = None
    mlflow: MLflow | None = None


class Experiment(_Frozen):
    # A folder name under results.dir: never "." or "..", never a path.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    data: Data = Data()
    model: Model = Model()
    method: Method = Method()
    optim: Optim = Optim()
    train: Train = Train()
    scaling: Scaling = Scaling()
    sweep: Sweep = Sweep()
    results: Results = Results()
    tracking: Tracking = Tracking()

    @model_validator(mode="after")
    def _eval_within_run(self) -> Experiment:
        if self.train.eval_every > self.train.iterations:
            raise ValueError("train.eval_every: must be <= train.iterations")
        searched = set(self.sweep.seed_group or [self.train.seed])
        if self.sweep.mode == "ablation" and searched & set(self.sweep.final_seeds):
            raise ValueError(
                f"sweep.final_seeds: {sorted(searched & set(self.sweep.final_seeds))} also "
                "searched (sweep.seeds, or train.seed with one seed); the final seeds must be "
                "fresh"
            )
        return self

    def config_hash(self) -> str:
        """Short stable hash of everything that defines the experiment: not where its results
        live (`--out r1` and `--out /abs/r1`, or a moved folder, are the same experiment), nor
        where it is watched (`tracking`)."""
        dump = self.model_dump(mode="json", exclude={"results", "tracking"})
        blob = json.dumps(dump, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def configuration_hash(self) -> str:
        """The config hash without the training seed: the seeds of one configuration share
        it (trackers group runs by it)."""
        return self.with_updates({"train.seed": 0}).config_hash()

    def with_updates(self, updates: dict[str, Any]) -> Experiment:
        """A copy with dotted keys replaced (`{"method.variant": "full"}`), validated again."""
        tree = self.model_dump(mode="json")
        for key, value in updates.items():
            _set_dotted(tree, key.split("."), value)
        return Experiment.model_validate(tree)


def _set_dotted(tree: dict, parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


def _parse_override(text: str, source: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not p.isidentifier() for p in key.split(".")):
        raise ConfigError(f"{source}: override {text!r}: expected key.path=value")
    # The value reads as it would in the file ("50" -> 50, "true" -> True, "[0, 1]" -> a list,
    # "null" -> None); pydantic then converts it to the field's type ("1e-4" -> 0.0001).
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError:
        return key, raw


def _check_override_key(key: str, source: str) -> None:
    model: type[BaseModel] | None = Experiment
    for part in key.split("."):
        if model is None or part not in model.model_fields:
            raise ConfigError(f"{source}: {key}: unknown key")
        annotation = model.model_fields[part].annotation
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )


_UNION_TAGS = ("range", "list")


def _format_error(source: str, error: ValidationError) -> str:
    # An unknown key first: a typo also makes its intended key "missing".
    first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    # Without the tags of a tagged union (`space.beta.list.1` is `space.beta.1` in the file).
    loc = ".".join(str(p) for p in first["loc"] if p not in _UNION_TAGS)
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
        # Model-level checks name their own key; put it in the path.
        head, sep, tail = msg.partition(": ")
        if sep and " " not in head:
            loc, msg = ".".join(p for p in (loc, head) if p), tail
    for words, sign in (
        ("greater than or equal to", ">="),
        ("less than or equal to", "<="),
        ("greater than", ">"),
        ("less than", "<"),
    ):
        msg = msg.replace(words, sign)
    msg = msg.replace("Input should be", "must be")
    msg = msg.replace("a valid dictionary or instance of LogUniform", "{low: L, high: H} or a list")
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return f"{source}: {loc or '<root>'}: {msg}{more}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's mappings, but a key given twice is an error instead of the last one winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Read, override and validate an experiment file; raise ConfigError naming file and key."""
    path = Path(path)
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not an experiment file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        tree = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = f" ({e.problem})" if getattr(e, "problem", None) else ""
        raise ConfigError(f"{source}:{where}: malformed YAML{problem}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: top level must be a mapping of keys")
    for text_override in overrides:
        key, value = _parse_override(text_override, source)
        _check_override_key(key, source)
        _set_dotted(tree, key.split("."), value)
    try:
        return Experiment.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_error(source, e)) from None
