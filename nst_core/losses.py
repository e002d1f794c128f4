"""The terms of the objective, as in jcjohnson/neural-style: content (feature MSE), style
(MSE of Gram matrices divided by C*H*W, so weights do not depend on resolution) and total variation.
Features may arrive in bf16/fp16; every loss is computed in fp32, the W2 style loss in fp64.

The style losses compare statistics that are sums over positions (see `GramLoss`, `W2Loss`): that
is what lets blockwise.py add them up block by block and seed each block's backward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


class _Gram(torch.autograd.Function):
    """flat.T @ flat with a one-matmul backward, flat @ (g + g.T); autograd's generic matmul
    backward takes two. Measured: 48 -> 26 ms per bf16 iteration at 512x384, same accuracy.
    `dtype`: multiply in this precision, converting a few thousand rows at a time: no
    feature-sized copy, and only `flat` itself is kept for the backward."""

    @staticmethod
    def forward(ctx, flat, dtype):
        ctx.save_for_backward(flat)
        if flat.dtype == dtype:
            return flat.T @ flat
        out = flat.new_zeros((flat.shape[1], flat.shape[1]), dtype=dtype)
        for part in flat.split(8192):
            part = part.to(dtype)
            out.addmm_(part.T, part)
        return out

    @staticmethod
    def backward(ctx, grad):
        (flat,) = ctx.saved_tensors
        return flat @ (grad + grad.T).to(flat.dtype), None


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (1, C, H, W) features divided by C*H*W, returned in fp32.

    bf16 features are multiplied in bf16 (the sums accumulate in fp32; only the result is rounded,
    about 1.5e-3 relative): on the CPU that is 4x faster than an fp32 Gram, which otherwise took a
    third of each iteration. fp16 would overflow, so fp16 and fp32 features are multiplied in fp32.
    """
    flat = flatten(features)
    return _Gram.apply(flat, flat.dtype).float() / flat.numel()


def flatten(features: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) features as (H*W, C), in bf16 if they are bf16 and fp32 otherwise.
    (H*W, C) is a view for channels_last tensors: no copy before a matmul."""
    _, c, h, w = features.shape
    if features.dtype != torch.bfloat16:
        features = features.float()
    return features.permute(0, 2, 3, 1).reshape(h * w, c)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(features.float(), target)


def style_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(gram(features), target_gram)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Half the sum of squared neighbour differences (jcjohnson's TVLoss), in 0..255 units."""
    dx = image[..., :-1, :-1] - image[..., :-1, 1:]
    dy = image[..., :-1, :-1] - image[..., 1:, :-1]
    return 0.5 * (dx.square().sum() + dy.square().sum())


def range_loss(image: torch.Tensor, low: float = 0.0, high: float = 255.0) -> torch.Tensor:
    """Half the sum of squared distances of the pixels outside low..high to that range."""
    return 0.5 * (image - image.clamp(low, high)).square().sum()


