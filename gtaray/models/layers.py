"""Convolutions that stay in fp32 under bf16 autocast, for the image-facing layers.

cuDNN has no fast bf16 kernels for 3-channel convolutions at full resolution: on an H200 they
fell back to legacy kernels that took a third of a bf16 `full` step (docs/benchmarks.md). The
layers that read or write RGB (F's conv1_1, D's first conv, G's to_rgb) run in fp32 instead,
the usual choice for a net's first and last layers. Same parameters and state_dict keys as the
torch classes; without autocast they are those classes.
"""

from __future__ import annotations

import torch
from torch import nn


def _autocasting(x: torch.Tensor) -> bool:
    return x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)


class Fp32Conv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _autocasting(x):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


class Fp32ConvTranspose2d(nn.ConvTranspose2d):
    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if not _autocasting(x):
            return super().forward(x, output_size)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float(), output_size)


def conv2d(in_ch: int, out_ch: int, *args, **kwargs) -> nn.Conv2d:
    """nn.Conv2d, or Fp32Conv2d for fewer than 8 input channels: an RGB input, or a layer of a
    net narrowed below 8 channels (cuDNN's fast bf16 kernels want multiples of 8)."""
    return (Fp32Conv2d if in_ch < 8 else nn.Conv2d)(in_ch, out_ch, *args, **kwargs)


class InstanceNorm2d(nn.InstanceNorm2d):
    """nn.InstanceNorm2d (no running statistics) that keeps the input's memory layout.

    torch's instance norm reshapes to (1, B*C, H, W) and calls batch norm, which copies a
    channels_last activation to NCHW and back, forward and backward: on an H200 those copies
    were about a third of the bf16 channels_last step's kernel time (docs/benchmarks.md).
    Here the statistics are reduced over (H, W) in place, in fp32 or wider, and the result
    has the input's layout and dtype. Same parameters and state_dict keys as the torch class.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Only channels_last needs it: torch's own path is exact for NCHW (and on the CPU
        # accumulates in float64, which gtaray's 2-worker equality tests are tuned to).
        if self.track_running_stats or x.ndim != 4 or x.is_contiguous():
            return super().forward(x)
        y = _InstanceNorm.apply(x, self.eps)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


class _InstanceNorm(torch.autograd.Function):
    """Normalisation over (H, W) with batch norm's closed-form backward. Autograd through
    var_mean would sum more rounding error into the input's gradient, whose per-map mean is
    0 analytically: enough for Adam to turn into steps of lr on near-zero gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        var, mean = torch.var_mean(wide, dim=(2, 3), keepdim=True, correction=0)
        rstd = torch.rsqrt(var + eps)
        # The input is saved, not the output: a ReLU after the norm may work in place.
        ctx.save_for_backward(x, mean, rstd)
        return ((wide - mean) * rstd).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, mean, rstd = ctx.saved_tensors
        normalised = (x.to(mean.dtype) - mean) * rstd
        g = grad.to(normalised.dtype)
        mean_g = g.mean(dim=(2, 3), keepdim=True)
        mean_gx = (g * normalised).mean(dim=(2, 3), keepdim=True)
        return ((g - mean_g - normalised * mean_gx) * rstd).to(grad.dtype), None
