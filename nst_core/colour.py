"""Preserve the content's colours: the style is transferred on luminance alone, then the result's
luminance is recombined with the content's chroma (YCbCr, BT.601)."""

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
