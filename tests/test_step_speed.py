"""The GPU fast path's building blocks, checked on the CPU: an instance norm that keeps
channels_last, compiled frozen passes that never recompile, and uint8 batches normalised on the
device. Each must leave the numbers where the plain PyTorch path puts them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gtaray.models.layers import InstanceNorm2d

LAYOUTS = [torch.contiguous_format, torch.channels_last]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_equals_torch_and_keeps_the_layout(layout, affine):
    torch.manual_seed(0)
    ours, theirs = InstanceNorm2d(6, affine=affine), nn.InstanceNorm2d(6, affine=affine)
    if affine:  # non-trivial affine parameters, the same in both
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            theirs.bias.uniform_(-1, 1)
        ours.load_state_dict(theirs.state_dict())
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x = (torch.randn(2, 6, 9, 13) * 3 + 1).to(memory_format=layout)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    assert ya.is_contiguous(memory_format=layout)
    torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(ya)
    (ya * upstream).sum().backward()
    (yb * upstream).sum().backward()
    assert xa.grad.is_contiguous(memory_format=layout)
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
    if affine:
        for name in ("weight", "bias"):
            torch.testing.assert_close(
                getattr(ours, name).grad, getattr(theirs, name).grad, atol=1e-4, rtol=1e-5
            )


def test_instance_norm_reduces_bf16_in_fp32_and_keeps_float64():
    torch.manual_seed(0)
    # A large mean: bf16 sums would lose the variance. Compared on the same rounded input,
    # the only difference left is the output's rounding to bf16.
    x = (torch.randn(1, 4, 16, 16) * 100 + 1000).bfloat16()
    y = InstanceNorm2d(4)(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), nn.InstanceNorm2d(4)(x.float()), atol=2e-2, rtol=1e-2)
    assert InstanceNorm2d(4)(x.double()).dtype == torch.float64
