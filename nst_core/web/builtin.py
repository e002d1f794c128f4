"""The page's built-in styles: the brush-stroke picture `nst demo` paints (nst_core/demo.py), in
three palettes. Made on first use and kept as PNG bytes; nothing is bundled."""

from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image

# id -> (label, channel order applied to the demo's night-sky picture, demo seed)
STYLES = {
    "swirls-night": ("Night swirls", (0, 1, 2), 2),
    "swirls-ember": ("Ember swirls", (2, 1, 0), 3),
    "swirls-moss": ("Moss swirls", (1, 2, 0), 4),
}
SIZE = 512  # as `nst demo` paints it: styles are never scaled up, so not smaller
_cache: dict[str, bytes] = {}
_lock = threading.Lock()


def listing() -> list[dict]:
    return [{"id": key, "name": label} for key, (label, _, _) in STYLES.items()]


def png(style_id: str) -> bytes:
    """The style picture's PNG bytes; KeyError for an unknown id."""
    label, order, seed = STYLES[style_id]
    with _lock:
        if style_id not in _cache:
            from ..demo import swirls

            rgb = np.asarray(swirls(SIZE, SIZE, seed=seed))[..., list(order)]
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "PNG")
            _cache[style_id] = buf.getvalue()
        return _cache[style_id]
