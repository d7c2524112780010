"""The LSD method (Sankaranarayanan et al., CVPR 2018): which net each update moves, the loss
terms recomputed by hand (the cross-domain label swap above all), what each variant builds and
reads, shapes at the paper size, and that a few steps learn without NaNs (fp32, bf16, anomaly
mode).

Every experiment here is experiments/smoke.yaml (64x32 images, width 0.0625, batch 2,
dropout 0, lr 1e-3) with overrides, so each update is deterministic and a step costs tens of ms.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as TF

from gtaray.config import VARIANTS, load_experiment
from gtaray.data.synthetic import example_batch
from gtaray.method import losses, lsd
from gtaray.models.discriminator import Discriminator, FeatureD

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.yaml"
ADVERSARIAL = ("full", "no_aux", "within_domain")
IGNORE = 255
D_STRIDE = 8  # D's maps are at stride 8; aux labels are the nearest (top-left) pixel per patch

# The update sequence of each variant: (update function, optimizer, nets it may move).
SEQUENCE = {
    **{
        v: [
            (lsd.update_d, "d", {"D"}),
            (lsd.update_g, "g", {"G"}),
            (lsd.update_f, "f", {"F", "C"}),
        ]
        for v in ADVERSARIAL
    },
    "feature_d": [(lsd.update_feature_d, "d", {"D"}), (lsd.update_f, "f", {"F", "C"})],
    "source_only": [(lsd.update_f_supervised, "f", {"F", "C"})],
    "target_oracle": [(lsd.update_f_supervised, "f", {"F", "C"})],
}
AUX_KEYS = {"d/aux", "g/aux", "f/aux"}
KEYS = {
    "full": {
        *("d/src_real", "d/src_fake", "d/tgt_real", "d/tgt_fake", "d/aux", "d/loss"),
        *("g/adv_src", "g/adv_tgt", "g/l1", "g/aux", "g/loss"),
        *("f/seg", "f/aux", "f/adv", "f/loss"),
    },
    "feature_d": {"d/src", "d/tgt", "d/loss", "f/seg", "f/adv", "f/loss"},
    "source_only": {"f/seg", "f/loss"},
}
KEYS["within_domain"] = KEYS["full"]
KEYS["no_aux"] = KEYS["full"] - AUX_KEYS
KEYS["target_oracle"] = KEYS["source_only"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets on a shared 2-core machine: a second intra-op thread only adds contention
    (measured: 2 threads were 10-100x slower than 1 while other jobs ran)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def experiment(variant: str = "full", *overrides: str):
    return load_experiment(SMOKE, [f"method.variant={variant}", *overrides])


def setup(variant: str = "full", *overrides: str, seed: int = 0):
    exp = experiment(variant, *overrides)
    torch.manual_seed(seed)
    nets = lsd.build(exp)
    return exp, nets, lsd.make_optimizers(nets, exp), example_batch(exp)


def opt_of(opts: lsd.Optimizers, key: str) -> torch.optim.Optimizer:
    return getattr(opts, key)


def snapshot(nets: lsd.Nets) -> dict[str, dict[str, torch.Tensor]]:
    return {
        name: {k: p.detach().clone() for k, p in net.named_parameters()}
        for name, net in nets.items()
    }


def moved(before: dict, nets: lsd.Nets) -> dict[str, set[str]]:
    """Per net, the names of the parameters that differ from the snapshot."""
    return {
        name: {k for k, p in net.named_parameters() if not torch.equal(before[name][k], p)}
        for name, net in nets.items()
    }


def clear_grads(nets: lsd.Nets) -> None:
    for _, net in nets.items():
        for p in net.parameters():
            p.grad = None


def with_grads(nets: lsd.Nets) -> set[str]:
    return {name for name, net in nets.items() if any(p.grad is not None for p in net.parameters())}


def ce(logits: torch.Tensor, label: int) -> float:
    """Per-pixel cross-entropy against one constant label, written independently of losses.py."""
    target = torch.full((logits.shape[0], *logits.shape[2:]), label, dtype=torch.long)
    return TF.cross_entropy(logits, target).item()


def patch_labels(labels: torch.Tensor) -> torch.Tensor:
    return labels[:, ::D_STRIDE, ::D_STRIDE]


def aux_ce(aux_logits: torch.Tensor, labels: torch.Tensor) -> float:
    return TF.cross_entropy(aux_logits, patch_labels(labels), ignore_index=IGNORE).item()


def regenerate(nets: lsd.Nets, x: torch.Tensor) -> torch.Tensor:
    """G(F(x)) for one domain alone."""
    return nets.G(*nets.F(x), x.shape[2:])


def warm_up(nets, opts, batch, exp) -> None:
    """One F step: C's score layers start at zero, so until then no gradient reaches its 2x
    upsampling layers, and the seg term none to F."""
    bounds = exp.method.variant in ("source_only", "target_oracle")
    (lsd.update_f_supervised if bounds else lsd.update_f)(nets, opts.f, batch, exp)


def all_params(nets: lsd.Nets) -> dict[str, torch.Tensor]:
    return {
        f"{n}.{k}": p.detach().clone() for n, net in nets.items() for k, p in net.named_parameters()
    }


# --- gradient isolation ---------------------------------------------------------------------


def run_isolated(variant: str, which: str):
    """Warm up, run the variant's sequence, and check the update `which` in isolation."""
    exp, nets, opts, batch = setup(variant)
    warm_up(nets, opts, batch, exp)
    for update, key, owners in SEQUENCE[variant]:
        if key != which:
            update(nets, opt_of(opts, key), batch, exp)
            continue
        before = snapshot(nets)
        clear_grads(nets)
        out = update(nets, opt_of(opts, key), batch, exp)
        assert all(math.isfinite(v.item()) for v in out.values())
        return nets, owners, moved(before, nets), with_grads(nets)
    raise AssertionError(f"{variant} has no {which} update")


