"""Reading, converting, resizing and writing images. Arrays are float32 HxWx3 RGB in 0..1."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

MIN_SIDE = 16  # VGG19's four poolings need at least this much
WRITABLE = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
Image.MAX_IMAGE_PIXELS = 400_000_000  # PIL's bomb guard; beyond this no style transfer fits


def load_image(source, what: str = "image", name: str | None = None) -> Image.Image:
    """An image file (path or bytes) as upright RGB; ImageError names the file and the problem.
    `name`: what to call the file in messages (for bytes, e.g. the file the user chose)."""
    if name is None:
        name = "the given bytes" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            img = Image.open(io.BytesIO(source))
        else:
            if not Path(source).exists():
                raise ImageError(f"{what} {name} does not exist")
            if Path(source).is_dir():
                raise ImageError(f"{what} {name} is a folder, not an image")
            img = Image.open(source)
        img.load()  # decode now: truncated files fail here, not later
        img = ImageOps.exif_transpose(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{what} {name} is not an image format this tool can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{what} {name} is corrupt or unreadable ({e})") from None
    if min(img.size) < MIN_SIDE:
        raise ImageError(f"{what} {name} is {img.width}x{img.height} pixels; "
                         f"it needs at least {MIN_SIDE}x{MIN_SIDE}")
    return img


def split_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB array, alpha array or None) of any PIL mode: palette, grey, 16-bit, with alpha."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit/32-bit grey: keep the depth
        a = np.asarray(img, dtype=np.float32)
        grey = np.clip(a / (1.0 if img.mode == "F" else 65535.0), 0, 1)
        return np.repeat(grey[..., None], 3, axis=2), None
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    rgba = np.asarray(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    return (rgba[..., :3], rgba[..., 3]) if has_alpha else (rgba, None)


def to_array(img) -> np.ndarray:
    """PIL image or array -> float32 HxWx3 in 0..1 (alpha dropped: composited over white)."""
    if isinstance(img, Image.Image):
        rgb, alpha = split_alpha(img)
        if alpha is not None:
            rgb = rgb * alpha[..., None] + (1 - alpha[..., None])
        return np.ascontiguousarray(rgb, dtype=np.float32)
    a = np.asarray(img)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ImageError(f"expected an HxWx3 (or HxW) image array, got shape {a.shape}")
    if min(a.shape[:2]) < MIN_SIDE:
        raise ImageError(f"image is {a.shape[1]}x{a.shape[0]} pixels; "
                         f"it needs at least {MIN_SIDE}x{MIN_SIDE}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(np.clip(np.nan_to_num(a), 0, 1))


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None = None) -> Image.Image:
    channels = [rgb] if alpha is None else [rgb, alpha[..., None]]
    data = np.concatenate(channels, axis=2) if alpha is not None else rgb
    return Image.fromarray(np.round(np.clip(data, 0, 1) * 255).astype(np.uint8),
                           "RGBA" if alpha is not None else "RGB")


def fit_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(w, h) with the given long side and the same aspect ratio."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a (N, C, H, W) tensor to (w, h): antialiased bicubic down, bicubic up."""
    w, h = size
    if (h, w) == tuple(image.shape[-2:]):
        return image
    down = h < image.shape[-2] or w < image.shape[-1]
    return F.interpolate(image, size=(h, w), mode="bicubic", align_corners=False, antialias=down)


def resize_array(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWxC float array in 0..1 to (w, h), clamped to 0..1."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    return resize(t, size)[0].permute(1, 2, 0).clamp(0, 1).numpy()


def check_writable(path) -> Path:
    """Fail before any work if the output can't be written: unknown type or missing folder."""
    path = Path(path)
    if path.suffix.lower() not in WRITABLE:
        raise ImageError(f"output {path}: unknown image type {path.suffix!r}; "
                         f"use one of {', '.join(sorted(WRITABLE))}")
    if not path.parent.resolve().is_dir():
        raise ImageError(f"output folder {path.parent} does not exist")
    return path


def save_image(img: Image.Image, path) -> Path:
    """Write atomically: a failed or interrupted save leaves no partial file."""
    path = check_writable(path)
    if img.mode == "RGBA" and path.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
        img = img.convert("RGB")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        img.save(tmp, format=Image.registered_extensions()[path.suffix.lower()])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
