"""Reading, converting, resizing and writing images. Arrays are float32 HxWx3 RGB in 0..1."""

from __future__ import annotations

import errno
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import files
from .device import available_memory
from .errors import ImageError, TooLargeError

if TYPE_CHECKING:  # torch loads only for resizing: checking an image's file does not need it
    import torch

MIN_SIDE = 16  # VGG19's four poolings need at least this much
WRITABLE = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
MAX_PIXELS = 400_000_000  # beyond this no style transfer fits anywhere
# PIL's own bomb guard warns, or raises without the size: load_image checks the declared size
# itself, from the header, before any decoding.
Image.MAX_IMAGE_PIXELS = None
# The float copies made after decoding (RGBA and RGB in float32, the engine's input), per pixel.
ARRAY_BYTES_PER_PIXEL = 48
GB = 1024 ** 3


def load_image(source, what: str = "image", name: str | None = None,
               max_side: int | None = None) -> Image.Image:
    """An image file (path or bytes) as upright RGB; ImageError names the file and the problem.

    `name`: what to call the file in messages (for bytes, e.g. the file the user chose).
    `max_side`: the longest side the run will use. Bigger images are reduced while decoding
    (JPEG's draft mode, then PIL's box reduce) to no less than twice that, so memory follows what
    the run needs, not the file. The declared size is checked before decoding: TooLargeError names
    it when the decode cannot fit in the memory available.
    """
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
            img = Image.open(source)  # reads the header only
        if img.width * img.height > MAX_PIXELS:
            raise _too_many_pixels(what, name, img.size)
        declared, target = img.size, _target_size(img.size, max_side)
        if target is not None:
            img.draft(img.mode, target)  # JPEG: decode at 1/2, 1/4 or 1/8 where that suffices
        _check_decode_fits(img, declared, target, what, name)
        img.load()  # decode now: truncated files fail here, not later
        img = _reduce(img, target)
        ImageOps.exif_transpose(img, in_place=True)  # without a copy: 400 MB at 100 MP
    except (ImageError, TooLargeError):
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{what} {name} is not an image format this tool can read") from None
    except MemoryError:
        raise TooLargeError(f"{what} {name} is too large to decode in the memory available; "
                            "use a smaller image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{what} {name} is corrupt or unreadable ({e})") from None
    if min(img.size) < MIN_SIDE:
        raise ImageError(f"{what} {name} is {img.width}x{img.height} pixels; "
                         f"it needs at least {MIN_SIDE}x{MIN_SIDE}")
    return img


def _too_many_pixels(what: str, name: str, size: tuple[int, int]) -> TooLargeError:
    return TooLargeError(f"{what} {name} declares {size[0]}x{size[1]} pixels and is over the "
                         f"{MAX_PIXELS // 1_000_000} MP this tool reads; use a smaller image")


def _target_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int] | None:
    """The least (w, h) to keep of an image of this size for a run with this long side, or None
    for all of it: twice what the run needs (short side at least MIN_SIDE), so that the engine's
    antialiased resize, not the coarse reduction, sets the final pixels (straight to the size,
    box reduction left visible aliasing)."""
    w, h = size
    if max_side is None or min(w, h) < MIN_SIDE:
        return None
    scale = 2 * max(max_side / max(w, h), MIN_SIDE / min(w, h))
    return None if scale >= 1 else (math.ceil(w * scale), math.ceil(h * scale))