def assert_only(nets, owners, changed, grads) -> None:
    # the owners' every trainable parameter moved (after the warm-up all receive gradient) ...
    for name, net in nets.items():
        if name in owners:
            total = {k for k, p in net.named_parameters() if p.requires_grad}
            assert changed[name] == total, f"{name}: {sorted(total - changed[name])} did not move"
        else:
            assert changed[name] == set(), f"{name} moved: {sorted(changed[name])}"
    # ... and no other net even received a gradient.
    assert grads == owners


@pytest.mark.parametrize("variant", [*ADVERSARIAL, "feature_d"])
def test_d_update_changes_only_d(variant):
    nets, owners, changed, grads = run_isolated(variant, "d")
    assert owners == {"D"}
    assert_only(nets, owners, changed, grads)


@pytest.mark.parametrize("variant", ADVERSARIAL)
def test_g_update_changes_only_g(variant):
    nets, owners, changed, grads = run_isolated(variant, "g")
    assert owners == {"G"}
    assert_only(nets, owners, changed, grads)


@pytest.mark.parametrize("variant", VARIANTS)
def test_f_update_changes_only_f_and_c(variant):
    nets, owners, changed, grads = run_isolated(variant, "f")
    assert owners == {"F", "C"}
    assert_only(nets, owners, changed, grads)


@pytest.mark.parametrize("variant", [*ADVERSARIAL, "feature_d"])
def test_f_adversarial_gradient_reaches_f_through_frozen_g_and_d(variant):
    """With C's score layers at zero the seg term gives F no gradient on the first step, so F
    moves only if the beta (and alpha) terms flow back through the frozen G and D."""
    for beta, f_moves in ((0.0, False), (0.5, True)):
        exp, nets, opts, batch = setup(variant, "method.alpha=0", f"method.beta={beta}")
        before = snapshot(nets)
        lsd.update_f(nets, opts.f, batch, exp)
        changed = moved(before, nets)
        assert bool(changed["F"]) is f_moves, f"beta={beta}"
        assert changed["C"]  # C's score layers learn from the seg term either way
        if nets.G is not None:
            assert not changed["G"]
        assert not changed["D"]


