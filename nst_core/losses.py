"""The three terms of the objective, as in jcjohnson/neural-style: content (feature MSE), style
(MSE of Gram matrices divided by C*H*W, so weights do not depend on resolution) and total variation.
Features may arrive in bf16/fp16; every loss is computed in fp32."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (1, C, H, W) features divided by C*H*W, computed in fp32."""
    _, c, h, w = features.shape
    # (H*W, C) is a view for channels_last tensors: no copy before the matmul.
    flat = features.float().permute(0, 2, 3, 1).reshape(h * w, c)
    return (flat.T @ flat) / (c * h * w)


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
