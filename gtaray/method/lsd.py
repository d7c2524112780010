"""The LSD method: networks per variant, optimizers, and one D -> G -> F iteration.

    nets = build(exp); opts = make_optimizers(nets, exp)
    losses = train_step(nets, opts, example_batch(exp), exp)   # {"d/...", "g/...", "f/..."}

Each update runs its own forward pass against the current weights (the authors' code reuses a
graph after D has stepped). Nets may arrive wrapped for DDP by the training loop: the net being
trained is called through its wrapper exactly once per update (inputs of both domains are
concatenated), frozen nets are called unwrapped with requires_grad off, so DDP only ever reduces
the gradients of the net that steps. No Ray here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from gtaray.config import Experiment
from gtaray.method import losses
from gtaray.method.losses import FEAT_SRC, FEAT_TGT, SRC_FAKE, SRC_REAL, TGT_FAKE, TGT_REAL
from gtaray.models.authors import (
    AuthorsClassifier,
    AuthorsDiscriminator,
    AuthorsEmbedding,
    AuthorsGenerator,
)
from gtaray.models.classifier import Classifier
from gtaray.models.discriminator import Discriminator, FeatureD
from gtaray.models.embedding import Embedding
from gtaray.models.generator import Generator
from gtaray.models.init import normal_init
from gtaray.models.pretrained import load_vgg16_imagenet

ADVERSARIAL = ("full", "no_aux", "within_domain")  # variants with G and the image-space D
# model.arch -> (F, C, G, D) classes; both sets share their constructors' signatures.
ARCHS = {
    "compact": (Embedding, Classifier, Generator, Discriminator),
    "authors": (AuthorsEmbedding, AuthorsClassifier, AuthorsGenerator, AuthorsDiscriminator),
}
# The image D's output stride: feature_d's term is scaled to as many positions (image_d units).
IMAGE_D_STRIDE = 8


NET_NAMES = ("F", "C", "G", "D")


@dataclass
class Nets:
    F: nn.Module
    C: nn.Module
    G: nn.Module | None = None
    D: nn.Module | None = None  # Discriminator, or FeatureD for feature_d
    # Callables for the passes that do not train a net (gtaray.runtime.compile_nets fills it
    # with compiled ones); a net missing here is called as its plain module, eagerly.
    frozen_calls: dict[str, Callable] = field(default_factory=dict)

    def items(self) -> list[tuple[str, nn.Module]]:
        return [(k, getattr(self, k)) for k in NET_NAMES if getattr(self, k) is not None]

    def frozen_call(self, name: str) -> Callable:
        """Net `name` for a pass that does not train it: never through its DDP wrapper, so
        DDP only ever reduces the gradients of the net that steps."""
        call = self.frozen_calls.get(name)
        return unwrap(getattr(self, name)) if call is None else call


@dataclass
class Optimizers:
    f: torch.optim.Optimizer  # F and C together
    g: torch.optim.Optimizer | None = None
    d: torch.optim.Optimizer | None = None

    def items(self) -> list[tuple[str, torch.optim.Optimizer]]:
        return [(k, v) for k, v in vars(self).items() if v is not None]


def build(exp: Experiment) -> Nets:
    """The networks the experiment's variant needs (unused ones are None), on the CPU."""
    variant, m, k = exp.method.variant, exp.model, exp.data.num_classes
    embedding, classifier, generator, discriminator = ARCHS[m.arch]
    f = embedding(width=m.width, dropout=m.dropout)
    if m.pretrained:
        load_vgg16_imagenet(f, m.pretrained)
    nets = Nets(F=f, C=classifier(k, width=m.width, learn_upsampling=not m.freeze_upsampling))
    if variant in ADVERSARIAL:
        channels = (f.fc7_channels, f.pool4_channels, f.pool3_channels)
        nets.G = generator(*channels, width=m.gd, dropout=m.dropout)
        nets.D = discriminator(k, width=m.gd, aux=variant != "no_aux", dropout=m.dropout)
    elif variant == "feature_d":
        nets.D = FeatureD(f.fc7_channels, width=m.gd)
    if m.gd_init == "normal":
        for net in (nets.G, nets.D):
            if net is not None:
                normal_init(net)
    return nets


def _adam(modules: list[nn.Module], lr: float, betas, bias_x2: bool, fused: bool):
    # Parameters with requires_grad off (C's fixed upsamplers) are never optimised.
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    # fused=None is torch's default (foreach); True: one fused kernel per step (CPU and CUDA).
    kwargs = {"lr": lr, "betas": betas, "fused": True if fused else None}
    if not bias_x2:
        return torch.optim.Adam(params, **kwargs)
    # The authors' FCN recipe: biases learn twice as fast as weights.
    weights = [p for p in params if p.ndim > 1]
    biases = [p for p in params if p.ndim <= 1]
    groups = [{"params": weights, "lr": lr}, {"params": biases, "lr": 2 * lr}]
    return torch.optim.Adam(groups, **kwargs)


