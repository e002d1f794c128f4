"""How much memory a run may use, and how each scale fits in it.

A scale runs on the whole image when it fits the budget; otherwise block by block
(blockwise.py) with the largest block that fits. The optimiser's memory is chosen per scale too:
L-BFGS keeps 2 image-sized vectors per history pair, and a history longer than the scale's
iterations is never filled, so it gets min(100, iterations) pairs; where even a short history
does not fit beside a useful block, Adam (two image-sized vectors) takes that scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import images, networks
from .device import available_memory
from .errors import ImageError, TooLargeError
from .networks import POOL_GRID as STRIDE
from .networks import margin_for

GB = 2**30
LBFGS_HISTORY = 100  # jcjohnson/neural-style's default
MIN_HISTORY = 5
# Measured with resource.getrusage on the CPU (AMD EPYC, torch 2.13): VGG19 to relu5_1 costs per
# pixel it sees about 1.2 KB (bf16) / 1.8 KB (fp32) for a plain forward and backward pass, and
# 0.47 / 0.78 KB for a forward pass without autograd. The objective's own tensors (the gradient
# seeds of each layer, the Gram backward) add about a quarter: a 24 MP run planned with 1.3 KB
# peaked 3% over its budget.
BACKWARD_BYTES = {torch.float32: 2400, torch.bfloat16: 1600, torch.float16: 1600}
FORWARD_BYTES = {torch.float32: 850, torch.bfloat16: 520, torch.float16: 520}
FIXED_BYTES = 400 << 20  # the interpreter, torch, the network's weights (measured: ~290 MB)
IMAGE_BYTES = 12  # one fp32 RGB image, per pixel
# Image-sized buffers of a scale besides the optimiser's: the image, its gradient, the best image
# so far, the content at this scale and the upsampled image it starts from.
SCALE_IMAGES = 5
# The optimiser's own image-sized buffers: torch's L-BFGS keeps the flat gradient, the previous
# one, the direction and its work vector (plus 2 per history pair); Adam its two moments and
# two temporaries.
LBFGS_BUFFERS, ADAM_BUFFERS = 5, 4
# Plans fill this share of the budget: the allocator's slack and short-lived copies take the
# rest (a 24 MP run in 6 GB planned to 99% peaked at 101%).
PLAN_SHARE = 0.94
MIN_CORE = 128
# Per final-size pixel, for the whole run: the content as an array and as a tensor.
RUN_BYTES_PER_PIXEL = 2 * IMAGE_BYTES


@dataclass(frozen=True)
class Plan:
    """How one scale runs: core None = the whole image at once, else blocks of core x core px."""

    core: int | None
    optimizer: str  # "lbfgs" or "adam"
    history: int  # L-BFGS pairs (0 for Adam)
    need: int  # bytes, the process included

    @property
    def path(self) -> str:
        """"whole" (the image at once) or "blocks": what speed.py keeps a record of each."""
        return "whole" if self.core is None else "blocks"

    def cost_factor(self, width: int, height: int, margin: int) -> float:
        """Work per pixel-iteration relative to the probe's whole-image pass (PASS_COST): the
        block path runs the net forward twice (1.5x) and over the margins too."""
        if self.core is None:
            return pass_cost(width * height)
        return block_cost(width, height, self.core, margin)


def default_budget(device: torch.device) -> int:
    """A safe share of what is free when the run starts, plus what the process already holds."""
    if device.type == "cuda":
        return int(0.9 * available_memory(device)) + torch.cuda.memory_allocated(device)
    import psutil

    return int(0.8 * available_memory(device)) + psutil.Process().memory_info().rss


def content_target_bytes(layers) -> int:
    """Per pixel: the content features kept as targets (fp32), e.g. relu4_2: 512 / 8^2 x 4."""
    return sum(networks.channels(k) * 4 // networks.layer_stride(k) ** 2 for k in layers)


def state_bytes(optimizer: str, history: int, content_layers) -> int:
    """Per pixel of a scale, whatever the path."""
    buffers = LBFGS_BUFFERS + 2 * history if optimizer == "lbfgs" else ADAM_BUFFERS
    return IMAGE_BYTES * (SCALE_IMAGES + buffers) + content_target_bytes(content_layers)


def largest_core(room: int, per_pixel: int, margin: int, width: int, height: int) -> int:
    """The largest block core (multiple of 16) whose region's activations fit in `room` bytes;
    0 where not even the smallest does."""
    if room <= 0:
        return 0
    side = int((room / per_pixel) ** 0.5) - 2 * margin
    core = side // STRIDE * STRIDE
    return min(core, -(-max(width, height) // STRIDE) * STRIDE) if core >= STRIDE else 0


def plan_scale(width: int, height: int, iterations: int, dtype: torch.dtype, budget: int,
               fixed: int, optimizer: str, content_layers, margin: int,
               force_core: int | None = None, strict: bool = False) -> Plan | None:
    """How a scale of width x height fits in `budget` bytes (`fixed` of it already taken);
    None where it cannot.

    A tight budget costs time, never quality: the optimiser keeps its longest useful history
    and the scale goes into blocks, smaller ones if need be; the history shortens only where
    not even the smallest block fits beside it, and L-BFGS gives way to Adam (unless `strict`)
    only where no history does. Among the paths that fit, the fastest (by PASS_COST) is taken,
    not the largest."""
    budget = int(budget * PLAN_SHARE)
    px = width * height
    act = BACKWARD_BYTES[dtype]
    choices = [("adam", 0)]
    if optimizer == "lbfgs":
        top = max(MIN_HISTORY, min(LBFGS_HISTORY, iterations))
        histories = sorted({top, *(h for h in (50, 20, 10, MIN_HISTORY) if h < top)},
                           reverse=True)
        choices = [("lbfgs", h) for h in histories] + ([] if strict else choices)
    for opt, history in choices:
        state = fixed + px * state_bytes(opt, history, content_layers)
        paths = []  # (cost per pixel-iteration, core or None for the whole image)
        if force_core is None and state + px * act <= budget:
            paths.append((pass_cost(px), None))
        largest = largest_core(budget - state, act, margin, width, height)
        if force_core is not None:
            largest = min(largest, force_core)
            paths += [(0.0, largest)] if largest >= min(MIN_CORE, force_core) else []
        else:
            paths += [(block_cost(width, height, core, margin), core)
                      for core in range(MIN_CORE, largest + 1, STRIDE)]
        if paths:  # the cheapest; on a tie the whole image, then the larger block
            _, core = min(paths, key=lambda p: (p[0], -(p[1] or 1 << 30)))
            need = state + act * (px if core is None else (core + 2 * margin) ** 2)
            return Plan(core, opt, history, need)
    return None


# Seconds per pixel of one forward and backward pass over a region of this many pixels,
# relative to the 512x384 probe's (bench/passcost.py, AMD EPYC, 2 threads, bf16): small regions
# pay per-call overheads, big ones memory traffic. Linear in log(pixels) between points.
PASS_COST = ((128 * 128, 1.16), (256 * 256, 1.05), (512 * 384, 1.0), (768 * 768, 1.15),
             (1536 * 1536, 1.2), (2048 * 2048, 1.27), (3008 * 2000, 1.39))


def pass_cost(pixels: int) -> float:
    """PASS_COST at `pixels`, interpolated in log(pixels), constant beyond its ends."""
    points = PASS_COST
    if pixels <= points[0][0]:
        return points[0][1]
    for (p0, c0), (p1, c1) in zip(points, points[1:]):
        if pixels <= p1:
            t = math.log(pixels / p0) / math.log(p1 / p0)
            return c0 + t * (c1 - c0)
    return points[-1][1]


def _seen(length: int, core: int, margin: int) -> tuple[int, int]:
    """(pixels the blocks see along one side, blocks along it)."""
    starts = range(0, length, core)
    return sum(min(length, x + core + margin) - max(0, x - margin) for x in starts), len(starts)


def block_cost(width: int, height: int, core: int, margin: int) -> float:
    """Cost per pixel-iteration of the block path, relative to the probe's whole-image pass:
    two forward passes and one backward (1.5x), over the cores and their margins, each block
    at the cost per pixel of its region's size."""
    sx, nx = _seen(width, core, margin)
    sy, ny = _seen(height, core, margin)
    return 1.5 * sx * sy / (width * height) * pass_cost((sx // nx) * (sy // ny))


def largest_fitting(width: int, height: int, budget: int, fixed: int, dtype: torch.dtype,
                    content_layers, margin: int) -> int:
    """About the largest long side (multiple of 16) of this aspect ratio that fits at all."""
    per_px = state_bytes("adam", 0, content_layers)
    room = budget - fixed - BACKWARD_BYTES[dtype] * (MIN_CORE + 2 * margin) ** 2
    if room <= 0:
        return 0
    px = room / per_px
    aspect = max(width, height) / min(width, height)
    return int((px * aspect) ** 0.5) // STRIDE * STRIDE


def too_large(width: int, height: int, budget: int, device: torch.device, largest: int,
              asked: bool) -> TooLargeError:
    where = "the --max-memory budget" if asked else f"what is free on {device.type}"
    hint = (f"choose a size of at most about {largest} px (long side)" if largest >= STRIDE else
            "free some memory or raise --max-memory")
    return TooLargeError(f"a {width}x{height} result does not fit in {budget / GB:.1f} GB "
                         f"({where}), even block by block; {hint}")


@dataclass(frozen=True)
class Scale:
    size: tuple[int, int]  # (w, h)
    iterations: int
    plan: Plan
    work: float  # pixel-iterations, times what its path costs per pixel (Plan.cost_factor)


def budget_of(options, device: torch.device) -> int:
    """The run's budget in bytes: --max-memory, else a safe share of what is free."""
    if options.max_memory is not None:
        return int(options.max_memory * GB)
    return default_budget(device)


def plan_run(options, content_size, style_sizes, dtype: torch.dtype, budget: int,
             device: torch.device, name_largest: bool = True) -> tuple[int, list[Scale]]:
    """(block margin, the scales) of a run: sizes, iterations and each scale's plan, decided
    before any work. A size that cannot fit is refused here, naming one that does."""
    w, h = content_size
    sizes = []
    for long_side, iterations in options.schedule(max(w, h)):
        size = images.fit_size(w, h, long_side)
        if min(size) >= images.MIN_SIDE:  # too small for VGG's poolings: skip that scale
            sizes.append((size, iterations))
    if not sizes:
        fw, fh = images.fit_size(w, h, options.size or max(w, h))
        raise ImageError(f"the output would be {fw}x{fh} pixels; each side needs at least "
                         f"{images.MIN_SIDE} (choose a larger size)")
    margin = margin_for(options.content_layers + options.style_layers)
    fixed = FIXED_BYTES + RUN_BYTES_PER_PIXEL * (w * h + sum(sw * sh for sw, sh in style_sizes))
    scales = []
    preset = options.preset_values
    strict = options.optimizer is not None  # the user's choice of optimiser is kept
    for n, ((sw, sh), iterations) in enumerate(sizes):
        optimizer = options.scale_optimizer(n > 0 and max(sw, sh) > preset.detail_size)
        plan = plan_scale(sw, sh, iterations, dtype, budget, fixed, optimizer,
                          options.content_layers, margin, force_core=options.block_size,
                          strict=strict)
        if plan is None:
            fw, fh = sizes[-1][0]
            largest = largest_fitting(fw, fh, budget, fixed, dtype, options.content_layers,
                                      margin) if name_largest else 0
            while largest >= STRIDE and not _plans(options.replace(size=largest), content_size,
                                                   style_sizes, dtype, budget, device):
                largest = int(largest * 0.97) // STRIDE * STRIDE  # name a size that does plan
            raise too_large(fw, fh, budget, device, largest, options.max_memory is not None)
        work = sw * sh * iterations * plan.cost_factor(sw, sh, margin)
        scales.append(Scale((sw, sh), iterations, plan, work))
    return margin, scales


def _plans(options, content_size, style_sizes, dtype, budget, device) -> bool:
    try:
        plan_run(options, content_size, style_sizes, dtype, budget, device, name_largest=False)
        return True
    except (TooLargeError, ImageError):
        return False
