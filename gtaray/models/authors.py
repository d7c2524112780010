"""The released code's networks (`model.arch: authors`): swamiviv/LSD-seg's
`code/torchfcn/models/fcn8s_LSD.py` and `model_utils.py`, with width multipliers.

    F = AuthorsEmbedding(width=1.0, dropout=0.5)     # FCN-8s "at once" trunk
    fc7, pool4, pool3 = F(image)                     # larger than /32, /16, /8: see below
    C = AuthorsClassifier(19)                        # scores cropped at 5, 9, 31
    G = AuthorsGenerator(F.fc7_channels, F.pool4_channels, F.pool3_channels)   # their _netG
    D = AuthorsDiscriminator(19, aux=True)           # their _netD

At 19 classes and width 1: F+C 134,456,985 parameters, G 64,221,187, D 1,361,047
(tests/test_authors_nets.py checks them against an independent transcription).

Geometry: conv1_1 pads by 100 and the pools round up, so at H = 32k F's maps are
pool3 4k+25, pool4 2k+13, fc7 k+1 (fc6 is 7x7 unpadded); C crops its skips at offsets 5 and 9
and its 8x upsampled scores at 31, and G's last transposed conv (kernel 8, padding 100) lands
back on H. D's map is H/8 (a 4x4 stride-2 conv with padding 2, then two 2x2 max-pools).

Where gtaray departs from the files, and why:
- F's convolutions start from Kaiming (compact's init) instead of zeros: the authors always
  load VGG16 over them; a from-scratch run (CPU tests, thin widths) must be able to learn.
- Dropout in F, G and D is `model.dropout` (the authors' 0.5 by default).
- The image-facing convolutions stay fp32 under bf16 autocast (gtaray.models.layers).
"""

from __future__ import annotations

import torch
from torch import nn

from gtaray.models.classifier import bilinear_up
from gtaray.models.discriminator import DOMAINS, SLOPE
from gtaray.models.embedding import FC_CHANNELS, Embedding, scaled
from gtaray.models.generator import ResBlock
from gtaray.models.layers import Fp32ConvTranspose2d, InstanceNorm2d, conv2d

# Where the authors crop the score maps (FCN-8s "at once" offsets for conv1_1's pad 100).
CROP_POOL4, CROP_POOL3, CROP_SCORE = 5, 9, 31


class AuthorsEmbedding(Embedding):
    """FCN-8s's VGG16 trunk with conv1_1 padding 100 and fc6 unpadded; (fc7, pool4, pool3)."""

    first_padding = 100
    fc6_padding = 0


def _crop(x: torch.Tensor, offset: int, like: tuple[int, int]) -> torch.Tensor:
    return x[:, :, offset : offset + like[0], offset : offset + like[1]]