def make_optimizers(nets: Nets, exp: Experiment) -> Optimizers:
    """Adam for F+C at lr_f (biases x2 if configured), and for G and D each at lr_gd."""
    o, fused = exp.optim, exp.train.fused_adam
    opts = Optimizers(f=_adam([nets.F, nets.C], o.lr_f, o.betas_f, o.bias_lr_x2, fused=fused))
    if nets.G is not None:
        opts.g = _adam([nets.G], o.lr_gd, o.betas_gd, bias_x2=False, fused=fused)
    if nets.D is not None:
        opts.d = _adam([nets.D], o.lr_gd, o.betas_gd, bias_x2=False, fused=fused)
    return opts


def schedule_lr_f(opt: torch.optim.Optimizer, exp: Experiment, iteration: int) -> None:
    """Set F's learning rates for `iteration` (1-based): x lr_f_gamma after every lr_f_step
    iterations (the released code's step decay). Derived from the iteration alone, so a
    restored run continues on the same schedule."""
    o = exp.optim
    if o.lr_f_step is None:
        return
    factor = o.lr_f_gamma ** ((iteration - 1) // o.lr_f_step)
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])  # saved with the optimizer's state
        group["lr"] = group["initial_lr"] * factor


def feature_d_scale(exp: Experiment, image: torch.Tensor, fc7: torch.Tensor) -> float:
    """What feature_d's summed adversarial term is multiplied by: in image_d units, the image
    D's position count over fc7's (~16), so that beta weighs an image as it does in `full`."""
    if exp.method.reduction != "sum" or exp.method.feature_d_units == "native":
        return 1.0
    h, w = image.shape[-2:]
    return (h // IMAGE_D_STRIDE) * (w // IMAGE_D_STRIDE) / (fc7.shape[-2] * fc7.shape[-1])


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module inside torch.compile and/or DDP wrappers (or the module itself)."""
    net = getattr(net, "_orig_mod", net)  # torch.compile's OptimizedModule
    return getattr(net, "module", net)  # DistributedDataParallel


@contextlib.contextmanager
def frozen(*nets: nn.Module) -> Iterator[None]:
    """Let gradients flow through these nets without computing their own parameter grads."""
    params = [p for n in nets for p in n.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _autocast(batch: dict, exp: Experiment):
    device = batch["src_image"].device.type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=exp.train.precision == "bf16")


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _halves(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return t.chunk(2)


def generate(nets: Nets, batch: dict) -> torch.Tensor:
    """G(F(x)) of both domains (source half first): F without gradient, G through its wrapper."""
    xs, xt = batch["src_image"], batch["tgt_image"]
    with torch.no_grad():
        features = nets.frozen_call("F")(torch.cat([xs, xt]))
    return nets.G(*features, xs.shape[2:])


def update_d(
    nets: Nets, opt: torch.optim.Optimizer, batch: dict, exp: Experiment, fake=None
) -> dict:
    """D learns the four domains (and the classes of real source pixels).

    `fake`: G(F(x)) from `generate` (only its values are used); computed here when None.
    """
    if fake is None:
        with torch.no_grad():
            fake = generate(nets, batch)
    fake_s, fake_t = _halves(fake.detach())
    domain_logits, aux_logits = nets.D(
        torch.cat([batch["src_rgb"], fake_s, batch["tgt_rgb"], fake_t])
    )
    d_sr, d_sf, d_tr, d_tf = domain_logits.chunk(4)
    r = exp.method.reduction
    out = {
        "d/src_real": losses.domain(d_sr, SRC_REAL, r),
        "d/src_fake": losses.domain(d_sf, SRC_FAKE, r),
        "d/tgt_real": losses.domain(d_tr, TGT_REAL, r),
        "d/tgt_fake": losses.domain(d_tf, TGT_FAKE, r),
    }
    if aux_logits is not None:
        out["d/aux"] = losses.auxiliary(aux_logits.chunk(4)[0], batch["src_label"], r)
    out["d/loss"] = sum(out.values())
    _step(opt, out["d/loss"])
    return out


def update_g(
    nets: Nets, opt: torch.optim.Optimizer, batch: dict, exp: Experiment, fake=None
) -> dict:
    """G fools D within each domain, makes D's aux head read source classes, reconstructs.

    `fake`: `generate`'s output with its graph through G; computed here when None.
    """
    fake = generate(nets, batch) if fake is None else fake
    fake_s, fake_t = _halves(fake)
    with frozen(nets.D):
        domain_logits, aux_logits = nets.frozen_call("D")(fake)
    d_s, d_t = _halves(domain_logits)
    m, r = exp.method, exp.method.reduction
    out = {
        "g/adv_src": losses.domain(d_s, SRC_REAL, r),
        "g/adv_tgt": losses.domain(d_t, TGT_REAL, r),
        "g/l1": losses.reconstruction(fake_s, batch["src_rgb"])
        + losses.reconstruction(fake_t, batch["tgt_rgb"]),
    }
    loss = m.adv_g * (out["g/adv_src"] + out["g/adv_tgt"]) + m.l1 * out["g/l1"]
    if aux_logits is not None:
        out["g/aux"] = losses.auxiliary(_halves(aux_logits)[0], batch["src_label"], r)
        loss = loss + m.aux_g * out["g/aux"]
    out["g/loss"] = loss
    _step(opt, out["g/loss"])
    return out


def update_f(nets: Nets, opt: torch.optim.Optimizer, batch: dict, exp: Experiment) -> dict:
    """F and C: segment source, and make G(F(.)) of each domain pass as the *other* domain."""
    xs, xt, ys = batch["src_image"], batch["tgt_image"], batch["src_label"]
    variant, size, r = exp.method.variant, xs.shape[2:], exp.method.reduction
    features = nets.F(torch.cat([xs, xt]))
    source_features = [f[: xs.shape[0]] for f in features]
    out = {"f/seg": losses.segmentation(nets.C(*source_features, size), ys, r)}
    adversarial = None
    if variant == "feature_d":
        with frozen(nets.D):
            d_s, d_t = _halves(nets.frozen_call("D")(features[0]))
        adversarial = losses.domain(d_s, FEAT_TGT, r) + losses.domain(d_t, FEAT_SRC, r)
        adversarial = adversarial * feature_d_scale(exp, xs, features[0])
    else:
        with frozen(nets.G, nets.D):
            fake = nets.frozen_call("G")(*features, size)
            domain_logits, aux_logits = nets.frozen_call("D")(fake)
        d_s, d_t = _halves(domain_logits)
        swap = variant != "within_domain"
        adversarial = losses.domain(d_s, TGT_REAL if swap else SRC_REAL, r) + losses.domain(
            d_t, SRC_REAL if swap else TGT_REAL, r
        )
        if aux_logits is not None:
            out["f/aux"] = losses.auxiliary(_halves(aux_logits)[0], ys, r)
    out["f/adv"] = adversarial
    out["f/loss"] = (
        out["f/seg"] + exp.method.alpha * out.get("f/aux", 0.0) + exp.method.beta * adversarial
    )
    _step(opt, out["f/loss"])
    return out


def update_f_supervised(
    nets: Nets, opt: torch.optim.Optimizer, batch: dict, exp: Experiment
) -> dict:
    """The bounds: F+C on one domain's labels (source_only: source, target_oracle: target)."""
    domain = "tgt" if exp.method.variant == "target_oracle" else "src"
    x = batch[f"{domain}_image"]
    logits = nets.C(*nets.F(x), x.shape[2:])
    seg = losses.segmentation(logits, batch[f"{domain}_label"], exp.method.reduction)
    _step(opt, seg)
    return {"f/seg": seg, "f/loss": seg}


def train_step(nets: Nets, opts: Optimizers, batch: dict, exp: Experiment) -> dict[str, float]:
    """One iteration of the experiment's variant; returns every loss term as a float (which
    waits for the device: the training loop calls `step` and reads its tensors rarely)."""
    return {name: float(value) for name, value in step(nets, opts, batch, exp).items()}


def step(nets: Nets, opts: Optimizers, batch: dict, exp: Experiment) -> dict[str, torch.Tensor]:
    """One iteration of the experiment's variant; every loss term as a detached 0-d tensor on
    the batch's device, so that no step waits for the device."""
    for _, net in nets.items():
        net.train()
    out: dict[str, torch.Tensor] = {}
    with _autocast(batch, exp):
        match exp.method.variant:
            case "source_only" | "target_oracle":
                out |= update_f_supervised(nets, opts.f, batch, exp)
            case "feature_d":
                out |= update_feature_d(nets, opts.d, batch, exp)
                out |= update_f(nets, opts.f, batch, exp)
            case "full" | "no_aux" | "within_domain":
                # F and G do not change in D's update, so one G(F(x)) serves D's update (as
                # values) and G's (with its graph), as in the authors' code: D then G then F.
                fake = generate(nets, batch)
                out |= update_d(nets, opts.d, batch, exp, fake)
                out |= update_g(nets, opts.g, batch, exp, fake)
                out |= update_f(nets, opts.f, batch, exp)
    return {name: value.detach() for name, value in out.items()}


def update_feature_d(nets: Nets, opt: torch.optim.Optimizer, batch: dict, exp: Experiment) -> dict:
    """FeatureD tells source fc7 features from target ones."""
    with torch.no_grad():
        fc7 = nets.frozen_call("F")(torch.cat([batch["src_image"], batch["tgt_image"]]))[0]
    d_s, d_t = _halves(nets.D(fc7))
    r = exp.method.reduction
    out = {"d/src": losses.domain(d_s, FEAT_SRC, r), "d/tgt": losses.domain(d_t, FEAT_TGT, r)}
    out["d/loss"] = out["d/src"] + out["d/tgt"]
    _step(opt, out["d/loss"])
    return out