# --- the loss terms, recomputed by hand -------------------------------------------------------


def test_domain_label_numbering_is_the_papers():
    assert (losses.SRC_REAL, losses.SRC_FAKE, losses.TGT_REAL, losses.TGT_FAKE) == (0, 1, 2, 3)
    assert (losses.FEAT_SRC, losses.FEAT_TGT) == (0, 1)


def hand_f_adv(nets, batch) -> dict[str, float]:
    """F's adversarial loss both ways: cross-domain swap and within-domain."""
    with torch.no_grad():
        d_s = nets.D(regenerate(nets, batch["src_image"]))[0]
        d_t = nets.D(regenerate(nets, batch["tgt_image"]))[0]
    swap = ce(d_s, losses.TGT_REAL) + ce(d_t, losses.SRC_REAL)
    within = ce(d_s, losses.SRC_REAL) + ce(d_t, losses.TGT_REAL)
    return {"swap": swap, "within": within}


@pytest.mark.parametrize(
    "variant, labels", [("full", "swap"), ("no_aux", "swap"), ("within_domain", "within")]
)
def test_f_adversarial_loss_uses_the_cross_domain_label_swap(variant, labels):
    exp, nets, opts, batch = setup(variant, MEAN)
    lsd.train_step(nets, opts, batch, exp)
    for _ in range(10):  # until D tells the four domains apart: the two labelings then differ
        for _ in range(20):  # how many D steps that takes varies with the host's float rounding
            lsd.update_d(nets, opts.d, batch, exp)
        lsd.update_g(nets, opts.g, batch, exp)
        hand = hand_f_adv(nets, batch)
        if abs(hand["swap"] - hand["within"]) > 1e-3:
            break
    out = lsd.update_f(nets, opts.f, batch, exp)
    other = "within" if labels == "swap" else "swap"
    assert out["f/adv"].item() == pytest.approx(hand[labels], abs=1e-5)
    # the two labelings really are different numbers for these nets
    assert abs(hand["swap"] - hand["within"]) > 1e-3
    assert abs(out["f/adv"].item() - hand[other]) > 1e-3


def test_full_and_within_domain_differ_only_in_fs_adversarial_labels():
    """Same seed, same nets: D and G updates are identical; F's adversarial loss is not."""
    outs = {}
    for variant in ("full", "within_domain"):
        exp, nets, opts, batch = setup(variant)
        outs[variant] = lsd.train_step(nets, opts, batch, exp)
    full, within = outs["full"], outs["within_domain"]
    for key in full:
        if key.startswith(("d/", "g/")) or key in ("f/seg", "f/aux"):
            assert full[key] == pytest.approx(within[key], abs=1e-6), key
    assert abs(full["f/adv"] - within["f/adv"]) > 1e-3


def test_feature_d_adversarial_loss_swaps_source_and_target():
    exp, nets, opts, batch = setup("feature_d", MEAN)
    lsd.train_step(nets, opts, batch, exp)
    for _ in range(10):  # until FeatureD tells the domains apart: the two labelings then differ
        lsd.update_feature_d(nets, opts.d, batch, exp)
    with torch.no_grad():
        d_s = nets.D(nets.F(batch["src_image"])[0])
        d_t = nets.D(nets.F(batch["tgt_image"])[0])
    swap = ce(d_s, losses.FEAT_TGT) + ce(d_t, losses.FEAT_SRC)
    within = ce(d_s, losses.FEAT_SRC) + ce(d_t, losses.FEAT_TGT)
    out = lsd.update_f(nets, opts.f, batch, exp)
    assert out["f/adv"].item() == pytest.approx(swap, abs=1e-5)
    assert abs(swap - within) > 1e-3


# The hand recomputations below are written in per-pixel means ("mean" units); the authors'
# summed units are pinned by tests/test_authors_update.py.
MEAN = "method.reduction=mean"
WEIGHTS = (
    *("method.alpha=0.3", "method.beta=0.7", "method.adv_g=0.2", "method.aux_g=0.6"),
    *("method.l1=2.0", MEAN),
)


