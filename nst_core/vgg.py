"""VGG19's convolutional part in torchvision's `features.N` numbering, cut after the deepest
layer in use, frozen, taking RGB images in 0..255 (the Caffe BGR/mean convention is inside)."""

from __future__ import annotations

import torch
from torch import nn

from .options import LAYERS
from .weights import BLOCKS

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def layer_index() -> dict[str, int]:
    """relu name -> index in `features`, e.g. relu1_1 -> 1, relu5_1 -> 29."""
    names, index = {}, 0
    for block, convs in BLOCKS:
        for k in range(1, convs + 1):
            names[f"relu{block}_{k}"] = index + 1
            index += 2
        index += 1
    assert tuple(names) == LAYERS
    return names


class VGG19(nn.Module):
    """`forward(image, layers)` returns {layer name: activation} for the layers asked for."""

    def __init__(self, layers, pooling: str = "max"):
        super().__init__()
        index = layer_index()
        self.wanted = {index[name]: name for name in layers}
        last = max(self.wanted)
        modules = []
        for block, convs in BLOCKS:
            in_ch = 3 if block == 1 else min(64 * 2 ** (block - 2), 512)
            out_ch = min(64 * 2 ** (block - 1), 512)
            for k in range(convs):
                modules += [nn.Conv2d(in_ch if k == 0 else out_ch, out_ch, 3, padding=1),
                            nn.ReLU(inplace=True)]
            modules.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
            if len(modules) > last:
                break
        self.features = nn.Sequential(*modules[: last + 1])  # every layer past `last` is time saved
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1),
                             persistent=False)
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, state: dict) -> VGG19:
        own = self.state_dict()
        self.load_state_dict({k: v for k, v in state.items() if k in own})
        return self

    def forward(self, rgb255: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
        wanted = self.wanted if layers is None else {layer_index()[n]: n for n in layers}
        x = rgb255.flip(1) - self.mean  # RGB 0..255 -> Caffe BGR, mean subtracted
        out = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
                if len(out) == len(wanted):
                    break
        return out
