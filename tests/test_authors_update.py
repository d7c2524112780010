"""The paper configs compute the authors' update (swamiviv/LSD-seg, trainer_LSD.py + train.py).

`authors_iteration` below is an independent transcription of their loss formulas and optimizers,
written the way their trainer reads: cross-entropies summed over labelled pixels
(`cross_entropy2d(..., size_average=False)`), every update's loss divided by the batch size,
G's aux weight 1, Adam betas (0.9, 0.999) for F+C with biases at 2 x lr and the bilinear
upsamplers left out, (0.7, 0.999) for G and D. It never calls gtaray.method. Each update
recomputes its forward pass against the current weights (their code reuses a stale graph, which
current PyTorch rejects; DESIGN.md says not to copy it).

Both run a few iterations from the same weights on the same batches in float64, at the paper's
batch size 1 (their code also divides G's L1 mean by the batch size, which only agrees with
DESIGN.md's "L1 is a mean" at batch 1), with every dropout off (`model.dropout: 0`); the parameter
*updates* of F, C, G and D must agree to 1e-4 relative.
Adam is invariant to a loss's overall scale but not to the relative weights of its terms, so a
units or weight mistake changes the updates from the second step on; the test shows it does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as TF

from gtaray.config import load_experiment
from gtaray.data.synthetic import example_batch
from gtaray.method import lsd

ROOT = Path(__file__).resolve().parent.parent
PAPER_CONFIGS = [
    ROOT / "experiments" / f for f in ("gta5_cityscapes.yaml", "synthia_cityscapes.yaml")
]
ITERATIONS = 4
# The paper configs, shrunk to a CPU-sized copy of the same update (synthetic data, thin nets).
SMALL = [
    "data.source=synthetic", "data.target=synthetic", "data.width=64", "data.height=32",
    "data.source_train=4", "data.target_train=4", "data.source_val=2", "data.target_val=2",
    "data.target_test=2", "model.width=0.0625", "model.gd_width=0.125", "model.pretrained=null",
    "model.dropout=0", "data.num_classes=19",
]  # fmt: skip
IGNORE = 255
# Parameter updates below this are noise, not Adam steps (a real step moves some element by about
# lr, >= 1e-5 here): the authors' D has conv biases before instance norm, whose gradient is 0
# analytically; Adam blows its float64 rounding noise (~1e-14) up to updates of ~1e-8..1e-10.
# Such parameters are still compared by value (assert_close, to NOISE), only not by relative
# update: their noise steps differ between two float64 reductions (seen up to 3e-8).
NOISE = 1e-7


def cross_entropy2d(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Their utils.cross_entropy2d with size_average=False: NLL summed over labelled pixels."""
    log_p = TF.log_softmax(scores, dim=1).permute(0, 2, 3, 1).reshape(-1, scores.shape[1])
    target = target.reshape(-1)
    keep = target != IGNORE
    return -log_p[keep].gather(1, target[keep][:, None]).sum()


def const(scores: torch.Tensor, value: int) -> torch.Tensor:
    return torch.full((scores.shape[0], *scores.shape[2:]), value, dtype=torch.long)


def label_for_d(labels: torch.Tensor) -> torch.Tensor:
    """Source labels at D's stride-8 map (nearest; without their width/height swap bug)."""
    return labels[:, ::8, ::8]


def authors_optimizers(nets: lsd.Nets, exp):
    f_weights, f_biases = [], []
    for net in (nets.F, nets.C):
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):  # not ConvTranspose2d: their upsamplers are fixed
                f_weights.append(m.weight)
                f_biases.append(m.bias)
    lr, lr_gd = exp.optim.lr_f, exp.optim.lr_gd
    optim = torch.optim.Adam(
        [{"params": f_weights}, {"params": f_biases, "lr": lr * 2}], lr=lr, betas=(0.9, 0.999)
    )
    optim_d = torch.optim.Adam(nets.D.parameters(), lr=lr_gd, betas=(0.7, 0.999))
    optim_g = torch.optim.Adam(nets.G.parameters(), lr=lr_gd, betas=(0.7, 0.999))
    return optim, optim_d, optim_g


