"""How long a run will take here: this machine's measured speed times the run's planned work.

The speed (seconds per pixel-iteration of the whole-image path) is measured once per device,
number format and torch version, in a few seconds, and kept in the user data folder. The work
comes from the same plan the engine runs (budget.plan_run): scales, iterations, and what the
block path costs more per pixel. So a GIMP dialog can say "about 4 min on this machine" before
anything runs, and the largest size that fits a time limit.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import torch

from . import budget, images, losses, weights
from .device import describe, select_device, select_dtype
from .errors import TooLargeError
from .options import PRESETS, Options
from .vgg import VGG

log = logging.getLogger(__name__)

CACHE_NAME = "speed.json"
PROBE_SIZE = (512, 384)  # big enough that fixed costs do not dominate, a few seconds on a CPU
STARTUP_S = 4.0  # starting the core and loading the network (measured: 3-4 s on the CPU)
TARGETS_SHARE = 0.7  # each scale's targets: forward passes of content and style, per pixel
# The speed is measured with the Gram loss; W2 adds an eigendecomposition per layer and
# iteration: 1.5x the time at 512 px (bench/styleloss.py), relatively more when smaller.
STYLE_LOSS_COST = {"gram": 1.0, "w2": 1.5}

def speed(device: torch.device, dtype: torch.dtype, options: Options | None = None) -> float:
    """Seconds per pixel-iteration of the whole-image path here, measured once and cached."""
    options = options or Options()
    key = describe(device, dtype).split(", Python")[0]
    path = weights.data_dir() / CACHE_NAME
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    value = cached.get(key)
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    value = _measure(device, dtype, options)
    cached[key] = value
    try:  # a cache: failing to write it costs a re-measurement, nothing else
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=1))
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not cache the measured speed in %s: %s", path, e)
    return value


def _measure(device: torch.device, dtype: torch.dtype, options: Options) -> float:
    """Median time of an iteration (forward, losses, backward) at PROBE_SIZE, per pixel."""
    net = VGG(dict.fromkeys(options.content_layers + options.style_layers), options.pooling,
              options.model)
    net = net.load_weights(weights.load(model=options.model)).to(
        device, memory_format=torch.channels_last)
    w, h = PROBE_SIZE
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 3, h, w, generator=generator) * 255).to(device).requires_grad_(True)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    with torch.no_grad(), autocast:
        target = {k: losses.gram(v) for k, v in net(_cl(x), options.style_layers).items()}

    def step():
        with autocast:
            feats = net(_cl(x))
        loss = sum(losses.style_loss(feats[k], target[k]) for k in options.style_layers)
        loss.backward()
        x.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up: allocator, kernels
    times = []
    for _ in range(3):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    value = float(np.median(times)) / (w * h)
    log.info("measured %.3g s per megapixel-iteration on %s", value * 1e6,
             describe(device, dtype))
    return value


def _where(options: Options) -> tuple[torch.device, torch.dtype]:
    device = select_device(options.device)
    return device, select_dtype(options.resolved("precision"), device)


def seconds(options: Options, width: int, height: int, style_sizes=(), per_pixel=None) -> float:
    """Estimated wall time of stylize() on a width x height content with these options."""
    device, dtype = _where(options)
    style_sizes = list(style_sizes) or [(width, height)]
    _, scales = budget.plan_run(options, (width, height), style_sizes, dtype,
                                budget.budget_of(options, device), device)
    per_pixel = per_pixel or speed(device, dtype, options)
    targets = sum(s.size[0] * s.size[1] * (1 + len(style_sizes)) for s in scales)
    work = sum(s.work for s in scales) * STYLE_LOSS_COST[options.style_loss]
    return STARTUP_S + per_pixel * (work + TARGETS_SHARE * targets)


def for_dialog(options: Options, width: int, height: int, style_sizes, limit_s: float) -> dict:
    """What a GIMP dialog shows: the device, a table per preset ({preset: [[long side, seconds],
    ...]} from 256 px up to the content's own size, growing by sqrt(2), enough to interpolate
    any size; sizes that cannot fit are left out) and, per preset, the largest size up to the
    content's own that takes at most limit_s here."""
    device, dtype = _where(options)
    per_pixel = speed(device, dtype, options)
    long_side = max(width, height)
    sizes, s = [], 256.0
    while s < long_side:
        sizes.append(int(s) // 16 * 16)
        s *= 2 ** 0.5
    sizes.append(long_side)
    table, auto = {}, {}
    for preset in PRESETS:
        o = options.replace(preset=preset)
        rows = []
        for size in sizes:
            try:
                t = seconds(o.replace(size=size), width, height, style_sizes, per_pixel)
            except TooLargeError:
                break
            rows.append([size, round(t, 1)])
        table[preset] = rows
        auto[preset] = largest_within(o, width, height, limit_s, style_sizes, per_pixel)
    return {"device": describe(device, dtype).split(", torch")[0], "table": table,
            "auto_size": auto}


def largest_within(options: Options, width: int, height: int, limit_s: float,
                   style_sizes=(), per_pixel=None) -> int:
    """The largest long side, up to the content's own, whose run takes at most limit_s here;
    at least the smallest useful size."""
    if per_pixel is None:
        per_pixel = speed(*_where(options), options)

    def fits(size):
        try:
            return seconds(options.replace(size=size), width, height, style_sizes,
                           per_pixel) <= limit_s
        except TooLargeError:
            return False

    long_side = max(width, height)
    smallest = min(long_side, max(images.MIN_SIDE, 256))
    if fits(long_side):
        return long_side
    lo, hi = smallest // 16, long_side // 16  # in steps of 16 px
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid * 16) else (lo, mid - 1)
    return max(lo * 16, smallest)


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)