def test_d_loss_scores_real_rgb_and_both_fakes_plus_aux_on_real_source():
    exp, nets, opts, batch = setup("full", *WEIGHTS)
    lsd.train_step(nets, opts, batch, exp)
    xs, xt, ys = batch["src_image"], batch["tgt_image"], batch["src_label"]
    with torch.no_grad():
        # D sees un-normalised [0,1] rgb for real images, like G's sigmoid output
        real_s, aux_s = nets.D(batch["src_rgb"])
        real_t, _ = nets.D(batch["tgt_rgb"])
        fake_s, _ = nets.D(regenerate(nets, xs))
        fake_t, _ = nets.D(regenerate(nets, xt))
    hand = {
        "d/src_real": ce(real_s, 0),
        "d/src_fake": ce(fake_s, 1),
        "d/tgt_real": ce(real_t, 2),
        "d/tgt_fake": ce(fake_t, 3),
        "d/aux": aux_ce(aux_s, ys),
    }
    hand["d/loss"] = sum(hand.values())
    out = lsd.update_d(nets, opts.d, batch, exp)
    assert {k: v.item() for k, v in out.items()} == pytest.approx(hand, abs=1e-5)


def test_g_loss_fools_d_within_domain_with_aux_and_reconstruction():
    exp, nets, opts, batch = setup("full", *WEIGHTS)
    lsd.train_step(nets, opts, batch, exp)
    lsd.update_d(nets, opts.d, batch, exp)  # G's loss must use this freshly stepped D
    xs, xt, ys = batch["src_image"], batch["tgt_image"], batch["src_label"]
    with torch.no_grad():
        gen_s, gen_t = regenerate(nets, xs), regenerate(nets, xt)
        d_s, aux_s = nets.D(gen_s)
        d_t, _ = nets.D(gen_t)
    hand = {
        "g/adv_src": ce(d_s, 0),
        "g/adv_tgt": ce(d_t, 2),
        "g/l1": (gen_s - batch["src_rgb"]).abs().mean().item()
        + (gen_t - batch["tgt_rgb"]).abs().mean().item(),
        "g/aux": aux_ce(aux_s, ys),
    }
    adv = hand["g/adv_src"] + hand["g/adv_tgt"]
    hand["g/loss"] = 0.6 * hand["g/aux"] + 0.2 * adv + 2.0 * hand["g/l1"]
    out = lsd.update_g(nets, opts.g, batch, exp)
    assert {k: v.item() for k, v in out.items()} == pytest.approx(hand, abs=1e-5)


def test_f_loss_is_seg_plus_alpha_aux_on_generated_source_plus_beta_swapped_adv():
    exp, nets, opts, batch = setup("full", *WEIGHTS)
    lsd.train_step(nets, opts, batch, exp)
    lsd.update_d(nets, opts.d, batch, exp)
    lsd.update_g(nets, opts.g, batch, exp)
    xs, ys = batch["src_image"], batch["src_label"]
    with torch.no_grad():
        seg = TF.cross_entropy(nets.C(*nets.F(xs), xs.shape[2:]), ys, ignore_index=IGNORE).item()
        aux = aux_ce(nets.D(regenerate(nets, xs))[1], ys)
    adv = hand_f_adv(nets, batch)["swap"]
    hand = {"f/seg": seg, "f/aux": aux, "f/adv": adv, "f/loss": seg + 0.3 * aux + 0.7 * adv}
    out = lsd.update_f(nets, opts.f, batch, exp)
    assert {k: v.item() for k, v in out.items()} == pytest.approx(hand, abs=1e-5)


# --- what each variant builds and reads -------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_train_step_reports_exactly_the_variants_loss_terms(variant):
    exp, nets, opts, batch = setup(variant)
    out = lsd.train_step(nets, opts, batch, exp)
    assert set(out) == KEYS[variant]
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())


