"""`model.arch: authors` (gtaray.models.authors) is the authors' F, C, G and D (swamiviv/LSD-seg).

tests/authors_reference.py transcribes their FCN8s_LSD, _netG and _netD (it imports nothing from
gtaray). Here: the same parameter shapes in the same order and the same counts at the paper's
width; the same outputs given the same (random, non-zero) weights at a small width and size;
the same output shapes at 1024x512 (meta device), with the literal shapes their geometry gives
(conv1_1's padding 100, ceil-mode pools, unpadded 7x7 fc6, crops at 5, 9 and 31); and
torchvision's VGG16 weights landing where their copy_params_from_vgg16 puts them.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from gtaray.models.authors import (
    AuthorsClassifier,
    AuthorsDiscriminator,
    AuthorsEmbedding,
    AuthorsGenerator,
)
from gtaray.models.pretrained import load_vgg16_imagenet
from tests.authors_reference import FCN8s_LSD, _netD, _netG, get_upsampling_weight

META = torch.device("meta")
CLASSES = 19
PAPER_H, PAPER_W = 512, 1024
# torchvision vgg16().features indices of conv1_1 .. conv5_3.
VGG_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
# Small equivalence runs: F at 1/16 width (4..32 channels, fc7 256), G and D at 1/8.
F_WIDTH, GD_WIDTH = 0.0625, 0.125
SMALL_SIZES = [(32, 64), (64, 96)]  # (H, W): W x H = 64x32 and 96x64


def build_gtaray(f_width=1.0, gd_width=1.0, dropout=0.5):
    f = AuthorsEmbedding(width=f_width, dropout=dropout)
    c = AuthorsClassifier(CLASSES, width=f_width)
    g = AuthorsGenerator(
        f.fc7_channels, f.pool4_channels, f.pool3_channels, width=gd_width, dropout=dropout
    )
    d = AuthorsDiscriminator(CLASSES, width=gd_width, dropout=dropout)
    return f, c, g, d


def build_reference(f_width=1.0, gd_width=1.0, dropout=0.5):
    fc = FCN8s_LSD(n_class=CLASSES, width=f_width, dropout=dropout)
    g = _netG(width=gd_width, f_width=f_width, dropout=dropout)
    d = _netD(CLASSES, width=gd_width, dropout=dropout)
    return fc, g, d


def shapes(*modules: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for m in modules for p in m.parameters()]


def count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def copy_by_order(src: list[nn.Module], dst: list[nn.Module]) -> None:
    """Copy parameters in definition order (names differ: conv1_1 vs features.0)."""
    src_params = [p for m in src for p in m.parameters()]
    dst_params = [p for m in dst for p in m.parameters()]
    assert len(src_params) == len(dst_params)
    with torch.no_grad():
        for s, d in zip(src_params, dst_params, strict=True):
            assert s.shape == d.shape
            d.copy_(s)


def randomise(*modules: nn.Module, seed: int = 0) -> None:
    """Seeded normal weights of a sane scale: the authors zero their score layers, and an all-zero
    score would make the C comparison vacuous. Transposed convs get random kernels too, so the
    crop offsets are tested, not hidden by bilinear symmetry."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                # Kaiming-like for weights (keeps activations O(1)), 0.1 for biases.
                std = math.sqrt(2.0 / p[0].numel()) if p.dim() > 1 else 0.1
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: {tuple(actual.shape)} vs {expected.shape}"
    assert expected.abs().max() > 0, f"{what}: the reference is all zeros (vacuous)"
    err = (actual - expected).abs().max().item()
    assert torch.allclose(actual, expected, rtol=1e-9, atol=1e-9), f"{what}: max |diff| {err}"


# a. parameter shapes in order --------------------------------------------------------------


def test_parameter_shapes_in_the_authors_order_on_meta():
    with META:
        f, c, g, d = build_gtaray()
        ref_fc, ref_g, ref_d = build_reference()
    assert shapes(f, c) == shapes(ref_fc)
    assert shapes(g) == shapes(ref_g)
    assert shapes(d) == shapes(ref_d)
    # F's names are torchvision's (the VGG16 loader relies on them).
    names = [n for n, _ in f.named_parameters()]
    want = [f"features.{i}.{k}" for i in VGG_CONVS for k in ("weight", "bias")]
    assert names == want + ["fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"]
    assert (f.fc7_channels, f.pool4_channels, f.pool3_channels) == (4096, 512, 256)