def hold_loss(image: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Half the sum of squared differences to `target`, weighted per pixel by `mask` (Ruder et
    al.'s temporal loss: an animation's frame keeps what the last frame painted where it shows
    the same thing)."""
    return 0.5 * (mask * (image - target).square()).sum()


# -- style losses as statistics: a sum over positions, a loss of the statistics, a seed ------------


class GramLoss:
    """Gatys et al.: the Gram matrix G = sum_p f_p f_p^T / (C N), compared by MSE.

    stats(flat, positions): the statistics of these (N', C) features as their share of an image
    with `positions` positions at this layer; target(stats): what loss() compares with (blended
    statistics in); seed(flat, stats, grads, positions): d <grads, stats(flat)> / d flat, the
    per-position feature gradient of a block, given dL/dstats of the whole image."""

    name = "gram"

    def stats(self, flat: torch.Tensor, positions: int) -> tuple[torch.Tensor, ...]:
        return (_Gram.apply(flat, flat.dtype).float() / (flat.shape[1] * positions),)

    def target(self, stats: tuple) -> torch.Tensor:
        return stats[0]

    def loss(self, stats: tuple, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(stats[0], target)

    def seed(self, flat, stats, grads, positions) -> torch.Tensor:
        (dg,) = grads  # in the features' own precision, as gram()'s backward
        return flat @ ((dg + dg.T) / (flat.shape[1] * positions)).to(flat.dtype)


@dataclass(frozen=True)
class W2Target:
    """A style layer's Gaussian fit, fp64: mean (C), covariance (C, C) with eps on its diagonal
    and its square root, computed once per scale."""

    mean: torch.Tensor
    cov: torch.Tensor
    cov_sqrt: torch.Tensor
    eps: float


class W2Loss:
    """The Wasserstein-2 distance between Gaussian fits of the feature distributions
    (crowsonkb/style-transfer-pytorch's StyleLossW2), per channel:

        (|mu - mu_s|^2 + tr(S + S_s - 2 (S_s^1/2 S S_s^1/2)^1/2)) / C

    Its statistics are the mean and the second raw moment, sums over positions like the Gram;
    unlike the covariance they also blend linearly: several styles blend as the mixture of their
    feature distributions. Both covariances get the style's eps on their diagonal: REL_EPS of its
    mean variance. Without it the square root's gradient, 1 / sqrt(eigenvalue), would follow
    rounding noise in the directions where the features hardly vary (VGG's covariances have
    eigenvalues from 1e8 down to 0, and fp32 sums leave noise of about 1e-7 of the largest);
    ABS_EPS covers a flat style, which has no variance at all."""

    name = "w2"
    REL_EPS = 1e-3
    ABS_EPS = 1e-2
    # So that the presets' style weight paints about as much style with W2 as with the Gram:
    # tubingen x starry_night, standard preset, 256 px: the result's content loss is the Gram
    # result's at about 0.27 (0.15: 0.76x, 0.4: 1.22x; at 1.5 the houses were gone at 512 px).
    # The pull at the start misleads: there the Gram's style gradient is 1.1-1.7x W2's per unit.
    SCALE = 0.25

    def stats(self, flat: torch.Tensor, positions: int) -> tuple[torch.Tensor, ...]:
        # Summed in fp32 even for bf16 features: a bf16-rounded second moment has eigenvalue
        # noise of ~0.2% of the largest, far above the eps below.
        return (flat.sum(0, dtype=torch.float32) / positions,
                _Gram.apply(flat, torch.float32) / positions)

    def target(self, stats: tuple) -> W2Target:
        mean, cov = self._gaussian(stats, 0.0)
        eps = max(self.REL_EPS * float(torch.trace(cov)) / len(mean), self.ABS_EPS)
        cov = cov + eps * torch.eye(len(mean), dtype=cov.dtype, device=cov.device)
        return W2Target(mean, cov, sqrtm(cov), eps)

    def loss(self, stats: tuple, target: W2Target) -> torch.Tensor:
        mean, cov = self._gaussian(stats, target.eps)
        cross = sqrtm(target.cov_sqrt @ cov @ target.cov_sqrt)
        dist = ((mean - target.mean).square().sum() + torch.trace(cov) + torch.trace(target.cov)
                - 2 * torch.trace(cross))
        return self.SCALE / mean.shape[0] * dist

    def seed(self, flat, stats, grads, positions) -> torch.Tensor:
        # With P = dL/dM + dL/dM^T and q = dL/dmean (M the second moment), dL/df_i =
        # (P f_i + q) / N = (P (f_i - mu) + g) / N, g = q + P mu: centred, the features' own
        # precision loses less than in P f_i + q, whose terms largely cancel.
        (dmean, dsecond), mean = grads, stats[0]
        p = dsecond + dsecond.T
        g = dmean + p @ mean
        return (((flat - mean.to(flat.dtype)) @ (p / positions).to(flat.dtype))
                + (g / positions).to(flat.dtype))

    @staticmethod
    def _gaussian(stats, eps: float):
        """(mean, covariance + eps I) in fp64 from (mean, second moment)."""
        mean, second = (s.double() for s in stats)
        eye = torch.eye(len(mean), dtype=torch.float64, device=mean.device)
        return mean, second - torch.outer(mean, mean) + eps * eye


GRAM, W2 = GramLoss(), W2Loss()
STYLE_LOSSES = {"gram": GRAM, "w2": W2}


def style_stats(features: torch.Tensor, kind) -> tuple[torch.Tensor, ...]:
    """A style loss's statistics of a whole (1, C, H, W) feature map."""
    flat = flatten(features)
    return kind.stats(flat, flat.shape[0])


class _Sqrtm(torch.autograd.Function):
    """The principal square root of a symmetric positive semi-definite matrix, by eigh (clamped
    eigenvalues). Backward: X with S X + X S = G (S the root), solved in S's eigenbasis as
    G_ij / (d_i + d_j); the floor on that sum bounds the gradient where both vanish."""

    @staticmethod
    def forward(ctx, a):
        vals, vecs = torch.linalg.eigh((a + a.T) / 2)
        roots = vals.clamp(min=0).sqrt()
        ctx.save_for_backward(roots, vecs)
        return (vecs * roots) @ vecs.T

    @staticmethod
    def backward(ctx, grad):
        roots, vecs = ctx.saved_tensors
        sums = roots[:, None] + roots[None, :]
        sums = sums.clamp(min=1e-12 * max(float(roots.max()), 1.0))
        x = vecs @ ((vecs.T @ grad @ vecs) / sums) @ vecs.T
        return (x + x.T) / 2  # the forward read only the symmetric part


def sqrtm(a: torch.Tensor) -> torch.Tensor:
    return _Sqrtm.apply(a)
