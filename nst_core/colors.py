"""Keep the content's colours (Gatys et al. 2016, "Preserving color in neural artistic style
transfer"), in one of two ways:

- luminance: the style is transferred on luminance alone, then the result's luminance is
  recombined with the content's chroma (YCbCr, BT.601);
- histogram: before the run, each style image is recoloured so that its colours' mean and
  covariance are the content's (their linear colour histogram matching); the strokes stay the
  style's, the palette becomes the photo's.
"""

from __future__ import annotations

import numpy as np

_TO_YCC = np.array([[0.299, 0.587, 0.114],
                    [-0.168736, -0.331264, 0.5],
                    [0.5, -0.418688, -0.081312]], dtype=np.float32)
_FROM_YCC = np.linalg.inv(_TO_YCC).astype(np.float32)


def rgb_to_ycc(rgb: np.ndarray) -> np.ndarray:
    return rgb @ _TO_YCC.T


def ycc_to_rgb(ycc: np.ndarray) -> np.ndarray:
    return ycc @ _FROM_YCC.T


def preserve_colors(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Arrays of the same shape, RGB 0..1: the result's luminance in the content's colours."""
    ycc = rgb_to_ycc(content)
    ycc[..., 0] = rgb_to_ycc(result)[..., 0]
    return np.clip(ycc_to_rgb(ycc), 0, 1).astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """The image's luminance, repeated in three channels (what VGG expects)."""
    y = rgb_to_ycc(rgb)[..., :1]
    return np.ascontiguousarray(np.repeat(np.clip(y, 0, 1), 3, axis=2), dtype=np.float32)


# Colour statistics need no more pixels than this (an evenly strided sample beyond it).
STATS_PIXELS = 1 << 20
# (0..1 units)^2, a standard deviation of 2.5 grey levels: a style's colour direction flatter
# than this is stretched as if it had this variance, so flat or grey styles stay flat (no NaN,
# no amplified JPEG noise) instead of being blown up to the content's variance.
EPS = 1e-4


def color_stats(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean (3) and covariance (3x3) of an HxWx3 image's colours, in float64."""
    pixels = rgb.reshape(-1, 3)
    sample = pixels[::max(1, len(pixels) // STATS_PIXELS)].astype(np.float64)
    mean = sample.mean(axis=0)
    centred = sample - mean
    return mean, centred.T @ centred / len(sample)


def color_transform(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) such that A x + b has the target's colour mean and covariance where x has the
    source's: A = Sigma_t^1/2 Sigma_s^-1/2 (symmetric roots), b = mu_t - A mu_s."""
    mean_s, cov_s = color_stats(source)
    mean_t, cov_t = color_stats(target)
    vals, vecs = np.linalg.eigh(cov_s)
    inv_root_s = (vecs / np.sqrt(np.maximum(vals, EPS))) @ vecs.T
    vals, vecs = np.linalg.eigh(cov_t)
    root_t = (vecs * np.sqrt(np.maximum(vals, 0.0))) @ vecs.T
    a = root_t @ inv_root_s
    return a, mean_t - a @ mean_s


def match_colors(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The style image (HxWx3, 0..1) recoloured to the content's colour mean and covariance."""
    a, b = color_transform(style, content)
    out = style.reshape(-1, 3) @ a.T.astype(np.float32) + b.astype(np.float32)
    return np.clip(out, 0, 1, out=out).reshape(style.shape).astype(np.float32, copy=False)
