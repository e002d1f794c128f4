"""The networks' geometry, defined once and torch-free: VGG19's and VGG16's blocks, their layer
names, torchvision's `features` numbering, each layer's stride and how far a layer's features
reach into the picture. Used by options (layer names), weights (the file's layout), vgg (the
modules) and blockwise (exact block margins)."""

from __future__ import annotations

BLOCKS = {"vgg19": (2, 2, 4, 4, 4), "vgg16": (2, 2, 3, 3, 3)}  # 3x3 convs per block
MODELS = tuple(BLOCKS)
LAYERS = {model: tuple(f"relu{b}_{k}" for b, n in enumerate(blocks, 1) for k in range(1, n + 1))
          for model, blocks in BLOCKS.items()}
POOL_GRID = 16  # four 2x2 poolings: exact blocks start on multiples of this


def conv_layers(model: str = "vgg19"):
    """(block, conv, `features` index, in channels, out channels) of each conv layer in order,
    in torchvision's numbering: a conv and its ReLU per layer, then one pool per block."""
    index, in_ch = 0, 3
    for block, convs in enumerate(BLOCKS[model], start=1):
        out_ch = channels(f"relu{block}_1")
        for k in range(1, convs + 1):
            yield block, k, index, in_ch, out_ch
            index, in_ch = index + 2, out_ch
        index += 1


def block_of(layer: str) -> int:
    """relu<block>_<k> -> block."""
    return int(layer[4])


def channels(layer: str) -> int:
    """Feature channels of a layer: 64, doubling per block up to 512."""
    return min(64 * 2 ** (block_of(layer) - 1), 512)


def layer_stride(layer: str) -> int:
    """Pixels per feature of a layer: 1 in block 1, then twice per pooling."""
    return 2 ** (block_of(layer) - 1)


def margin_for(layers, model: str = "vgg19") -> int:
    """Pixels a block needs beyond its core so that its core features at `layers` are exact.

    Each 3x3 convolution reaches one feature further, i.e. its stride in pixels; the poolings
    start on the 16-px grid and reach no further. VGG19's relu5_1: 2x1 + 2x2 + 4x4 + 4x8 + 1x16
    = 70 px, so 80; relu4_2: 38, so 48. (Measured: 16 px less gives gradients off by 1e-6 to
    1e-2.)"""
    reach = 0
    for block, convs in enumerate(BLOCKS[model], start=1):
        deepest = max((int(k[6:]) for k in layers if block_of(k) == block), default=0)
        if any(block_of(k) > block for k in layers):
            deepest = convs
        reach += deepest * 2 ** (block - 1)
    return -(-reach // POOL_GRID) * POOL_GRID
