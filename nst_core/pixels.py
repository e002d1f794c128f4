"""The layer's samples <-> the engine's float RGB: the pixel codecs of the worker protocol.

The layer's own sample format (u8, u16, f32; 1-4 channels, alpha last) is converted to float32
without passing through 8 bits; f32 samples are clamped to 0..1 for the engine. Grey layers are
stylised as RGB and returned as luminance. Alpha passes through unchanged, multiplied by the
selection mask when there is one; a layer without alpha is blended with its original pixels by
the mask instead (it has no transparency to give). A style sent as samples is converted the same
way, its alpha composited over white as a style file's is.
"""

from __future__ import annotations

import numpy as np

from .protocol import Request, Style

DTYPES = {"u8": np.dtype("<u1"), "u16": np.dtype("<u2"), "f32": np.dtype("<f4")}
FULL_SCALE = {"u8": 255.0, "u16": 65535.0, "f32": 1.0}
LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # Rec. 709, as GIMP's luminance


def samples(data, fmt: str, shape: tuple) -> np.ndarray:
    return np.frombuffer(data, dtype=DTYPES[fmt]).reshape(shape)


def to_float(a: np.ndarray, fmt: str) -> np.ndarray:
    """Samples -> float32 (u8/u16 scaled to 0..1, no 8-bit step; f32 as is, NaN -> 0)."""
    if fmt == "f32":
        return np.nan_to_num(a.astype(np.float32), nan=0.0)
    return a.astype(np.float32) / np.float32(FULL_SCALE[fmt])


def encode(x: np.ndarray, fmt: str) -> np.ndarray:
    """float array -> samples of `fmt` (u8/u16 clamped to 0..1 and rounded)."""
    if fmt == "f32":
        return x.astype(DTYPES[fmt])
    return np.round(np.clip(x, 0.0, 1.0) * FULL_SCALE[fmt]).astype(DTYPES[fmt])


def split_content(request: Request):
    """(RGB float32 HxWx3 in 0..1 for the engine, raw alpha samples or None)."""
    c = request.channels
    pixels = samples(request.content, request.format, (request.height, request.width, c))
    colour_channels = 1 if c <= 2 else 3
    colour = to_float(pixels[..., :colour_channels], request.format)
    np.clip(colour, 0.0, 1.0, out=colour)
    if colour_channels == 1:
        colour = np.repeat(colour, 3, axis=2)
    alpha = pixels[..., c - 1].copy() if c in (2, 4) else None
    return np.ascontiguousarray(colour), alpha


def style_rgb(style: Style, data) -> np.ndarray:
    """A style's samples -> RGB float32 HxWx3 in 0..1 for the engine, alpha over white."""
    c = style.channels
    pixels = samples(data, style.format, (style.height, style.width, c))
    colour = np.clip(to_float(pixels[..., :1 if c <= 2 else 3], style.format), 0.0, 1.0)
    if c in (2, 4):
        alpha = np.clip(to_float(pixels[..., c - 1:], style.format), 0.0, 1.0)
        colour = colour * alpha + (1.0 - alpha)
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    return np.ascontiguousarray(colour, dtype=np.float32)


def assemble(request: Request, rgb: np.ndarray, original_rgb: np.ndarray, alpha_raw) -> bytes:
    """The result samples: the content's size and channels in the requested format."""
    fmt, c = request.result_format, request.channels
    h, w = request.height, request.width
    mask = None
    if request.mask is not None:
        mask = samples(request.mask, request.mask_format, (h, w, 1))
        mask = np.clip(to_float(mask, request.mask_format), 0.0, 1.0)
    if alpha_raw is None and mask is not None:
        # No alpha to make transparent: outside the selection keep the original pixels.
        rgb = rgb * mask + original_rgb * (1.0 - mask)
    colour = rgb @ LUMA if c <= 2 else rgb
    colour = colour.reshape(h, w, -1)
    out = np.empty((h, w, c), dtype=DTYPES[fmt])
    out[..., :colour.shape[2]] = encode(colour, fmt)
    if alpha_raw is not None:
        if mask is None and fmt == request.format:
            out[..., c - 1] = alpha_raw  # bit for bit
        else:
            alpha = to_float(alpha_raw, request.format)
            if mask is not None:
                alpha = alpha * mask[..., 0]
            out[..., c - 1] = encode(alpha, fmt)
    return out.tobytes()