class AuthorsClassifier(nn.Module):
    """FCN-8s's score layers, bilinear transposed convs (all three fixed by default) and crops."""

    def __init__(
        self, num_classes: int, width: float = 1.0, learn_upsampling: bool = False
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        # Definition order is the authors' (their parameters in the same order).
        self.score_fr = nn.Conv2d(scaled(FC_CHANNELS, width), num_classes, 1)
        self.score_pool3 = nn.Conv2d(scaled(256, width), num_classes, 1)
        self.score_pool4 = nn.Conv2d(scaled(512, width), num_classes, 1)
        self.upscore2 = bilinear_up(num_classes, 4, 2)
        self.upscore8 = bilinear_up(num_classes, 16, 8)
        self.upscore_pool4 = bilinear_up(num_classes, 4, 2)
        # The authors' optimizer never holds a transposed conv (util_fns.get_parameters).
        for up in (self.upscore2, self.upscore8, self.upscore_pool4):
            up.weight.requires_grad_(learn_upsampling)
        for conv in (self.score_fr, self.score_pool3, self.score_pool4):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(
        self, fc7: torch.Tensor, pool4: torch.Tensor, pool3: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        h = self.upscore2(self.score_fr(fc7))  # ~ stride 16
        h = h + _crop(self.score_pool4(pool4), CROP_POOL4, h.shape[-2:])
        h = self.upscore_pool4(h)  # ~ stride 8
        h = h + _crop(self.score_pool3(pool3), CROP_POOL3, h.shape[-2:])
        return _crop(self.upscore8(h), CROP_SCORE, tuple(size))


def _up(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    """Transposed conv (no bias: instance norm follows) + instance norm + ReLU."""
    return [
        nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, padding, bias=False),
        InstanceNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


def _res(channels: int, dropout: float, n: int = 2, **kw) -> list[nn.Module]:
    return [ResBlock(channels, dropout, **kw) for _ in range(n)]


class AuthorsGenerator(nn.Module):
    """Their _netG: fc7 -> 7x7 transposed conv, residual blocks, raw pool4 / pool3 concatenated,
    transposed kernels 7/3/3/5/5/8 with paddings 0/1/1/2/2/100, sigmoid. No noise (nz = 0)."""

    def __init__(
        self,
        fc7_channels: int,
        pool4_channels: int,
        pool3_channels: int,
        width: float = 1.0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        ngf = scaled(64, width)
        self.stage1_upsample = nn.Sequential(
            *_up(fc7_channels, ngf * 4, 7, 1, 0),
            *_res(ngf * 4, dropout),
            *_up(ngf * 4, ngf * 8, 3, 2, 1),
            *_res(ngf * 8, dropout),
        )
        self.stage2_upsample = nn.Sequential(
            *_up(pool4_channels + ngf * 8, ngf * 4, 3, 2, 1), *_res(ngf * 4, dropout)
        )
        self.stage3_upsample = nn.Sequential(
            *_up(pool3_channels + ngf * 4, ngf * 2, 5, 2, 2),
            *_res(ngf * 2, dropout),
            *_up(ngf * 2, ngf, 5, 2, 2),
            *_res(ngf, dropout),
        )
        # padding 100 undoes conv1_1's: the image comes out at the input's size.
        self.stage4_upsample = Fp32ConvTranspose2d(ngf, 3, 8, 2, 100)

    def forward(
        self, fc7: torch.Tensor, pool4: torch.Tensor, pool3: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        h = self.stage1_upsample(fc7)
        h = self.stage2_upsample(torch.cat([h, pool4], dim=1))
        h = self.stage3_upsample(torch.cat([h, pool3], dim=1))
        rgb = torch.sigmoid(self.stage4_upsample(h))
        if tuple(rgb.shape[-2:]) != tuple(size):
            raise ValueError(f"G made a {tuple(rgb.shape[-2:])} image, expected {tuple(size)}")
        return rgb


class AuthorsDiscriminator(nn.Module):
    """Their _netD: 4x4 stride-2 conv (padding 2, bias) + IN + LeakyReLU, three groups of three
    residual blocks (bias, LeakyReLU 0.2) split by two 2x2 max-pools, 3x3 heads."""

    def __init__(
        self, num_classes: int, width: float = 1.0, aux: bool = True, dropout: float = 0.5
    ) -> None:
        super().__init__()
        ch = scaled(128, width)  # the authors' 2 * ndf

        def group() -> list[nn.Module]:
            return _res(ch, dropout, n=3, negative_slope=SLOPE, bias=True)

        self.feature = nn.Sequential(
            conv2d(3, ch, 4, stride=2, padding=2),
            InstanceNorm2d(ch),
            nn.LeakyReLU(SLOPE, inplace=True),
            *group(),
            nn.MaxPool2d(2, 2),
            *group(),
            nn.MaxPool2d(2, 2),
            *group(),
        )
        self.out_s = nn.Conv2d(ch, DOMAINS, 3, padding=1)
        self.out_c = nn.Conv2d(ch, num_classes, 3, padding=1) if aux else None

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.feature(rgb)
        return self.out_s(h), (self.out_c(h) if self.out_c is not None else None)