def authors_iteration(nets: lsd.Nets, optims, batch: dict, adv_weight, c_weight, l1_weight):
    optim, optim_d, optim_g = optims
    model_f, model_c, net_g, net_d = nets.F, nets.C, nets.G, nets.D
    xs, xt, ys = batch["src_image"], batch["tgt_image"], batch["src_label"]
    xs_d, xt_d, n = batch["src_rgb"], batch["tgt_rgb"], len(batch["src_image"])
    label_d = label_for_d(ys)

    def generate(x):
        return net_g(*model_f(x), x.shape[2:])

    # (1) D
    with torch.no_grad():
        g_s, g_t = generate(xs), generate(xt)
    src_real_s, src_real_c = net_d(xs_d)
    src_fake_s, _ = net_d(g_s)
    tgt_real_s, _ = net_d(xt_d)
    tgt_fake_s, _ = net_d(g_t)
    loss_d = (
        cross_entropy2d(src_real_s, const(src_real_s, 0))
        + cross_entropy2d(src_fake_s, const(src_fake_s, 1))
        + cross_entropy2d(src_real_c, label_d)
        + cross_entropy2d(tgt_real_s, const(tgt_real_s, 2))
        + cross_entropy2d(tgt_fake_s, const(tgt_fake_s, 3))
    ) / n
    optim_d.zero_grad()
    loss_d.backward()
    optim_d.step()

    # (2) G, against the D that just stepped
    with torch.no_grad():
        fs, ft = model_f(xs), model_f(xt)
    g_s, g_t = net_g(*fs, xs.shape[2:]), net_g(*ft, xt.shape[2:])
    src_fake_s, src_fake_c = net_d(g_s)
    tgt_fake_s, _ = net_d(g_t)
    loss_g = (
        cross_entropy2d(src_fake_c, label_d)
        + 0.1
        * (
            cross_entropy2d(src_fake_s, const(src_fake_s, 0))
            + cross_entropy2d(tgt_fake_s, const(tgt_fake_s, 2))
        )
        + l1_weight * (TF.l1_loss(g_s, xs_d) + TF.l1_loss(g_t, xt_d))
    ) / n
    optim_g.zero_grad()
    loss_g.backward()
    optim_g.step()

    # (3) F and C, through the G and D that just stepped; their grads are thrown away after
    fs, ft = model_f(xs), model_f(xt)
    score = model_c(*fs, xs.shape[2:])
    src_fake_s, src_fake_c = net_d(net_g(*fs, xs.shape[2:]))
    tgt_fake_s, _ = net_d(net_g(*ft, xt.shape[2:]))
    loss_f = (
        cross_entropy2d(score, ys)
        + adv_weight
        * (
            cross_entropy2d(src_fake_s, const(src_fake_s, 2))  # the cross-domain label swap
            + cross_entropy2d(tgt_fake_s, const(tgt_fake_s, 0))
        )
        + c_weight * cross_entropy2d(src_fake_c, label_d)
    ) / n
    optim.zero_grad()
    loss_f.backward()
    optim.step()
    optim_d.zero_grad()
    optim_g.zero_grad()


def double_batches(exp) -> list[dict]:
    out = []
    for i in range(ITERATIONS):
        batch = example_batch(exp.with_updates({"train.seed": i}))
        out.append({k: v.double() if v.is_floating_point() else v for k, v in batch.items()})
    return out


def params(nets: lsd.Nets) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{k}": p.detach().clone()
        for name, net in nets.items()
        for k, p in net.named_parameters()
    }


def run_both(exp):
    torch.manual_seed(0)
    ours = lsd.build(exp)
    for _, net in ours.items():
        net.double()
    theirs = copy.deepcopy(ours)
    start = params(ours)
    opts = lsd.make_optimizers(ours, exp)
    optims = authors_optimizers(theirs, exp)
    m = exp.method
    for batch in double_batches(exp):
        lsd.train_step(ours, opts, batch, exp)
        authors_iteration(theirs, optims, batch, m.beta, m.alpha, m.l1)
    return start, params(ours), params(theirs)


