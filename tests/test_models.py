"""F, C, G, D and FeatureD: shapes at the paper size (meta device), small real forwards, errors,
and the ImageNet VGG16 loader."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision

from gtaray.models.classifier import Classifier, upsample2x
from gtaray.models.discriminator import Discriminator, FeatureD
from gtaray.models.embedding import Embedding, count_parameters
from gtaray.models.generator import Generator
from gtaray.models.pretrained import (
    VGG16_FILE,
    PretrainedWeightsError,
    load_vgg16_imagenet,
)

META = torch.device("meta")
PAPER_H, PAPER_W = 512, 1024


def build_all(width: float, num_classes: int = 19, aux: bool = True):
    f = Embedding(width=width)
    c = Classifier(num_classes, width=width)
    g = Generator(f.fc7_channels, f.pool4_channels, f.pool3_channels, width=width)
    d = Discriminator(num_classes, width=width, aux=aux)
    return f, c, g, d


def test_paper_size_shapes_at_width_one_on_meta_device():
    with META:
        f, c, g, d = build_all(1.0)
        fd = FeatureD(f.fc7_channels)
        x = torch.empty(1, 3, PAPER_H, PAPER_W)
    fc7, pool4, pool3 = f(x)
    assert fc7.shape == (1, 4096, PAPER_H // 32, PAPER_W // 32)
    assert pool4.shape == (1, 512, PAPER_H // 16, PAPER_W // 16)
    assert pool3.shape == (1, 256, PAPER_H // 8, PAPER_W // 8)
    assert (f.fc7_channels, f.pool4_channels, f.pool3_channels) == (4096, 512, 256)
    assert c(fc7, pool4, pool3, (PAPER_H, PAPER_W)).shape == (1, 19, PAPER_H, PAPER_W)
    assert g(fc7, pool4, pool3, (PAPER_H, PAPER_W)).shape == (1, 3, PAPER_H, PAPER_W)
    domain, aux = d(torch.empty(1, 3, PAPER_H, PAPER_W, device=META))
    assert domain.shape == (1, 4, PAPER_H // 8, PAPER_W // 8)
    assert aux.shape == (1, 19, PAPER_H // 8, PAPER_W // 8)
    assert fd(fc7).shape == (1, 2, PAPER_H // 32, PAPER_W // 32)


def test_parameter_counts_at_width_one(capsys):
    with META:
        f, c, g, d = build_all(1.0)
        vgg = torchvision.models.vgg16(weights=None)
        fd = FeatureD(f.fc7_channels)
    counts = {
        name: count_parameters(m) for name, m in dict(F=f, C=c, G=g, D=d, FeatureD=fd).items()
    }
    with capsys.disabled():
        print("\nparameters at width 1.0 (19 classes):", counts)
    # F is torchvision's VGG16 minus the 1000-way ImageNet layer (4096 * 1000 + 1000).
    assert counts["F"] == count_parameters(vgg) - 4_097_000 == 134_260_544
    # C: three 1x1 score convs (with bias) + two 19->19 4x4 transposed convs (no bias).
    assert counts["C"] == (4096 + 512 + 256 + 3) * 19 + 2 * 19 * 19 * 16


def test_small_real_forward_at_width_eighth():
    torch.manual_seed(0)
    f, c, g, d = build_all(0.125)
    assert (f.fc7_channels, f.pool4_channels, f.pool3_channels) == (512, 64, 32)
    x = torch.randn(2, 3, 32, 64)
    fc7, pool4, pool3 = f(x)
    assert fc7.shape == (2, 512, 1, 2) and pool4.shape == (2, 64, 2, 4)
    assert pool3.shape == (2, 32, 4, 8)
    logits = c(fc7, pool4, pool3, (32, 64))
    assert logits.shape == (2, 19, 32, 64)
    rgb = g(fc7, pool4, pool3, (32, 64))
    assert rgb.shape == (2, 3, 32, 64)
    domain, aux = d(rgb)
    assert domain.shape == (2, 4, 4, 8) and aux.shape == (2, 19, 4, 8)
    assert FeatureD(f.fc7_channels, width=0.125)(fc7).shape == (2, 2, 1, 2)
    # gradients reach F's first conv through both C and G -> D
    (logits.sum() + domain.sum() + aux.sum()).backward()
    grad = f.features[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_generator_output_stays_in_unit_interval_even_for_large_inputs():
    torch.manual_seed(0)
    g = Generator(16, 8, 4, width=0.125)
    out = g(100 * torch.randn(1, 16, 2, 2), 100 * torch.randn(1, 8, 4, 4),
            100 * torch.randn(1, 4, 8, 8), (64, 64))  # fmt: skip
    assert out.shape == (1, 3, 64, 64)
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("h, w", [(50, 64), (64, 48), (33, 33)])
def test_embedding_rejects_sides_not_multiple_of_32(h, w):
    with META:
        f = Embedding(width=0.125)
    with pytest.raises(ValueError, match=rf"{w}x{h} .*multiples of 32"):
        f(torch.empty(1, 3, h, w, device=META))


def test_generator_rejects_size_that_does_not_match_fc7():
    g = Generator(16, 8, 4, width=0.125)
    with pytest.raises(ValueError, match="does not match"):
        g(torch.randn(1, 16, 1, 1), torch.randn(1, 8, 2, 2), torch.randn(1, 4, 4, 4), (40, 32))


def test_discriminator_without_aux_has_no_aux_parameters_and_returns_none():
    with_aux = Discriminator(19, width=0.125)
    without = Discriminator(19, width=0.125, aux=False)
    assert not any("aux" in name for name, _ in without.named_parameters())
    head = 16 * 19 * 9 + 19  # 3x3 conv, 16 channels at width 0.125, with bias
    assert count_parameters(with_aux) - count_parameters(without) == head
    domain, aux = without(torch.rand(1, 3, 32, 32))
    assert aux is None and domain.shape == (1, 4, 4, 4)


def test_classifier_two_x_upsampling_starts_bilinear():
    up = upsample2x(3)
    out = up(torch.full((1, 3, 4, 4), 2.0))
    assert out.shape == (1, 3, 8, 8)
    # away from the zero-padded border, bilinear upsampling of a constant is that constant
    torch.testing.assert_close(out[..., 1:-1, 1:-1], torch.full((1, 3, 6, 6), 2.0))


def test_classifier_output_matches_requested_size_and_starts_at_zero():
    c = Classifier(5, width=0.125)
    logits = c(torch.randn(1, 512, 2, 3), torch.randn(1, 64, 4, 6), torch.randn(1, 32, 8, 12),
               (64, 96))  # fmt: skip
    assert logits.shape == (1, 5, 64, 96)
    assert torch.count_nonzero(logits) == 0  # FCN zero-initialised score layers


# --- ImageNet VGG16 weights -------------------------------------------------------------


def test_load_vgg16_copies_conv_and_fc_weights(tmp_path):
    vgg = torchvision.models.vgg16(weights=None)
    path = tmp_path / VGG16_FILE
    torch.save(vgg.state_dict(), path)
    with META:
        f = Embedding(width=1.0)
    f = f.to_empty(device="cpu")  # every weight gets overwritten, so skip the random init
    load_vgg16_imagenet(f, str(path))
    assert torch.equal(f.features[0].weight, vgg.features[0].weight)  # conv1_1
    assert torch.equal(f.features[28].bias, vgg.features[28].bias)  # conv5_3
    assert torch.equal(f.fc6.weight, vgg.classifier[0].weight.view(4096, 512, 7, 7))
    assert torch.equal(f.fc6.bias, vgg.classifier[0].bias)
    assert torch.equal(f.fc7.weight.flatten(1), vgg.classifier[3].weight)


def test_missing_weights_file_names_the_path_and_the_file(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "vgg16.pth"
    with META:
        f = Embedding(width=1.0)
    with pytest.raises(PretrainedWeightsError, match=re.escape(str(missing))):
        load_vgg16_imagenet(f, str(missing))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as err:
        load_vgg16_imagenet(f, "imagenet")
    message = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / VGG16_FILE) in message
    assert "\n" not in message


def test_load_vgg16_refuses_width_other_than_one(tmp_path):
    with META:
        f = Embedding(width=0.5)
    with pytest.raises(ValueError, match="width=1.0"):
        load_vgg16_imagenet(f, str(tmp_path / "whatever.pth"))


def test_load_vgg16_names_the_missing_key_of_a_wrong_state_dict(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 1, 1)}, path)
    with META:
        f = Embedding(width=1.0)
    with pytest.raises(ValueError, match="missing key features.0.weight"):
        load_vgg16_imagenet(f, str(path))
