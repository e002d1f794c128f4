"""How long a run will take here: this machine's measured speed times the run's planned work.

The speed (seconds per unit of work, per path: whole image or blocks) is what real runs took
here (speed.py keeps their record per device, number format and torch version); before the
first run, a probe of a few seconds stands in. The work comes from the same plan the engine
runs (budget.plan_run): scales, iterations, and what each scale's path costs more per pixel. So
a GIMP dialog can say "about 4 min on this machine" before anything runs, and the largest size
that fits a time limit; and each run logs its own time beside this estimate.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch

from . import budget, images, losses, speed, weights
from .device import describe, select_device, select_dtype
from .errors import TooLargeError
from .options import PRESETS, Options
from .vgg import VGG, channels_last

log = logging.getLogger(__name__)

PROBE_SIZE = (512, 384)  # big enough that fixed costs do not dominate, a few seconds on a CPU
STARTUP_S = 4.0  # starting the core and loading the network (measured: 3-4 s on the CPU)
TARGETS_SHARE = 0.7  # each scale's targets: forward passes of content and style, per pixel
# The speed is measured with the Gram loss; W2 adds an eigendecomposition per layer and
# iteration: 1.5x the time at 512 px (bench/styleloss.py), relatively more when smaller.
STYLE_LOSS_COST = {"gram": 1.0, "w2": 1.5}
# Busy: other work uses more than this share of the cores (1-minute load average), or the
# hypervisor steals more than this share of the CPU time from the machine.
BUSY_LOAD, BUSY_STEAL = 0.5, 0.1
STEAL_SAMPLE_S = 0.2

def key(device: torch.device, dtype: torch.dtype) -> str:
    return speed.device_key(describe(device, dtype))


def rates(device: torch.device, dtype: torch.dtype, options: Options | None = None,
          measure: bool = True) -> dict:
    """{path: seconds per unit of work} here: from the record of real runs, else from a probe
    (measured now, a few seconds, and recorded, unless not `measure`: then {})."""
    k = key(device, dtype)
    known = speed.speeds(k)
    if known or not measure:
        return known
    speed.record_probe(k, _measure(device, dtype, options or Options()))
    return speed.speeds(k)


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
        target = {k: losses.gram(v) for k, v in net(channels_last(x), options.style_layers).items()}

    def step():
        with autocast:
            feats = net(channels_last(x))
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


def seconds(options: Options, width: int, height: int, style_sizes=(), known=None) -> float:
    """Estimated wall time of stylize() on a width x height content with these options
    (`known`: rates() already looked up)."""
    device, dtype = _where(options)
    style_sizes = list(style_sizes) or [(width, height)]
    _, scales = budget.plan_run(options, (width, height), style_sizes, dtype,
                                budget.budget_of(options, device), device)
    return STARTUP_S + of_scales(scales, len(style_sizes), options.style_loss,
                                 known or rates(device, dtype, options))


def of_scales(scales, styles: int, style_loss: str, known: dict) -> float:
    """Seconds for these planned scales (budget.Scale) with `styles` style images, the
    process's start left out: each scale's work at its path's rate, and its targets (forward
    passes of the content and the styles) at the whole-image rate."""
    targets = sum(s.size[0] * s.size[1] * (1 + styles) for s in scales)
    work = sum(s.work * known[s.plan.path] for s in scales)
    return work * STYLE_LOSS_COST[style_loss] + known["whole"] * TARGETS_SHARE * targets


def busy() -> str | None:
    """Why a run may take longer than estimated now: other work on the CPU (load average,
    time stolen by the hypervisor), or None."""
    try:
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
    except (OSError, AttributeError):  # Windows has no load average
        load = 0.0
    if load > BUSY_LOAD:
        return f"the computer is busy (load {load:.0%} of its {os.cpu_count()} cores)"
    steal = _steal()
    if steal > BUSY_STEAL:
        return f"the computer is busy ({steal:.0%} of its CPU time taken by other machines)"
    return None


def _steal() -> float:
    """The share of CPU time the hypervisor gave to others over a short sample (Linux)."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields[:8]), fields[7] if len(fields) > 7 else 0

    try:
        total0, steal0 = sample()
        time.sleep(STEAL_SAMPLE_S)
        total1, steal1 = sample()
    except (OSError, ValueError):
        return 0.0
    return (steal1 - steal0) / (total1 - total0) if total1 > total0 else 0.0


def for_dialog(options: Options, width: int, height: int, style_sizes, limit_s: float) -> dict:
    """What a GIMP dialog shows: the device, a table per preset ({preset: [[long side, seconds],
    ...]} from 256 px up to the content's own size, growing by sqrt(2), enough to interpolate
    any size; sizes that cannot fit are left out) and, per preset, the largest size up to the
    content's own that takes at most limit_s here."""
    device, dtype = _where(options)
    known = rates(device, dtype, options)
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
                t = seconds(o.replace(size=size), width, height, style_sizes, known)
            except TooLargeError:
                break
            rows.append([size, round(t, 1)])
        table[preset] = rows
        auto[preset] = largest_within(o, width, height, limit_s, style_sizes, known)
    return {"device": describe(device, dtype).split(", torch")[0], "table": table,
            "auto_size": auto, "busy": busy()}


def largest_within(options: Options, width: int, height: int, limit_s: float,
                   style_sizes=(), known=None) -> int:
    """The largest long side, up to the content's own, whose run takes at most limit_s here;
    at least the smallest useful size."""
    known = known or rates(*_where(options), options)

    def fits(size):
        try:
            return seconds(options.replace(size=size), width, height, style_sizes,
                           known) <= limit_s
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

