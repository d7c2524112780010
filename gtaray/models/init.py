"""The authors' initialisation of G and D (their `weights_init`, DCGAN style).

normal_init(G)    # every conv and transposed conv: weight N(0, 0.02), bias U(-0.01, 0.01)
"""

from __future__ import annotations

from torch import nn

WEIGHT_STD = 0.02
BIAS_RANGE = 0.01


def normal_init(module: nn.Module) -> None:
    """Re-initialise every (transposed) convolution inside `module`, in place."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, WEIGHT_STD)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -BIAS_RANGE, BIAS_RANGE)
