"""The whole-image objective and its gradient, evaluated block by block.

This is Galerne, Raad, Lezama and Morel's "Scaling Painting Style Transfer" in our terms (see
DESIGN.md section 8). Every term of the objective is a sum over positions: the style statistics
(the Gram matrices G = (1/CHW) sum_p f_p f_p^T, or W2's mean and second moment), the content MSE
and (on the whole image, where it is cheap) TV and the range penalty. So:

- pass 1, no autograd: run every block with a margin that covers the deepest layer's receptive
  field, keep each layer's features over the block's core only, and add up the style statistics
  and the content loss. That gives the exact whole-image loss, and dL/dstats for every style
  layer.
- pass 2: run each block again with autograd and back-propagate the surrogate
  <dL/dstats, stats_block> + content loss on the core. Its gradient is the block's exact share of
  the whole-image gradient (margins included); the shares add up to the whole-image gradient.

Blocks start on multiples of 16 so that VGG's four poolings see the same windows as on the whole
image, and a block that reaches the image's border has the same zero padding there. Hence no
seams, by construction: tests/test_blockwise.py checks loss and gradient against the whole image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from . import losses, networks
from .device import release_memory
from .networks import layer_stride, margin_for
from .vgg import channels_last

STRIDE = networks.POOL_GRID  # blocks start on multiples of this


MARGIN = margin_for(("relu5_1",))  # the default style layers' deepest: 80


@dataclass(frozen=True)
class Block:
    """A core [y0, y1) x [x0, x1) and the region [ry0, ry1) x [rx0, rx1) the net sees for it."""

    y0: int
    y1: int
    x0: int
    x1: int
    ry0: int
    ry1: int
    rx0: int
    rx1: int

    def core(self, feats: torch.Tensor, stride: int, height: int, width: int) -> torch.Tensor:
        """The core's part of the block's features at a layer of this stride (pixels/feature);
        height, width: the whole image's, whose feature map is floor(side / stride) long."""
        return self._cut(feats, stride, height, width, self.ry0 // stride, self.rx0 // stride)

    def target(self, full: torch.Tensor, stride: int, height: int, width: int) -> torch.Tensor:
        """The same core cut from a whole-image feature map."""
        return self._cut(full, stride, height, width, 0, 0)

    def _cut(self, feats, stride, height, width, oy, ox):
        """The core's features; (oy, ox): where `feats` starts on the whole feature map."""
        y1 = height // stride if self.y1 == height else self.y1 // stride
        x1 = width // stride if self.x1 == width else self.x1 // stride
        return feats[..., self.y0 // stride - oy:y1 - oy, self.x0 // stride - ox:x1 - ox]


def blocks(height: int, width: int, core: int, margin: int = MARGIN) -> list[Block]:
    """Cores of `core` px (a multiple of 16) tiling the image, with their margins."""
    if core % STRIDE or margin % STRIDE:
        raise ValueError("block core and margin must be multiples of 16")
    out = []
    for y0 in range(0, height, core):
        for x0 in range(0, width, core):
            y1, x1 = min(y0 + core, height), min(x0 + core, width)
            out.append(Block(y0, y1, x0, x1, max(0, y0 - margin), min(height, y1 + margin),
                             max(0, x0 - margin), min(width, x1 + margin)))
    return out


class Objective:
    """loss and d loss / d image of the engine's objective at one scale.

    net(image, layers) -> {layer: features}; content_targets: {layer: whole-image features};
    style_targets: {layer: style_loss's target, e.g. the style's Gram matrix}; weights: content,
    style (already times strength), per-layer style weights, tv, range. `core` None evaluates the
    whole image at once (autograd end to end); a number evaluates it in blocks of that core size.
    Both give the same values.
    """

    def __init__(self, net, content_targets: dict, style_targets: dict, *, content_weight: float,
                 style_weight: float, layer_weights: dict, tv_weight: float, range_weight: float,
                 autocast: Callable, core: int | None = None, margin: int = MARGIN,
                 should_stop: Callable[[], bool] = lambda: False, style_loss=losses.GRAM,
                 hold: tuple | None = None):
        self.net, self.targets, self.styles = net, content_targets, style_targets
        self.kind = style_loss
        self.cw, self.sw, self.lw = content_weight, style_weight, layer_weights
        self.tvw, self.rw = tv_weight, range_weight
        self.hold = hold  # (weight, target image, per-pixel mask (1, 1, H, W)) or None
        self.autocast, self.core, self.margin = autocast, core, margin
        self.should_stop = should_stop
        self.on_block: Callable[[float], None] | None = None  # fraction of an evaluation done
        self.layers = list(dict.fromkeys([*content_targets, *style_targets]))

    def features(self, x: torch.Tensor) -> dict:
        with self.autocast():
            return self.net(x.contiguous(memory_format=torch.channels_last), self.layers)

    def image_terms(self, x: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """TV, the range penalty and the hold term: cheap, so on the image directly. `rows`: a
        band's own rows in x (x may hold one row more, which TV pairs with its last)."""
        loss = x.new_zeros(())
        own = x[..., :rows.stop - rows.start, :] if rows.stop is not None else x
        if self.tvw:
            loss = loss + self.tvw * losses.tv_loss(x)
        if self.rw:
            loss = loss + self.rw * losses.range_loss(own)
        if self.hold is not None:
            weight, target, mask = self.hold
            loss = loss + weight * losses.hold_loss(own, target[..., rows, :], mask[..., rows, :])
        return loss

    def __call__(self, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        """(loss, gradient) at x, a (1, 3, H, W) image in 0..255."""
        if self.core is None:
            return self._whole(x)
        try:
            return self._blocks(x)
        finally:
            if x.device.type == "cpu":  # a block-wise evaluation's temporaries, back to the
                release_memory()  # system (per whole-image step it cost 15 % at 256 px)

    # -- the whole image at once ----------------------------------------------------------------

    def _whole(self, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        feats = self.features(x)
        loss = self.cw * sum(losses.content_loss(feats[k], t) for k, t in self.targets.items())
        loss = loss + self.sw * sum(
            self.lw[k] * self.kind.loss(losses.style_stats(feats[k], self.kind), t)
            for k, t in self.styles.items())
        loss = loss + self.image_terms(x)
        loss.backward()
        return loss.item(), x.grad

    # -- block by block -------------------------------------------------------------------------

    def _blocks(self, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        x = x.detach()
        _, _, h, w = x.shape
        grid = blocks(h, w, self.core, self.margin)
        numel = {k: t.numel() for k, t in self.targets.items()}

        # Pass 1: the whole image's style statistics and content loss.
        stats = {k: None for k in self.styles}
        content = 0.0
        with torch.no_grad():
            for block in self._each(grid, 0):
                feats = self.features(x[..., block.ry0:block.ry1, block.rx0:block.rx1])
                for k in self.styles:
                    stats[k] = _add(stats[k], partial_stats(
                        block.core(feats[k], layer_stride(k), h, w), h, w, layer_stride(k),
                        self.kind))
                for k, t in self.targets.items():
                    s = layer_stride(k)
                    diff = block.core(feats[k], s, h, w).float() - block.target(t, s, h, w)
                    content += diff.square().sum().item() / numel[k]
        # The style term and dL/dstats, a constant in pass 2: autograd on the small statistics.
        style, dstats = 0.0, {}
        for k, st in stats.items():
            leaves = [t.detach().requires_grad_(True) for t in st]
            value = self.sw * self.lw[k] * self.kind.loss(leaves, self.styles[k])
            dstats[k] = (st, torch.autograd.grad(value, leaves))
            style += value.item()

        # Pass 2: each block's exact share of the gradient. The surrogate's derivative with
        # respect to each layer's core features is written down directly and back-propagated
        # from there: autograd through the core crops would add full-size, differently laid out
        # gradients per layer (measured: a third of the block path's time).
        grad = torch.zeros_like(x)
        for block in self._each(grid, 1):
            piece = x[..., block.ry0:block.ry1, block.rx0:block.rx1].clone().requires_grad_(True)
            feats = self.features(piece)
            roots, seeds = [], []
            for k in self.layers:
                seed = self._feature_grad(block, k, feats[k], dstats.get(k), h, w, numel)
                if seed is not None:
                    roots.append(feats[k])
                    seeds.append(seed)
            if roots:
                torch.autograd.backward(roots, seeds)
                grad[..., block.ry0:block.ry1, block.rx0:block.rx1] += piece.grad
            del feats, roots, seeds, piece

        loss = self.cw * content + style
        return loss + self._image_terms_in_bands(x, grad, self.core * self.core // w + 1), grad

    def _image_terms_in_bands(self, x: torch.Tensor, grad: torch.Tensor, rows: int) -> float:
        """TV, the range penalty and the hold term, band of rows by band of rows, their gradient
        added to `grad`: on a whole 24 MP image their autograd temporaries would take ~2 GB. TV
        pairs a row with the next, so each band also reads the first row of the next one (its
        anchors stay its own rows); the other two are per pixel."""
        if not (self.tvw or self.rw or self.hold):
            return 0.0
        h = x.shape[-2]
        total = 0.0
        for r0 in range(0, h, rows):
            r1 = min(r0 + rows, h)
            piece = x[..., r0:min(r1 + 1, h), :].detach().requires_grad_(True)
            loss = self.image_terms(piece, slice(r0, r1))
            loss.backward()
            grad[..., r0:min(r1 + 1, h), :] += piece.grad
            total += loss.item()
        return total

    def _feature_grad(self, block: Block, layer: str, feats: torch.Tensor, dstats, height: int,
                      width: int, numel: dict) -> torch.Tensor | None:
        """d surrogate / d features of one layer of a block: nonzero on the core only.
        Style: the style loss's seed, e.g. for the Gram <dL/dG, G_core> with
        G_core = F^T F / (C M) gives F (D + D^T) / (C M); content: cw |F - T|^2 / N gives
        2 cw (F - T) / N."""
        s = layer_stride(layer)
        core = block.core(feats, s, height, width)
        if core.numel() == 0:
            return None
        _, c, fh, fw = core.shape
        seed = torch.zeros_like(feats)
        out = block.core(seed, s, height, width)  # written in place: no core-sized fp32 copy
        if dstats is not None:
            positions = (height // s) * (width // s)
            seed_flat = self.kind.seed(losses.flatten(core), *dstats, positions)
            out.copy_(seed_flat.view(1, fh, fw, c).permute(0, 3, 1, 2))
        if layer in self.targets:
            target = block.target(self.targets[layer], s, height, width)
            out.add_(((2 * self.cw / numel[layer]) * (core.float() - target)).to(out.dtype))
        return seed

    def _each(self, grid: list[Block], pass_: int) -> Iterator[Block]:
        """The blocks, checking for a stop request between them: a long evaluation still stops
        within a block's time (the engine reports it as stopped with the best image so far).
        Pass 1 (a forward) is about a third of the work, pass 2 (forward and backward) the rest."""
        for n, block in enumerate(grid):
            if self.should_stop():
                raise Stopped
            yield block
            if self.on_block is not None:
                self.on_block((len(grid) * pass_ + (1 + pass_) * (n + 1)) / (3 * len(grid)))


class Stopped(Exception):
    """should_stop() said so in the middle of an evaluation."""


def partial_stats(core_feats: torch.Tensor, height: int, width: int, stride: int,
                  kind) -> tuple[torch.Tensor, ...]:
    """The core's share of the whole image's style statistics, whose normalisers count the whole
    image's positions at this layer. (A border block whose core lies past this layer's last
    whole window has no positions there: its share is zero.)"""
    return kind.stats(losses.flatten(core_feats), (height // stride) * (width // stride))


def _add(total: tuple | None, part: tuple) -> tuple:
    return part if total is None else tuple(a + b for a, b in zip(total, part))


def content_targets(net, image: torch.Tensor, layers, autocast, core: int | None,
                    margin: int = MARGIN) -> dict:
    """Whole-image features of `image` at `layers` (no autograd), block by block when core is
    set: the content targets of a layer too big for one pass."""
    _, _, h, w = image.shape
    with torch.no_grad():
        if core is None:
            with autocast():
                return {k: v.float() for k, v in net(channels_last(image), layers).items()}
        out = {}
        for block in blocks(h, w, core, margin):
            with autocast():
                region = image[..., block.ry0:block.ry1, block.rx0:block.rx1]
                feats = net(channels_last(region), layers)
            for k in layers:
                s = layer_stride(k)
                part = block.core(feats[k], s, h, w)
                if k not in out:
                    out[k] = part.new_empty((1, part.shape[1], h // s, w // s), dtype=torch.float32)
                block.target(out[k], s, h, w).copy_(part)
        return out


def style_stats(net, image: torch.Tensor, layers, autocast, core: int | None,
                margin: int = MARGIN, kind=losses.GRAM) -> dict:
    """A style loss's statistics of `image` at `layers` (no autograd), block by block when core
    is set. Statistics blend linearly: several styles' are added with their weights."""
    _, _, h, w = image.shape
    with torch.no_grad():
        if core is None:
            with autocast():
                feats = net(channels_last(image), layers)
            return {k: losses.style_stats(feats[k], kind) for k in layers}
        stats = {k: None for k in layers}
        for block in blocks(h, w, core, margin):
            with autocast():
                region = image[..., block.ry0:block.ry1, block.rx0:block.rx1]
                feats = net(channels_last(region), layers)
            for k in layers:
                s = layer_stride(k)
                stats[k] = _add(stats[k], partial_stats(block.core(feats[k], s, h, w), h, w, s,
                                                        kind))
        return stats


def style_grams(net, image: torch.Tensor, layers, autocast, core: int | None,
                margin: int = MARGIN) -> dict:
    """Gram matrices of `image` at `layers` (no autograd), block by block when core is set."""
    return {k: st[0] for k, st in style_stats(net, image, layers, autocast, core, margin).items()}

