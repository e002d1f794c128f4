"""Image files <-> the worker protocol's samples, for the web page: an uploaded content image
becomes raw samples at its own depth (8-bit, 16-bit or float), and a result's samples become a
PNG file (16-bit when the samples are), without an 8-bit step in between."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .. import depth, images, pixels
from ..errors import ImageError

PIL_MODES_U8 = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclass
class Samples:
    """Interleaved samples as the protocol sends them (little-endian)."""

    width: int
    height: int
    channels: int
    format: str  # "u8", "u16" or "f32"
    data: bytes

    @property
    def header(self) -> dict:
        return {"width": self.width, "height": self.height, "channels": self.channels,
                "format": self.format}


def _deep_colour(data: bytes, name: str, img: Image.Image) -> np.ndarray | None:
    """A 16-bit colour (or grey+alpha) PNG or TIFF as uint16 HxWxC through nst_core.depth (PIL
    reads those as 8-bit); None for every other file."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F") or not depth.is_deep(data):
        return None  # PIL keeps 16-bit grey itself
    rgb, alpha = depth.read(data, name)
    planes = [rgb] if alpha is None else [rgb, alpha[..., None]]
    return pixels.encode(np.concatenate(planes, axis=2), "u16")


def decode_content(data: bytes, name: str, long_side: int | None) -> Samples:
    """An uploaded content image, checked (images.load_image: header, size, decodability) and
    scaled to the run's long side, as samples at its own depth."""
    img = images.load_image(data, what="content image", name=name, max_side=long_side)
    a16 = _deep_colour(data, f"content image {name}", img)
    if a16 is not None:
        a, fmt = a16, "u16"
    elif img.mode.startswith("I;16") or img.mode == "I":  # 16-bit grey (I: after a reduce)
        a, fmt = np.clip(np.asarray(img, dtype=np.int64), 0, 65535).astype(np.uint16), "u16"
    elif img.mode == "F":
        a, fmt = np.asarray(img, dtype=np.float32), "f32"
    else:
        if img.mode not in ("L", "LA", "RGB", "RGBA"):
            img = img.convert("RGBA" if images._has_alpha(img) else "RGB")
        a, fmt = _u8_array(img), "u8"
    del img  # the array is a copy
    if a.ndim == 2:
        a = a[..., None]
    h, w, c = a.shape
    if long_side is not None and max(w, h) != long_side:
        size = images.fit_size(w, h, long_side)
        if min(size) < images.MIN_SIDE:
            raise ImageError(f"content image {name} is {w}x{h}: at {long_side} px its short "
                             f"side would be under {images.MIN_SIDE} px")
        x = np.clip(pixels.to_float(a, fmt), 0, 1)
        a = pixels.encode(images.resize_array(x, size), fmt)
        h, w = a.shape[:2]
    a = np.ascontiguousarray(a.astype(pixels.DTYPES[fmt], copy=False))
    return Samples(w, h, c, fmt, a.tobytes())


def _u8_array(img: Image.Image) -> np.ndarray:
    """An 8-bit picture as uint8 HxWxC, strip by strip: np.asarray(img) holds PIL's tobytes()
    chunks, their join and its own copy at once (900 MB more at 100 MP; this needs 300)."""
    a = np.empty((img.height, img.width, len(img.getbands())), np.uint8)
    for y in range(0, img.height, 256):
        strip = img.crop((0, y, img.width, min(y + 256, img.height)))
        a[y:y + strip.height] = np.asarray(strip).reshape(strip.height, img.width, -1)
    return a


def to_png(samples: Samples) -> bytes:
    """A PNG of protocol samples: 8-bit for u8, else 16-bit (f32 clamped to 0..1)."""
    a = pixels.samples(samples.data, samples.format,
                       (samples.height, samples.width, samples.channels))
    if samples.format == "u8":
        buf = io.BytesIO()
        img = Image.fromarray(a[..., 0] if samples.channels == 1 else a,
                              PIL_MODES_U8[samples.channels])
        img.save(buf, "PNG", compress_level=6)
        return buf.getvalue()
    if samples.format == "f32":
        a = pixels.encode(np.clip(pixels.to_float(a, "f32"), 0, 1), "u16")
    return depth.png16(a)


def rgb_png(width: int, height: int, data: bytes) -> bytes:
    """A live image (RGB u8 samples) as a quick PNG for the page."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), data).save(buf, "PNG", compress_level=1)
    return buf.getvalue()
