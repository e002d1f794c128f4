"""Seconds per pixel of one forward and backward pass of the default network by region size:
the figures behind budget.PASS_COST (which block size, or the whole image, is fastest).

A pass is what one block (or the whole image) costs per iteration: VGG19 to relu5_1 with the
Gram style loss at the default layers, bf16 autocast where the CPU has it, channels_last. Also
the shallow network (to relu2_1) against the full one: what a fine scale with only the shallow
layers would cost (README: it paints worse, so the schedule does not use it).

    python bench/passcost.py                     # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import times_of  # noqa: E402  (bench/bench.py)
from nst_core import engine, losses  # noqa: E402
from nst_core.device import machine, select_dtype  # noqa: E402
from nst_core.options import Options  # noqa: E402

SIDES = ((128, 128), (256, 256), (512, 384), (768, 768), (1024, 1024), (1536, 1536),
         (2048, 2048), (3008, 2000))


def seconds_per_pixel(width: int, height: int, layers, dtype, repeats: int) -> float:
    o = Options()
    net = engine.network(o.content_layers + o.style_layers, o.pooling, o.model,
                         torch.device("cpu"))
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)) * 255
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    autocast = (contextlib.nullcontext() if dtype == torch.float32 else
                torch.autocast("cpu", dtype=dtype))
    with torch.no_grad(), autocast:
        target = {k: losses.gram(v) for k, v in net(x, layers).items()}

    def step():
        with autocast:
            feats = net(x, layers)
        sum(losses.style_loss(feats[k], target[k]) for k in layers).backward()
        x.grad = None

    return float(np.median(times_of(step, repeats))) / (width * height)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    dtype = select_dtype("auto", torch.device("cpu"))
    o = Options()
    full = o.content_layers + o.style_layers
    shallow = ("relu1_1", "relu2_1")
    print(f"{machine()}\n\n| region | full network, µs per pixel | relative to 512x384 | "
          f"to relu2_1, µs per pixel | shallow / full |\n|---|---|---|---|---|")
    rows = []
    for w, h in SIDES:
        repeats = a.repeats if w * h <= 1 << 20 else 1
        f = seconds_per_pixel(w, h, full, dtype, repeats)
        s = seconds_per_pixel(w, h, shallow, dtype, repeats)
        rows.append((w, h, f, s))
    probe = next(f for w, h, f, _ in rows if (w, h) == (512, 384))
    for w, h, f, s in rows:
        print(f"| {w}x{h} | {f * 1e6:.2f} | {f / probe:.2f} | {s * 1e6:.2f} | {s / f:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