def test_no_aux_has_no_aux_head_parameters_or_terms():
    exp, nets, opts, batch = setup("no_aux", "method.alpha=0.5")
    assert isinstance(nets.D, Discriminator) and nets.D.aux_head is None
    assert not any("aux" in name for name, _ in nets.D.named_parameters())
    _, full_nets, _, _ = setup("full")
    head = full_nets.D.aux_head
    n_head = sum(p.numel() for p in head.parameters())
    n_d = sum(p.numel() for p in nets.D.parameters())
    assert n_d == sum(p.numel() for p in full_nets.D.parameters()) - n_head
    # D's optimizer holds exactly D's parameters, so no aux parameters either
    assert sum(p.numel() for g in opts.d.param_groups for p in g["params"]) == n_d
    out = lsd.train_step(nets, opts, batch, exp)
    assert not AUX_KEYS & set(out)
    # alpha is 0.5 here, but there is no aux term for it to weigh
    # (summed units: thousands, so a float32 tolerance relative to the size)
    assert out["f/loss"] == pytest.approx(out["f/seg"] + 0.1 * out["f/adv"], rel=1e-6)
    assert out["d/loss"] == pytest.approx(
        out["d/src_real"] + out["d/src_fake"] + out["d/tgt_real"] + out["d/tgt_fake"], rel=1e-6
    )


def test_feature_d_builds_no_generator_and_a_feature_discriminator():
    exp, nets, opts, _ = setup("feature_d")
    assert nets.G is None and opts.g is None
    assert isinstance(nets.D, FeatureD) and not isinstance(nets.D, Discriminator)
    assert nets.D.net[0].in_channels == nets.F.fc7_channels
    assert {k for k, _ in nets.items()} == {"F", "C", "D"}
    assert {k for k, _ in opts.items()} == {"f", "d"}


@pytest.mark.parametrize("variant", ["source_only", "target_oracle"])
def test_bounds_build_only_f_and_c(variant):
    _, nets, opts, _ = setup(variant)
    assert nets.G is None and nets.D is None
    assert {k for k, _ in nets.items()} == {"F", "C"}
    assert {k for k, _ in opts.items()} == {"f"}
    f_and_c = {id(p) for m in (nets.F, nets.C) for p in m.parameters() if p.requires_grad}
    assert {id(p) for g in opts.f.param_groups for p in g["params"]} == f_and_c


def poisoned(batch: dict, domain: str) -> dict:
    """The batch with one domain's images NaN and its labels out of range (99, not ignore)."""
    out = dict(batch)
    for key in ("image", "rgb"):
        out[f"{domain}_{key}"] = torch.full_like(batch[f"{domain}_{key}"], float("nan"))
    out[f"{domain}_label"] = torch.full_like(batch[f"{domain}_label"], 99)
    return out


def two_steps(variant: str, batch: dict) -> tuple[list[dict], dict]:
    exp, nets, opts, _ = setup(variant)
    outs = [lsd.train_step(nets, opts, batch, exp) for _ in range(2)]
    return outs, all_params(nets)


def assert_same_run(a, b) -> None:
    (outs_a, params_a), (outs_b, params_b) = a, b
    assert outs_a == outs_b
    assert all(math.isfinite(v) for out in outs_a for v in out.values())
    assert params_a.keys() == params_b.keys()
    for k in params_a:
        assert torch.equal(params_a[k], params_b[k]), k


def assert_different_run(a, b) -> None:
    (_, params_a), (_, params_b) = a, b
    assert any(not torch.equal(params_a[k], params_b[k]) for k in params_a)


@pytest.mark.parametrize("variant, used, unused", [
    ("source_only", "src", "tgt"),
    ("target_oracle", "tgt", "src"),
])  # fmt: skip
def test_bounds_never_read_the_other_domain(variant, used, unused):
    batch = example_batch(experiment(variant))
    clean = two_steps(variant, batch)
    # NaN images and labels 99 of the unused domain change nothing (and would crash CE if read)
    assert_same_run(clean, two_steps(variant, poisoned(batch, unused)))
    # while other labels of the used domain do change the run
    relabelled = dict(batch)
    labels = batch[f"{used}_label"]
    relabelled[f"{used}_label"] = torch.where(labels == IGNORE, labels, (labels + 1) % 19)
    assert_different_run(clean, two_steps(variant, relabelled))


