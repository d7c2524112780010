"""ImageNet initialisation of F from torchvision's VGG16 weights, read from disk only.

    F = Embedding(width=1.0)
    load_vgg16_imagenet(F, "imagenet")  # <torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth
    load_vgg16_imagenet(F, "/data/vgg16.pth")  # or any torchvision VGG16 state dict file

Nothing is ever downloaded: a missing file raises PretrainedWeightsError saying where to put it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from gtaray.errors import PretrainedWeightsError
from gtaray.models.embedding import Embedding

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
# torchvision's fully connected fc6 / fc7 become F's 7x7 and 1x1 convolutions.
FC_KEYS = {"fc6": "classifier.0", "fc7": "classifier.3"}


def resolve_source(source: str) -> Path:
    """The file a source names: "imagenet" means the torch hub cache, anything else is a path."""
    if source == "imagenet":
        return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    return Path(source).expanduser()


def find_weights(source: str) -> Path:
    """The weights file a source names; PretrainedWeightsError saying where to put it if absent."""
    path = resolve_source(source)
    if not path.is_file():
        raise PretrainedWeightsError(
            f"VGG16 weights not found at {path}: put torchvision's {VGG16_FILE} "
            f"({VGG16_URL}) there; gtaray never downloads weights"
        )
    return path


def load_vgg16_imagenet(embedding: Embedding, source: str) -> None:
    """Copy torchvision VGG16 weights (conv1_1..conv5_3, fc6, fc7) into `embedding` in place."""
    if embedding.width != 1.0:
        raise ValueError(
            f"ImageNet VGG16 weights need Embedding(width=1.0), got width={embedding.width}; "
            "use width 1.0 or train from scratch (pretrained: none)"
        )
    path = find_weights(source)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types; all mean "not a state dict"
        raise ValueError(f"{path} is not a loadable torchvision VGG16 state dict: {e}") from e
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a VGG16 state dict")
    with torch.no_grad():
        for name, param in embedding.named_parameters():
            layer, _, kind = name.rpartition(".")
            key = f"{FC_KEYS.get(layer, layer)}.{kind}"
            if key not in state:
                raise ValueError(f"{path} is not a torchvision VGG16 state dict: missing key {key}")
            src = state[key]
            if src.numel() != param.numel():
                raise ValueError(
                    f"{path}: {key} has shape {tuple(src.shape)}, F's {name} needs "
                    f"{tuple(param.shape)} (is this VGG16?)"
                )
            # reshape turns the Linear fc6/fc7 weights into 7x7 / 1x1 convolution kernels.
            param.copy_(src.reshape(param.shape))
