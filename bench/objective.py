"""The full objective of a finished picture: every layer, scored at the picture's own size.

What the issue tracker calls "the full objective": the engine's objective (content at every
content layer, style at every style layer, TV), with the style image at the size the run uses
(style_size at the output's long side), on the saved 8-bit result, in fp32, block by block where
the picture is large (exact: blockwise.py). Used by bench/fullres.py and bench/schedule.py to
compare schedules by what they paint, not by what each scale optimised.

    python bench/objective.py RESULT CONTENT STYLE [--preset standard]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst_core import blockwise, engine, images, losses  # noqa: E402
from nst_core.options import Options  # noqa: E402

CORE = 1024  # blocks of this core above it: a 24 MP fp32 forward would need ~20 GB at once


def full_objective(result: np.ndarray, content: np.ndarray, styles: list[np.ndarray],
                   options: Options | None = None) -> dict:
    """{"total", "content", "tv", "style", "relu1_1", ...}: the weighted terms of `result`
    (HxWx3 in 0..1) against `content` (resized to it) and `styles` (sized as the run sizes
    them, blended as the run blends them)."""
    o = options or Options()
    h, w = result.shape[:2]
    net = engine.network(o.content_layers + o.style_layers, o.pooling, o.model,
                         torch.device("cpu"))
    kind = losses.STYLE_LOSSES[o.style_loss]
    margin = blockwise.margin_for(o.content_layers + o.style_layers)
    fp32 = contextlib.nullcontext

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[
            None] * 255.0

    def core_of(t):
        return None if max(t.shape[-2:]) <= CORE else CORE

    x = tensor(result)
    c = tensor(images.resize_array(content, (w, h)))
    mine = blockwise.content_targets(net, x, o.content_layers, fp32, core_of(x), margin)
    theirs = blockwise.content_targets(net, c, o.content_layers, fp32, core_of(c), margin)
    out = {"content": o.resolved("content_weight") * sum(
        float(losses.content_loss(mine[k], theirs[k])) for k in o.content_layers)}
    del mine, theirs, c
    stats = blockwise.style_stats(net, x, o.style_layers, fp32, core_of(x), margin, kind)
    blend = np.asarray(o.style_blend or [1.0] * len(styles), dtype=np.float64)
    target = {k: None for k in o.style_layers}
    for b, style in zip(blend / blend.sum(), styles):
        sw, sh = engine.style_size(style.shape[1], style.shape[0], max(w, h), o.style_scale,
                                   o.style_upsample)
        s = tensor(images.resize_array(style, (sw, sh)))
        for k, st in blockwise.style_stats(net, s, o.style_layers, fp32, core_of(s), margin,
                                           kind).items():
            st = tuple(float(b) * t for t in st)
            target[k] = st if target[k] is None else tuple(map(torch.add, target[k], st))
    weight = o.resolved("style_weight") * o.strength
    for k, lw in zip(o.style_layers, o.resolved_style_layer_weights()):
        out[k] = weight * lw * float(kind.loss(stats[k], kind.target(target[k])))
    out["style"] = sum(out[k] for k in o.style_layers)
    out["tv"] = o.resolved("tv_weight") * float(losses.tv_loss(x))
    out["total"] = out["content"] + out["style"] + out["tv"]
    return out


def load(path) -> np.ndarray:
    """A picture file as an HxWx3 array in 0..1, as the scores read it."""
    return images.to_array(images.load_image(path))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result")
    p.add_argument("content")
    p.add_argument("style", nargs="+")
    p.add_argument("--preset", default="standard")
    a = p.parse_args()
    terms = full_objective(load(a.result), load(a.content), [load(s) for s in a.style],
                           Options(preset=a.preset))
    print("  ".join(f"{k} {v:.4g}" for k, v in terms.items()))


if __name__ == "__main__":
    main()
