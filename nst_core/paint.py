"""One picture pipeline for the front ends that hold image files (the CLI, `nst batch`): the
content decoded at the run's size (16-bit files at 16 bits where the front end keeps them),
the styles no larger than the run uses them, the painting, and the content's alpha given back
at the result's size. Colour (colors=luminance) is the engine's, for every picture it hands out.
The worker reads the layer's samples instead (pixels.py), with the same style sizing
(Options.style_side)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import depth, images
from .options import Options


@dataclass
class Picture:
    rgb: np.ndarray  # HxWx3 float32 in 0..1
    alpha: np.ndarray | None  # HxW float32 in 0..1, or None
    long_side: int  # of the decoded picture, which sizes the styles
    deep: bool = False  # from a 16-bit file (then written back at 16 bits where the format can)


def read_content(source, options: Options, what: str = "content image", name: str | None = None,
                 keep_depth: bool = False) -> Picture:
    """source: a path or a file's bytes; keep_depth (bytes only): a 16-bit PNG or TIFF is read
    with every bit."""
    img = images.load_image(source, what=what, name=name, max_side=options.size)
    deep = keep_depth and isinstance(source, bytes) and depth.is_deep(source)
    rgb, alpha = depth.read(source, name or what) if deep else images.split_alpha(img)
    return Picture(rgb, alpha, max(img.size), deep)


def read_styles(sources, options: Options, content: Picture) -> list:
    """Each style (path or bytes) decoded no larger than the run uses it (style_scale)."""
    side = options.style_side(content.long_side)
    return [images.load_image(s, what="style image", max_side=side) for s in sources]


def paint(content: Picture, styles: list, options: Options, **engine) -> Picture:
    """engine.stylize with `engine`'s keywords (progress, should_stop, on_image, image_every,
    start, hold); the result with the content's alpha at its size."""
    from .engine import stylize  # torch loads here

    result = stylize(content.rgb, styles, options, **engine)
    alpha = content.alpha
    if alpha is not None:
        alpha = images.resize_array(alpha[..., None], result.shape[1::-1])[..., 0]
    return Picture(result, alpha, max(result.shape[:2]), content.deep)