def test_classifier_upsamplers_start_bilinear_and_stay_frozen_by_default():
    """Transposed convs: no bias, the authors' bilinear kernels, not trained unless asked."""
    c = AuthorsClassifier(CLASSES, width=F_WIDTH)
    ref = FCN8s_LSD(n_class=CLASSES, width=F_WIDTH)
    ups = [m for m in c.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [tuple(m.weight.shape) for m in ups] == [
        (CLASSES, CLASSES, 4, 4),
        (CLASSES, CLASSES, 16, 16),
        (CLASSES, CLASSES, 4, 4),
    ]  # upscore2, upscore8, upscore_pool4 (the authors' definition order)
    for m, k in zip(ups, (4, 16, 4), strict=True):
        assert m.bias is None
        assert not m.weight.requires_grad
        assert torch.equal(m.weight, get_upsampling_weight(CLASSES, CLASSES, k))
    for m, name in zip(ups, ("upscore2", "upscore8", "upscore_pool4"), strict=True):
        assert torch.equal(m.weight, getattr(ref, name).weight)  # the reference's own init
    learned = AuthorsClassifier(CLASSES, width=F_WIDTH, learn_upsampling=True)
    assert all(p.requires_grad for p in learned.parameters())


# b. parameter counts ------------------------------------------------------------------------


def test_parameter_counts_at_width_one():
    with META:
        f, c, g, d = build_gtaray()
        ref_fc, ref_g, ref_d = build_reference()
    assert count(f, c) == count(ref_fc) == 134_456_985
    assert count(g) == count(ref_g) == 64_221_187
    assert count(d) == count(ref_d) == 1_361_047


# c. equal outputs given the same weights ----------------------------------------------------


@pytest.fixture(scope="module")
def small_nets():
    """Both implementations at a small width with the same random weights, float64, eval mode."""
    ref_fc, ref_g, ref_d = build_reference(F_WIDTH, GD_WIDTH)
    f, c, g, d = build_gtaray(F_WIDTH, GD_WIDTH)
    randomise(ref_fc, ref_g, ref_d)
    nets = [ref_fc, ref_g, ref_d, f, c, g, d]
    for m in nets:
        m.double().eval()
    copy_by_order([ref_fc], [f, c])
    copy_by_order([ref_g], [g])
    copy_by_order([ref_d], [d])
    return ref_fc, ref_g, ref_d, f, c, g, d


@pytest.mark.parametrize("size", SMALL_SIZES)
def test_same_outputs_given_the_same_weights(small_nets, size):
    ref_fc, ref_g, ref_d, f, c, g, d = small_nets
    torch.manual_seed(1)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        score, fc7, pool4, pool3 = ref_fc(x)
        assert score.shape == (2, CLASSES, *size)
        for what, got, want in zip(
            ("fc7", "pool4", "pool3"), f(x), (fc7, pool4, pool3), strict=True
        ):
            assert_close(got, want, f"F {what}")
        # C, G from the reference F's maps so each net is compared on its own.
        assert_close(c(fc7, pool4, pool3, size), score, "C score")
        image = ref_g(fc7, pool4, pool3)
        assert image.shape == (2, 3, *size)
        assert_close(g(fc7, pool4, pool3, size), image, "G image")
        rgb = torch.rand(2, 3, *size, dtype=torch.float64)
        for what, got, want in zip(("domain", "aux"), d(rgb), ref_d(rgb), strict=True):
            assert_close(got, want, f"D {what}")


def seeded(net: nn.Module, *args):
    torch.manual_seed(7)
    return net(*args)


def test_same_dropout_masks_in_train_mode(small_nets):
    """Train mode, same seed: equal outputs only if the dropout layers have the same kind
    (Dropout2d in F, Dropout in the residual blocks), probability and order."""
    ref_fc, ref_g, ref_d, f, c, g, d = small_nets
    size = SMALL_SIZES[0]
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    rgb = torch.rand(2, 3, *size, dtype=torch.float64)
    nets = (ref_fc, ref_g, ref_d, f, g, d)
    try:
        for m in nets:
            m.train()
        with torch.no_grad():
            _, fc7, pool4, pool3 = seeded(ref_fc, x)
            assert_close(seeded(f, x)[0], fc7, "F fc7 (train)")
            eval_fc7 = ref_fc.eval()(x)[1]
            assert not torch.allclose(fc7, eval_fc7), "dropout did nothing (vacuous)"
            image = seeded(ref_g, fc7, pool4, pool3)
            assert_close(seeded(g, fc7, pool4, pool3, size), image, "G image (train)")
            for what, got, want in zip(
                ("domain", "aux"), seeded(d, rgb), seeded(ref_d, rgb), strict=True
            ):
                assert_close(got, want, f"D {what} (train)")
    finally:
        for m in nets:
            m.eval()


def test_discriminator_without_aux_has_no_aux_head():
    """aux=False: _netD minus out_c, and aux None."""
    ref = _netD(CLASSES, width=GD_WIDTH)
    d = AuthorsDiscriminator(CLASSES, width=GD_WIDTH, aux=False)
    assert shapes(d) == shapes(ref.feature, ref.out_s)
    domain, aux = d(torch.rand(1, 3, 32, 64))
    assert domain.shape == (1, 4, 4, 8) and aux is None


# d. output shapes at the paper size ---------------------------------------------------------


def test_output_shapes_at_1024x512_on_meta():
    with META:
        f, c, g, d = build_gtaray()
        ref_fc, ref_g, ref_d = build_reference()
        x = torch.empty(1, 3, PAPER_H, PAPER_W)
    score, fc7, pool4, pool3 = ref_fc(x)
    # By hand: conv1_1 pads 100 -> 710 x 1222; ceil-mode pools -> 355x611, 178x306,
    # pool3 89x153, pool4 45x77, pool5 23x39; fc6 7x7 unpadded -> 17x33.
    assert fc7.shape == (1, 4096, 17, 33)
    assert pool4.shape == (1, 512, 45, 77)
    assert pool3.shape == (1, 256, 89, 153)
    # upscore2 36x68 (+ pool4 cropped at 5), upscore_pool4 74x138 (+ pool3 cropped at 9),
    # upscore8 600x1112 cropped at 31 to the input.
    assert score.shape == (1, CLASSES, PAPER_H, PAPER_W)
    for got, want in zip(f(x), (fc7, pool4, pool3), strict=True):
        assert got.shape == want.shape
    assert c(fc7, pool4, pool3, (PAPER_H, PAPER_W)).shape == score.shape
    # G: 7x7 transposed conv 23x39, then 2x steps 45x77 (= pool4), 89x153 (= pool3), 177x305,
    # 353x609, and the last (kernel 8, padding 100) 512x1024.
    image = ref_g(fc7, pool4, pool3)
    assert image.shape == (1, 3, PAPER_H, PAPER_W)
    assert g(fc7, pool4, pool3, (PAPER_H, PAPER_W)).shape == image.shape
    # D: 4x4 stride-2 conv with padding 2 -> 257x513, two max-pools -> 64x128.
    domain, aux = ref_d(image)
    assert domain.shape == (1, 4, 64, 128) and aux.shape == (1, CLASSES, 64, 128)
    got_domain, got_aux = d(image)
    assert got_domain.shape == domain.shape and got_aux.shape == aux.shape


# e. torchvision VGG16 weights ---------------------------------------------------------------


def test_torchvision_vgg16_weights_load_where_the_authors_put_them(tmp_path):
    with META:
        vgg = torchvision.models.vgg16(weights=None)
    # Random values without torchvision's (slow) init of 138M parameters.
    vgg = vgg.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in vgg.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    path = tmp_path / "vgg16.pth"
    torch.save(vgg.state_dict(), path)

    f = AuthorsEmbedding(width=1.0)
    load_vgg16_imagenet(f, str(path))
    state = vgg.state_dict()
    params = dict(f.named_parameters())
    for i in VGG_CONVS:
        for k in ("weight", "bias"):
            assert torch.equal(params[f"features.{i}.{k}"], state[f"features.{i}.{k}"])
    assert torch.equal(params["fc6.weight"], state["classifier.0.weight"].reshape(4096, 512, 7, 7))
    assert torch.equal(params["fc7.weight"], state["classifier.3.weight"].reshape(4096, 4096, 1, 1))
    assert torch.equal(params["fc6.bias"], state["classifier.0.bias"])
    assert torch.equal(params["fc7.bias"], state["classifier.3.bias"])

    # The authors' copy_params_from_vgg16 gives the same F, parameter for parameter.
    ref = FCN8s_LSD(n_class=CLASSES)
    ref.copy_params_from_vgg16(vgg)
    ref_f = [p for n, p in ref.named_parameters() if not n.startswith(("score", "upscore"))]
    assert len(ref_f) == len(params)
    for got, want in zip(params.values(), ref_f, strict=True):
        assert torch.equal(got, want)