def _factor(size: tuple[int, int], target: tuple[int, int] | None) -> int:
    """The whole factor by which an image of this size can shrink and still cover `target`."""
    return 1 if target is None else max(1, min(size[0] // target[0], size[1] // target[1]))


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def _reduce(img: Image.Image, target: tuple[int, int] | None) -> Image.Image:
    """Box-reduce to no less than `target`, keeping 16-bit depth and transparency."""
    factor = _factor(img.size, target)
    if factor < 2:
        return img
    if img.mode.startswith("I;16"):
        img = img.convert("I")  # reduce() has no 16-bit mode; 32-bit integers keep every level
    elif img.mode in ("P", "PA", "1"):  # palette indices and bits cannot be averaged
        img = img.convert("RGBA" if _has_alpha(img) else "RGB")
    return img.reduce(factor)


def decode_bytes(size: tuple[int, int], mode: str, factor: int = 1) -> int:
    """Memory to decode an image (size: as decoded, after JPEG's draft) and make arrays of it:
    PIL's pixels (RGB takes 4 bytes), a converted copy where reduce() needs one, and the float
    arrays of the reduced image."""
    w, h = size
    per_pixel = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    converted = w * h * 4 if factor >= 2 and per_pixel < 4 else 0
    return w * h * per_pixel + converted + (w // factor) * (h // factor) * ARRAY_BYTES_PER_PIXEL


def _check_decode_fits(img: Image.Image, declared, target, what: str, name: str) -> None:
    need = decode_bytes(img.size, img.mode, _factor(img.size, target))
    free = available_memory("cpu")
    if need > free:
        raise TooLargeError(
            f"{what} {name} is {declared[0]}x{declared[1]} pixels; decoding it needs about "
            f"{need / GB:.1f} GB of memory but {free / GB:.1f} GB is available. Use a smaller "
            "image or a smaller output size, or close other programs")


def split_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB array, alpha array or None) of any PIL mode: palette, grey, 16-bit, with alpha."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit/32-bit grey: keep the depth
        a = np.asarray(img, dtype=np.float32)
        grey = np.clip(a / (1.0 if img.mode == "F" else 65535.0), 0, 1)
        return np.repeat(grey[..., None], 3, axis=2), None
    has_alpha = _has_alpha(img)
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
    import torch.nn.functional as F

    w, h = size
    if (h, w) == tuple(image.shape[-2:]):
        return image
    down = h < image.shape[-2] or w < image.shape[-1]
    return F.interpolate(image, size=(h, w), mode="bicubic", align_corners=False, antialias=down)


def resize_array(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWxC float array in 0..1 to (w, h), clamped to 0..1."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    return resize(t, size)[0].permute(1, 2, 0).clamp(0, 1).numpy()


def check_writable(path, inputs=()) -> Path:
    """Fail before any work where the output cannot be written or would replace an input.

    inputs: (what, path) pairs, e.g. ("content image", "photo.jpg"). Checked: the type, a folder
    at the path, a missing folder, the name's length, and (by creating and removing the
    temporary file the save will use) that the folder takes new files.
    """
    path = Path(path)
    folder = path.parent
    longest = name_max(folder)
    if len(os.fsencode(path.name)) > longest:
        raise ImageError(f"output file name {path.name[:40]}... is too long: this folder takes "
                         f"names of at most {longest} bytes; choose a shorter name")
    if path.is_dir():
        raise ImageError(f"output {path} is a folder; give a file name such as "
                         f"{path / 'result.png'}")
    if path.suffix.lower() not in WRITABLE:
        raise ImageError(f"output {path}: unknown image type {path.suffix!r}; "
                         f"use one of {', '.join(sorted(WRITABLE))}")
    if not folder.is_dir():
        problem = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ImageError(f"output folder {folder} {problem}")
    for what, source in inputs:
        if same_file(path, source):
            raise ImageError(f"output {path} is the {what} {source}: writing there would "
                             "replace your original. Choose another output name")
    try:
        fd, tmp = files.create_temp(path)
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    os.unlink(tmp)
    return path


def same_file(a, b) -> bool:
    """Whether two paths name the same file: the same path, a link to it, or a hard link."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return Path(a).resolve() == Path(b).resolve()


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, that folder takes."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer
        return 255


_REASONS = {
    errno.ENOSPC: "the disk is full; free some space and try again",
    errno.EDQUOT: "the disk quota is used up; free some space and try again",
    errno.EFBIG: "the file would be larger than this process may write (file size limit)",
    errno.EACCES: "permission denied: the folder is not writable",
    errno.EPERM: "permission denied: the folder is not writable",
    errno.EROFS: "the folder is on a read-only file system",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EISDIR: "it is a folder",
    errno.EIO: "input/output error: the disk may be failing",
}


def write_error(path, e: OSError) -> ImageError:
    """One message for a write that failed: the file and the reason in plain words."""
    reason = _REASONS.get(e.errno) or e.strerror or str(e)
    return ImageError(f"could not write {path}: {reason}")


def save_image(img: Image.Image, path) -> Path:
    """Write atomically: a new file in the same folder, renamed over `path` once complete. A
    failed or interrupted save leaves no temporary file and whatever was at `path` untouched."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE:
        raise ImageError(f"output {path}: unknown image type {suffix!r}; "
                         f"use one of {', '.join(sorted(WRITABLE))}")
    if img.mode == "RGBA" and suffix in (".jpg", ".jpeg", ".bmp"):
        img = img.convert("RGB")
    return write_atomic(path, lambda f: img.save(f, format=Image.registered_extensions()[suffix]))


def write_atomic(path, write) -> Path:
    """files.write_atomic, its failure as one ImageError naming the file and the reason."""
    try:
        return files.write_atomic(path, write)
    except OSError as e:
        raise write_error(path, e) from None
