"""The authors' networks, transcribed line by line: the reference for tests/test_authors_nets.py.

Transcribed from swamiviv/LSD-seg (CVPR 2018, "Learning from Synthetic Data"):
  code/torchfcn/models/model_utils.py  get_upsampling_weight, FCN8s (__init__,
                                       _initialize_weights), ResnetBlock
  code/torchfcn/models/fcn8s_LSD.py    FCN8s_LSD (forward -> (score, fc7_response, pool4, pool3),
                                       copy_params_from_vgg16), _netG, _netD
  code/util_fns.py                     weights_init
Dropped: the `fcn` package (pretrained_model / download, which only fetch files), FCN8s.forward
and copy_params_from_fcn16s (FCN8s_LSD overrides / never uses them), the noise branches of _netG
(nz = 0 in their code), the commented-out resize-convolution _netG, torch.autograd.Variable.
Added: `width`, a channel multiplier so that tests run small: every channel count c becomes
max(1, round(c * width)) (_netG and _netD: ngf / ndf = 64 scale and their multiples follow, as
the authors write them; _netG's inputs ndim1/2/3 = 4096/512/256 follow F's width, `f_width`),
and `dropout`, the probability of every dropout layer. At width 1.0 and dropout 0.5 (the
defaults) this is exactly the authors' code. InstanceNorm2d is PyTorch's default (affine=False,
no running statistics); in the PyTorch 0.2 of their README eval mode used running statistics.

Imports nothing from gtaray: it is the independent side of the comparison.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def scaled(c: int, width: float) -> int:
    """A channel count at a width multiplier (the one addition to the authors' code)."""
    return max(1, round(c * width))


def get_upsampling_weight(in_channels, out_channels, kernel_size):
    """Make a 2D bilinear kernel suitable for upsampling"""
    factor = (kernel_size + 1) // 2
    if kernel_size % 2 == 1:  # noqa: SIM108 (the authors' lines)
        center = factor - 1
    else:
        center = factor - 0.5
    og = np.ogrid[:kernel_size, :kernel_size]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    weight = np.zeros((in_channels, out_channels, kernel_size, kernel_size), dtype=np.float64)
    weight[range(in_channels), range(out_channels), :, :] = filt
    return torch.from_numpy(weight).float()


class FCN8s(nn.Module):
    def __init__(self, n_class=21, width=1.0, dropout=0.5):
        super().__init__()
        c64, c128, c256, c512 = (scaled(c, width) for c in (64, 128, 256, 512))
        c4096 = scaled(4096, width)
        # conv1
        self.conv1_1 = nn.Conv2d(3, c64, 3, padding=100)
        self.relu1_1 = nn.ReLU(inplace=True)
        self.conv1_2 = nn.Conv2d(c64, c64, 3, padding=1)
        self.relu1_2 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 1/2

        # conv2
        self.conv2_1 = nn.Conv2d(c64, c128, 3, padding=1)
        self.relu2_1 = nn.ReLU(inplace=True)
        self.conv2_2 = nn.Conv2d(c128, c128, 3, padding=1)
        self.relu2_2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 1/4

        # conv3
        self.conv3_1 = nn.Conv2d(c128, c256, 3, padding=1)
        self.relu3_1 = nn.ReLU(inplace=True)
        self.conv3_2 = nn.Conv2d(c256, c256, 3, padding=1)
        self.relu3_2 = nn.ReLU(inplace=True)
        self.conv3_3 = nn.Conv2d(c256, c256, 3, padding=1)
        self.relu3_3 = nn.ReLU(inplace=True)
        self.pool3 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 1/8

        # conv4
        self.conv4_1 = nn.Conv2d(c256, c512, 3, padding=1)
        self.relu4_1 = nn.ReLU(inplace=True)
        self.conv4_2 = nn.Conv2d(c512, c512, 3, padding=1)
        self.relu4_2 = nn.ReLU(inplace=True)
        self.conv4_3 = nn.Conv2d(c512, c512, 3, padding=1)
        self.relu4_3 = nn.ReLU(inplace=True)
        self.pool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 1/16

        # conv5
        self.conv5_1 = nn.Conv2d(c512, c512, 3, padding=1)
        self.relu5_1 = nn.ReLU(inplace=True)
        self.conv5_2 = nn.Conv2d(c512, c512, 3, padding=1)
        self.relu5_2 = nn.ReLU(inplace=True)
        self.conv5_3 = nn.Conv2d(c512, c512, 3, padding=1)
        self.relu5_3 = nn.ReLU(inplace=True)
        self.pool5 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 1/32

        # fc6
        self.fc6 = nn.Conv2d(c512, c4096, 7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout2d(dropout)

        # fc7
        self.fc7 = nn.Conv2d(c4096, c4096, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout2d(dropout)

        self.score_fr = nn.Conv2d(c4096, n_class, 1)
        self.score_pool3 = nn.Conv2d(c256, n_class, 1)
        self.score_pool4 = nn.Conv2d(c512, n_class, 1)

        self.upscore2 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n_class, n_class, 16, stride=8, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)

        self._initialize_weights()

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data.zero_()
                if m.bias is not None:
                    m.bias.data.zero_()
            if isinstance(m, nn.ConvTranspose2d):
                assert m.kernel_size[0] == m.kernel_size[1]
                initial_weight = get_upsampling_weight(
                    m.in_channels, m.out_channels, m.kernel_size[0]
                )
                m.weight.data.copy_(initial_weight)


class FCN8s_LSD(FCN8s):
    def forward(self, x):
        h = x
        h = self.relu1_1(self.conv1_1(h))
        h = self.relu1_2(self.conv1_2(h))
        h = self.pool1(h)

        h = self.relu2_1(self.conv2_1(h))
        h = self.relu2_2(self.conv2_2(h))
        h = self.pool2(h)

        h = self.relu3_1(self.conv3_1(h))
        h = self.relu3_2(self.conv3_2(h))
        h = self.relu3_3(self.conv3_3(h))
        h = self.pool3(h)
        pool3 = h  # 1/8

        h = self.relu4_1(self.conv4_1(h))
        h = self.relu4_2(self.conv4_2(h))
        h = self.relu4_3(self.conv4_3(h))
        h = self.pool4(h)
        pool4 = h  # 1/16

        h = self.relu5_1(self.conv5_1(h))
        h = self.relu5_2(self.conv5_2(h))
        h = self.relu5_3(self.conv5_3(h))
        h = self.pool5(h)

        h = self.relu6(self.fc6(h))
        h = self.drop6(h)

        h = self.relu7(self.fc7(h))
        fc7_response = self.drop7(h)

        h = self.score_fr(fc7_response)
        h = self.upscore2(h)
        upscore2 = h  # 1/16

        h = self.score_pool4(pool4)  # XXX: scaling to train at once
        h = h[:, :, 5 : 5 + upscore2.size()[2], 5 : 5 + upscore2.size()[3]]
        score_pool4c = h  # 1/16

        h = upscore2 + score_pool4c  # 1/16
        h = self.upscore_pool4(h)
        upscore_pool4 = h  # 1/8

        h = self.score_pool3(pool3)  # XXX: scaling to train at once
        h = h[:, :, 9 : 9 + upscore_pool4.size()[2], 9 : 9 + upscore_pool4.size()[3]]
        score_pool3c = h  # 1/8

        h = upscore_pool4 + score_pool3c  # 1/8

        h = self.upscore8(h)
        h = h[:, :, 31 : 31 + x.size()[2], 31 : 31 + x.size()[3]].contiguous()

        return h, fc7_response, pool4, pool3

    def copy_params_from_vgg16(self, vgg16):
        features = [
            self.conv1_1, self.relu1_1,
            self.conv1_2, self.relu1_2,
            self.pool1,
            self.conv2_1, self.relu2_1,
            self.conv2_2, self.relu2_2,
            self.pool2,
            self.conv3_1, self.relu3_1,
            self.conv3_2, self.relu3_2,
            self.conv3_3, self.relu3_3,
            self.pool3,
            self.conv4_1, self.relu4_1,
            self.conv4_2, self.relu4_2,
            self.conv4_3, self.relu4_3,
            self.pool4,
            self.conv5_1, self.relu5_1,
            self.conv5_2, self.relu5_2,
            self.conv5_3, self.relu5_3,
            self.pool5,
        ]  # fmt: skip
        for l1, l2 in zip(vgg16.features, features, strict=False):
            if isinstance(l1, nn.Conv2d) and isinstance(l2, nn.Conv2d):
                assert l1.weight.size() == l2.weight.size()
                assert l1.bias.size() == l2.bias.size()
                l2.weight.data.copy_(l1.weight.data)
                l2.bias.data.copy_(l1.bias.data)
        for i, name in zip([0, 3], ["fc6", "fc7"], strict=True):
            l1 = vgg16.classifier[i]
            l2 = getattr(self, name)
            l2.weight.data.copy_(l1.weight.data.view(l2.weight.size()))
            l2.bias.data.copy_(l1.bias.data.view(l2.bias.size()))


class ResnetBlock(nn.Module):
    def __init__(self, feat_dim, norm_type=1, bias=True, relu_type=1, dropout=0.5):
        super().__init__()
        self.bias = bias
        self.conv_layer = nn.Conv2d(feat_dim, feat_dim, 3, 1, 1, bias=self.bias)
        self.dropout = nn.Dropout(dropout)
        if relu_type == 1:
            self.activation = nn.ReLU(True)
        else:
            self.activation = nn.LeakyReLU(0.2, inplace=True)

        if norm_type == 1:
            self.normalization_layer = nn.BatchNorm2d(feat_dim)
        else:
            self.normalization_layer = nn.InstanceNorm2d(feat_dim)

    def forward(self, x):
        response = self.dropout(self.activation(self.normalization_layer(self.conv_layer(x))))
        out = x + response
        return out


class _netG(nn.Module):
    def __init__(self, width=1.0, f_width=1.0, dropout=0.5):
        super().__init__()
        self.nz = 0
        self.ndim1 = scaled(4096, f_width)
        self.ndim2 = scaled(512, f_width)
        self.ndim3 = scaled(256, f_width)
        ngf = scaled(64, width)
        p = dropout
        self.stage1_upsample = nn.Sequential(
            nn.ConvTranspose2d(self.ndim1 + self.nz, ngf * 4, 7, 1, 0, bias=False),
            nn.InstanceNorm2d(ngf * 4),
            nn.ReLU(True),
            ResnetBlock(ngf * 4, norm_type=2, bias=False, dropout=p),
            ResnetBlock(ngf * 4, norm_type=2, bias=False, dropout=p),
            nn.ConvTranspose2d(ngf * 4, ngf * 8, 3, 2, 1, 0, bias=False),
            nn.InstanceNorm2d(ngf * 8),
            nn.ReLU(True),
            ResnetBlock(ngf * 8, norm_type=2, bias=False, dropout=p),
            ResnetBlock(ngf * 8, norm_type=2, bias=False, dropout=p),
        )

        self.stage2_upsample = nn.Sequential(
            nn.ConvTranspose2d(self.ndim2 + self.nz + ngf * 8, ngf * 4, 3, 2, 1, 0, bias=False),
            nn.InstanceNorm2d(ngf * 4),
            nn.ReLU(True),
            ResnetBlock(ngf * 4, norm_type=2, bias=False, dropout=p),
            ResnetBlock(ngf * 4, norm_type=2, bias=False, dropout=p),
        )

        self.stage3_upsample = nn.Sequential(
            nn.ConvTranspose2d(self.ndim3 + self.nz + ngf * 4, ngf * 2, 5, 2, 2, 0, bias=False),
            nn.InstanceNorm2d(ngf * 2),
            nn.ReLU(True),
            ResnetBlock(ngf * 2, norm_type=2, bias=False, dropout=p),
            ResnetBlock(ngf * 2, norm_type=2, bias=False, dropout=p),
            nn.ConvTranspose2d(ngf * 2, ngf, 5, 2, 2, 0, bias=False),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(True),
            ResnetBlock(ngf, norm_type=2, bias=False, dropout=p),
            ResnetBlock(ngf, norm_type=2, bias=False, dropout=p),
        )

        self.stage4_upsample = nn.Sequential(nn.ConvTranspose2d(ngf, 3, 8, 2, 100), nn.Sigmoid())

    def forward(self, fc_response, pool4_response, pool3_response):
        # nz = 0: the authors' noise concatenations are no-ops and are left out.
        input_stage1 = fc_response
        output_stage1 = self.stage1_upsample(input_stage1)

        input_stage2 = torch.cat((output_stage1, pool4_response), 1)
        output_stage2 = self.stage2_upsample(input_stage2)

        input_stage3 = torch.cat((output_stage2, pool3_response), 1)
        output = self.stage3_upsample(input_stage3)

        output = self.stage4_upsample(output)

        return output


class _netD(nn.Module):
    def __init__(self, n_class=19, width=1.0, dropout=0.5):
        nc = 3
        ndf = scaled(64, width)
        n_layers = 3  # noqa: F841 (unused in the authors' code too)
        super().__init__()

        self.feature = nn.Sequential(
            nn.Conv2d(nc, 2 * ndf, 4, 2, 2),
            nn.InstanceNorm2d(2 * ndf),
            nn.LeakyReLU(0.2, inplace=True),
            ResnetBlock(ndf * 2, norm_type=2, bias=True, relu_type=2, dropout=dropout),
            ResnetBlock(ndf * 2, norm_type=2, bias=True, relu_type=2, dropout=dropout),
            ResnetBlock(ndf * 2, norm_type=2, bias=True, relu_type=2, dropout=dropout),
            nn.MaxPool2d(2, 2),
            ResnetBlock(ndf * 2, norm_type=2, bias=True, relu_type=2, dropout=dropout),
            ResnetBlock(ndf * 2, norm_type=2, bias=True, relu_type=2, dropout=dropout),
            ResnetBlock(ndf * 2, norm_type=2, bias=True, relu_type=2, dropout=dropout),
            nn.MaxPool2d(2, 2),
            ResnetBlock(ndf * 2, norm_type=2, bias=True, relu_type=2, dropout=dropout),
            ResnetBlock(ndf * 2, norm_type=2, bias=True, relu_type=2, dropout=dropout),
            ResnetBlock(ndf * 2, norm_type=2, bias=True, relu_type=2, dropout=dropout),
        )
        self.out_s = nn.Sequential(nn.Conv2d(ndf * 2, 4, 3, padding=1))
        self.out_c = nn.Sequential(nn.Conv2d(ndf * 2, n_class, 3, padding=1))

    def forward(self, input):
        output = self.feature(input)
        out_s = self.out_s(output)
        out_c = self.out_c(output)
        return out_s, out_c


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        m.weight.data.normal_(0.0, 0.02)
        if m.bias is not None:
            m.bias.data.uniform_(-0.01, 0.01)
    elif classname.find("BatchNorm") != -1:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)