def max_relative_update_error(start, ours, theirs) -> tuple[float, str]:
    worst, where = 0.0, ""
    for k in start:
        d_ours, d_theirs = ours[k] - start[k], theirs[k] - start[k]
        if max(d_ours.abs().max(), d_theirs.abs().max()) < NOISE:
            continue  # a bias that instance norm subtracts again: its true gradient is 0
        err = ((d_ours - d_theirs).abs().max() / d_theirs.abs().max().clamp_min(1e-30)).item()
        if err > worst:
            worst, where = err, k
    return worst, where


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The transposed convolutions of C that no optimizer holds, per architecture.
FIXED = {
    "authors": ["C.upscore2.weight", "C.upscore8.weight", "C.upscore_pool4.weight"],
    "compact": ["C.upscore2.weight", "C.upscore_pool4.weight"],  # its 8x step is F.interpolate
}


@pytest.mark.parametrize("arch", ["authors", "compact"])
@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_config_runs_the_authors_update(path, arch):
    exp = load_experiment(path, [*SMALL, f"model.arch={arch}"])
    assert exp.method.variant == "full"
    start, ours, theirs = run_both(exp)
    assert ours.keys() == theirs.keys()
    moved = [k for k in start if not torch.equal(theirs[k], start[k])]
    # every parameter the authors optimise moved: C's fixed upsamplers are the only others
    assert sorted(set(start) - set(moved)) == FIXED[arch]
    for k in start:
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-4, atol=NOISE, msg=k)
    err, where = max_relative_update_error(start, ours, theirs)
    assert err < 1e-4, f"{where}: updates differ by {err:.2e} (relative)"


@pytest.mark.parametrize(
    "change",
    [
        "method.reduction=mean",  # per-pixel means: F's adversarial terms 64x too strong
        "method.aux_g=0.1",  # the old G aux weight
        "optim.betas_f=[0.7, 0.999]",  # the old F betas
        "model.freeze_upsampling=false",  # upsamplers trained
    ],
)
def test_each_former_deviation_is_caught(change):
    """The comparison above has teeth: each departure it guards against breaks it."""
    exp = load_experiment(PAPER_CONFIGS[0], [*SMALL, change])
    start, ours, theirs = run_both(exp)
    err, _ = max_relative_update_error(start, ours, theirs)
    assert err > 1e-2, f"{change} went unnoticed (max relative update error {err:.2e})"


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_configs_state_the_papers_settings(path):
    exp = load_experiment(path)
    assert exp.method.reduction == "sum"
    assert (exp.method.alpha, exp.method.beta, exp.method.adv_g) == (0.1, 0.1, 0.1)
    assert (exp.method.aux_g, exp.method.l1) == (1.0, 1.0)
    assert exp.optim.betas_f == (0.9, 0.999) and exp.optim.betas_gd == (0.7, 0.999)
    assert (exp.optim.lr_f, exp.optim.lr_gd, exp.optim.bias_lr_x2) == (1e-5, 2e-4, True)
    assert exp.model.freeze_upsampling and exp.model.gd_init == "normal"
    assert exp.model.dropout == 0.5 and exp.model.gd_width in (None, 1.0)
    assert exp.train.precision == "fp32"
    assert (exp.train.batch_size, exp.train.iterations) == (1, 10_000)
    assert (exp.data.width, exp.data.height) == (1024, 512)
    assert exp.data.eval_resolution == "label"
    assert exp.model.arch == "authors"  # their networks (tests/test_authors_nets.py)
    # the paper's text, not the released code's pipeline (gta5_cityscapes_released_code.yaml)
    assert (exp.data.train_crop, exp.data.eval_crop, exp.optim.lr_f_step) == ("none", "none", None)
    assert exp.model.input_format == "rgb_imagenet" and exp.model.pretrained == "imagenet"


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_released_code_config_departs_from_the_paper_config_only_where_it_says():
    paper = _flat(load_experiment(PAPER_CONFIGS[0]).model_dump(mode="json"))
    released = _flat(
        load_experiment(ROOT / "experiments" / "gta5_cityscapes_released_code.yaml").model_dump(
            mode="json"
        )
    )
    differs = {k for k in paper if paper[k] != released[k]}
    assert differs == {
        "name", "data.width", "data.height", "data.train_crop", "data.eval_crop",
        "model.pretrained", "model.input_format", "optim.lr_gd", "optim.lr_f_step",
        "train.iterations", "train.eval_every", "sweep.variants",
        "sweep.seeds",
    }  # fmt: skip
    assert (released["data.width"], released["data.height"]) == (640, 320)
    assert released["optim.lr_f_step"] == 8 * 2975 and released["optim.lr_f_gamma"] == 0.1