def test_target_oracle_is_source_only_with_the_domains_swapped():
    batch = example_batch(experiment("source_only"))
    swapped = {f"{a}_{k}": batch[f"{b}_{k}"] for a, b in (("src", "tgt"), ("tgt", "src"))
               for k in ("image", "rgb", "label")}  # fmt: skip
    assert_same_run(two_steps("target_oracle", batch), two_steps("source_only", swapped))


# --- shapes at the paper size -----------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [19, 16])
@pytest.mark.parametrize("variant", ["full", "no_aux", "feature_d"])
def test_paper_size_shapes_at_width_one_on_meta_device(variant, num_classes):
    h, w = 512, 1024
    exp = experiment(variant, f"data.width={w}", f"data.height={h}", "model.width=1.0")
    exp = exp.with_updates({"data.num_classes": num_classes})
    with torch.device("meta"):
        nets = lsd.build(exp)
        x = torch.empty(1, 3, h, w)
    fc7, pool4, pool3 = nets.F(x)
    assert fc7.shape == (1, 4096, h // 32, w // 32)
    assert nets.C(fc7, pool4, pool3, (h, w)).shape == (1, num_classes, h, w)
    if variant == "feature_d":
        assert nets.G is None
        assert nets.D(fc7).shape == (1, 2, h // 32, w // 32)
        return
    fake = nets.G(fc7, pool4, pool3, (h, w))
    assert fake.shape == x.shape
    domain, aux = nets.D(fake)
    assert domain.shape == (1, 4, h // 8, w // 8)
    if variant == "no_aux":
        assert aux is None
    else:
        assert aux.shape == (1, num_classes, h // 8, w // 8)


def test_num_classes_override_string_is_accepted():
    assert experiment("full", "data.num_classes=16").data.num_classes == 16


# --- learning, anomaly mode, bf16 -------------------------------------------------------------


def test_full_lowers_segmentation_loss_by_half_on_one_batch():
    # smoke.yaml's lr 1e-3 for F and G/D (the paper's 1e-5 barely moves a width-1/16 net in
    # 100 steps); dropout 0 so the fixed batch can be fitted.
    exp, nets, opts, batch = setup("full", MEAN)
    seg = []
    for _ in range(100):
        out = lsd.train_step(nets, opts, batch, exp)
        assert all(math.isfinite(v) for v in out.values()), out
        seg.append(out["f/seg"])
    assert seg[0] == pytest.approx(math.log(19), abs=1e-4)  # C starts at zero: uniform scores
    assert sum(seg[-5:]) / 5 <= seg[0] / 2, seg[::10]


@pytest.mark.parametrize("variant", VARIANTS)
def test_train_step_passes_anomaly_detection(variant):
    exp, nets, opts, batch = setup(variant, "model.dropout=0.5")
    with torch.autograd.set_detect_anomaly(True):
        out = lsd.train_step(nets, opts, batch, exp)
    assert all(math.isfinite(v) for v in out.values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_train_step_on_cpu_gives_finite_losses(variant):
    exp, nets, opts, batch = setup(variant, "train.precision=bf16")
    for _ in range(2):
        out = lsd.train_step(nets, opts, batch, exp)
        assert set(out) == KEYS[variant]
        assert all(math.isfinite(v) for v in out.values()), out
    for name, net in nets.items():
        for k, p in net.named_parameters():
            assert p.dtype == torch.float32 and torch.isfinite(p).all(), f"{name}.{k}"


def test_unwrap_reaches_the_plain_module_through_compile():
    # Checkpoints store unwrapped state dicts: keys must not carry "_orig_mod." prefixes.
    net = torch.nn.Linear(2, 2)
    compiled = torch.compile(net)
    assert lsd.unwrap(compiled) is net
    assert list(lsd.unwrap(compiled).state_dict()) == ["weight", "bias"]


# --- the model switches of the authors' update --------------------------------------------------


def dropouts(nets: lsd.Nets) -> dict[str, list[float]]:
    return {
        name: [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout | torch.nn.Dropout2d)]
        for name, net in nets.items()
    }


def test_dropout_reaches_f_g_and_d_and_zero_turns_every_one_off():
    _, nets, _, _ = setup("full", "model.dropout=0.5")
    ps = dropouts(nets)
    assert ps["F"] == [0.5, 0.5]  # fc6, fc7
    assert ps["G"] and set(ps["G"]) == {0.5}
    assert len(ps["D"]) == 9 and set(ps["D"]) == {0.5}  # every residual block of D
    _, nets, _, _ = setup("full", "model.dropout=0")
    assert all(p == 0.0 for v in dropouts(nets).values() for p in v)


def test_gd_width_sizes_g_and_d_and_defaults_to_width():
    _, thin, _, _ = setup("full")
    _, wide, _, _ = setup("full", "model.gd_width=0.25")
    assert wide.F.fc7_channels == thin.F.fc7_channels  # F unchanged
    assert thin.D.domain_head.in_channels == 8  # 128 x 0.0625
    assert wide.D.domain_head.in_channels == 32  # 128 x 0.25
    assert wide.G.to_rgb.in_channels == 16  # 64 x 0.25
    _, feat, _, _ = setup("feature_d", "model.gd_width=0.25")
    assert feat.D.net[0].out_channels == 256  # 1024 x 0.25


def test_gd_init_normal_is_the_authors_weights_init():
    exp = experiment("full", "model.gd_width=1.0")
    torch.manual_seed(0)
    nets = lsd.build(exp)
    convs = [
        m
        for net in (nets.G, nets.D)
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    weights = torch.cat([m.weight.flatten() for m in convs])
    biases = torch.cat([m.bias for m in convs if m.bias is not None])
    assert weights.mean().abs() < 1e-3 and weights.std().item() == pytest.approx(0.02, rel=0.02)
    assert biases.abs().max() <= 0.01
    torch.manual_seed(0)
    default = lsd.build(exp.with_updates({"model.gd_init": "pytorch"}))
    assert default.D.trunk[0][0].weight.std() > 0.05  # kaiming-uniform, fan-in 48: not 0.02


def test_frozen_upsamplers_are_outside_the_optimizer_and_never_move():
    exp, nets, opts, batch = setup("full")
    ups = [nets.C.upscore2.weight, nets.C.upscore_pool4.weight]
    assert not any(p.requires_grad for p in ups)
    in_opt = {id(p) for g in opts.f.param_groups for p in g["params"]}
    assert not {id(p) for p in ups} & in_opt
    before = [p.clone() for p in ups]
    for _ in range(2):
        lsd.train_step(nets, opts, batch, exp)
    assert all(torch.equal(a, b) for a, b in zip(before, ups, strict=True))
    exp, nets, opts, _ = setup("full", "model.freeze_upsampling=false")
    in_opt = {id(p) for g in opts.f.param_groups for p in g["params"]}
    assert {id(nets.C.upscore2.weight), id(nets.C.upscore_pool4.weight)} <= in_opt


def test_sum_units_are_mean_units_times_labelled_pixels():
    """reduction=sum: a cross-entropy is its per-pixel mean x labelled pixels per image."""
    logits = torch.randn(2, 19, 8, 16)
    labels = torch.randint(0, 19, (2, 8, 16))
    labels[0, :2] = IGNORE
    labelled = int((labels != IGNORE).sum())
    mean = losses.segmentation(logits, labels, "mean")
    total = losses.segmentation(logits, labels, "sum")
    assert total.item() == pytest.approx(mean.item() * labelled / 2, rel=1e-5)
    d = losses.domain(logits[:, :4], 2, "sum")
    assert d.item() == pytest.approx(losses.domain(logits[:, :4], 2, "mean").item() * 128, 1e-5)
