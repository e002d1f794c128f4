"""VGG19's or VGG16's convolutional part in torchvision's `features.N` numbering, cut after the
deepest layer in use, frozen, taking RGB images in 0..255 (the Caffe BGR/mean convention is
inside)."""

from __future__ import annotations

import torch
from torch import nn

from .networks import LAYERS, conv_layers
from .weights import expected_shapes

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def layer_index(model: str = "vgg19") -> dict[str, int]:
    """relu name -> index in `features`: for vgg19 relu1_1 -> 1, relu5_1 -> 29; for vgg16
    relu5_1 -> 24. Each ReLU follows its conv."""
    names = {f"relu{block}_{k}": index + 1 for block, k, index, _, _ in conv_layers(model)}
    assert tuple(names) == LAYERS[model]
    return names


class VGG(nn.Module):
    """`forward(image, layers)` returns {layer name: activation} for the layers asked for."""

    def __init__(self, layers, pooling: str = "max", model: str = "vgg19"):
        super().__init__()
        self.model = model
        self.index = layer_index(model)
        self.wanted = {self.index[name]: name for name in layers}
        last = max(self.wanted)
        pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
        modules = []
        for block, k, index, in_ch, out_ch in conv_layers(model):
            if index > last:  # every layer past the deepest in use is time saved
                break
            if k == 1 and block > 1:
                modules.append(pool(2, 2))
            modules += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*modules)
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1),
                             persistent=False)
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, state: dict) -> VGG:
        """Load `weights.load(model=...)`'s tensors; another network's are refused, even where
        the shallow layers they share would fit."""
        if set(state) != set(expected_shapes(self.model)):
            raise ValueError(f"these weights are not {self.model}'s")
        own = self.state_dict()
        self.load_state_dict({k: v for k, v in state.items() if k in own})
        return self

    def forward(self, rgb255: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
        wanted = self.wanted if layers is None else {self.index[n]: n for n in layers}
        x = rgb255.flip(1) - self.mean  # RGB 0..255 -> Caffe BGR, mean subtracted
        out = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
                if len(out) == len(wanted):
                    break
        return out


VGG19 = VGG  # the name callers used before VGG16; VGG19(layers, pooling) is still VGG19


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """The layout the CPU's convolutions run fastest in (measured: bench/)."""
    return t.contiguous(memory_format=torch.channels_last)
