"""16-bit colour files. PIL decodes 16-bit colour PNG and TIFF to 8 bits and cannot write them,
so a result that should stay 16-bit is read and written here (pypng, tifffile)."""

from __future__ import annotations

import io

import numpy as np
import png
import tifffile

from . import images
from .errors import ImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")
FORMATS = {"png": "PNG", "jpg": "JPEG", "tif": "TIFF"}


def is_deep(data: bytes) -> bool:
    """Whether an image file's bytes hold 16 bits per sample (PNG or TIFF), from the header."""
    if data[:8] == PNG_SIGNATURE:
        return len(data) > 24 and data[24] == 16  # IHDR's bit depth
    if data[:4] in TIFF_SIGNATURES:
        try:
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                return tif.pages[0].bitspersample == 16
        except Exception:  # a broken header: decoding will name the problem
            return False
    return False


def read(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit PNG or TIFF as (RGB, alpha or None), float32 in 0..1, every bit kept."""
    try:
        if data[:8] == PNG_SIGNATURE:
            width, height, rows, info = png.Reader(bytes=data).asDirect()
            planes = info["planes"]
            a = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
            a = a.reshape(height, width, planes)
        else:
            a = tifffile.imread(io.BytesIO(data))
            a = a[..., None] if a.ndim == 2 else a
    except Exception as e:  # pypng and tifffile raise their own kinds
        raise ImageError(f"{name} is corrupt or unreadable ({e})") from None
    a = a.astype(np.float32) / float(np.iinfo(a.dtype).max if a.dtype.kind == "u" else 1)
    grey = a.shape[2] in (1, 2)
    rgb = np.repeat(a[..., :1], 3, axis=2) if grey else a[..., :3]
    alpha = a[..., -1] if a.shape[2] in (2, 4) else None
    return np.ascontiguousarray(rgb), alpha


def encode(rgb: np.ndarray, alpha: np.ndarray | None, fmt: str, deep: bool = False) -> bytes:
    """A picture (floats in 0..1) as file bytes: png, jpg or tif; 16-bit where `deep` and the
    format has it (PNG and TIFF)."""
    buf = io.BytesIO()
    if deep and fmt in ("png", "tif"):
        planes = [rgb] if alpha is None else [rgb, alpha[..., None]]
        a = np.round(np.clip(np.concatenate(planes, axis=2), 0, 1) * 65535).astype(np.uint16)
        if fmt == "png":
            return png16(a)
        tifffile.imwrite(buf, a, photometric="rgb", compression="zlib",
                         extrasamples=["unassalpha"] if a.shape[2] == 4 else None)
    else:
        img = images.to_pil(rgb, alpha)
        if fmt == "jpg":
            img.convert("RGB").save(buf, "JPEG", quality=95)
        else:
            img.save(buf, FORMATS[fmt])
    return buf.getvalue()


def png16(a: np.ndarray) -> bytes:
    """uint16 samples, HxWxC with C 1-4 (grey, grey+alpha, RGB, RGBA), as a 16-bit PNG."""
    h, w, c = a.shape
    buf = io.BytesIO()
    png.Writer(w, h, bitdepth=16, greyscale=c <= 2, alpha=c in (2, 4)).write(
        buf, a.reshape(h, w * c))
    return buf.getvalue()
