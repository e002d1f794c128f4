"""Gatys et al. style transfer: one call, `stylize()`, coarse to fine.

The image is optimised in RGB 0..255 (the weights' own scale), at a series of sizes growing by
sqrt(2); each scale starts from the previous result, upsampled. Style images are resized with the
output but never upsampled. Progress is reported every iteration, and `should_stop` is polled as
often: stopping returns the best image so far.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from . import blockwise, budget, estimate, images, losses, speed, weights
from .colors import luminance, match_colors, preserve_colors
from .device import describe, hold_to_budget, release_memory, select_device, select_dtype
from .errors import NSTError, OptionError, TooLargeError
from .options import Options
from .vgg import VGG

log = logging.getLogger(__name__)

# Keeping pixels in 0..255 by clamping after each step breaks L-BFGS's curvature pairs (the loss
# climbs); a smooth penalty on the excess keeps the problem smooth and the image in range.
BLOW_UP = 1e6  # a step that multiplies the best loss by this much has diverged
RANGE_WEIGHT = 1.0  # 0.1 and 1 scored alike at 256 px; 1 keeps a margin
# Ruder et al.'s temporal weight, on our sums in 0..255 units: chosen with bench/flicker.py.
HOLD_WEIGHT = 1e-2
MAX_STEP = 64.0  # the most one L-BFGS step may move a pixel, in 0..255 units (_bound_step)
FIRST_STEP = 8.0  # and the first step of a scale moves the most-moved pixel this far (_bound_step)
OOM_RETRIES = 2  # out of GPU memory: halve the budget (smaller blocks) this often, then the CPU


@dataclass
class Progress:
    phase: str  # "loading", "stylizing" or "finishing"
    scale: int  # 1-based
    scales: int
    iteration: int  # within the scale
    iterations: int  # of the scale
    step: int  # iterations done over all scales
    steps: int
    fraction: float  # of the whole job, by work done (pixels x iterations)
    loss: float | None
    eta_s: float | None
    elapsed_s: float


def stylize(content, styles, options: Options | None = None, *, progress=None, should_stop=None,
            on_image=None, image_every: int = 0, start=None, hold=None):
    """Paint `content` in the style of `styles`.

    content: a PIL image (the result is then a PIL RGB image) or an HxWx3 array in 0..1 (the
    result is then a float32 array). styles: one or more PIL images or arrays. The result has the
    schedule's final size: the long side `options.size`, or the content's size if size is None.
    progress(Progress) is called every iteration; should_stop() -> True ends early with the best
    image so far; on_image(array, step) receives the current image every `image_every` steps.
    """
    options = options or Options()
    if isinstance(styles, (Image.Image, np.ndarray)):
        styles = [styles]
    if not styles:
        raise OptionError("at least one style image is needed")
    if options.style_blend is not None and len(options.style_blend) != len(styles):
        raise OptionError(f"style_blend has {len(options.style_blend)} weights for "
                          f"{len(styles)} style images")
    as_pil = isinstance(content, Image.Image)
    content_rgb = images.to_array(content)
    style_rgbs = [images.to_array(s) for s in styles]
    device = select_device(options.device)
    run_content, run_styles = content_rgb, style_rgbs
    if options.colors == "luminance":  # Gatys et al. 2016: luminance only, colour put back
        run_content, run_styles = luminance(content_rgb), [luminance(s) for s in style_rgbs]
        # The run paints in luminance: a start picture joins it there, and every picture it
        # hands out (step images, live previews) gets the content's colours back, as the result.
        start = None if start is None else luminance(start)
        in_colour = _ContentColours(content_rgb)
        if on_image is not None:
            hand_out = on_image

            def on_image(rgb, step):
                hand_out(in_colour(rgb), step)
    elif options.colors == "histogram":  # Gatys et al. 2016: the styles in the content's colours
        run_styles = [match_colors(s, content_rgb) for s in style_rgbs]

    def run_on(dev: torch.device, share: float = 1.0) -> np.ndarray:
        return _Run(options, run_content, run_styles, dev, progress, should_stop, on_image,
                    image_every, share, start, hold).run()

    result = None
    for attempt in range(OOM_RETRIES + 1):
        try:
            result = run_on(device, 0.5 ** attempt)
            break
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            log.warning("out of GPU memory on %s with %.0f%% of the budget", device,
                        100 * 0.5 ** attempt)
    if result is None:  # smaller blocks did not help either
        if options.device != "auto":
            raise TooLargeError(f"out of GPU memory on {device}, even with smaller blocks; "
                                "choose a smaller output size or --device cpu")
        log.warning("out of GPU memory on %s; running on the CPU instead", device)
        result = run_on(torch.device("cpu"))
    if options.colors == "luminance":
        result = in_colour(result)
    return images.to_pil(result) if as_pil else result


class _ContentColours:
    """A picture's luminance in the content's colours (colors=luminance), for the result and
    every picture handed out; the content is resized once per picture size."""

    def __init__(self, content_rgb: np.ndarray):
        self.content, self.sized = content_rgb, None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        if self.sized is None or self.sized.shape[:2] != (h, w):
            self.sized = images.resize_array(self.content, (w, h))
        return preserve_colors(rgb, self.sized)


class _Run:
    """One stylize() call: the schedule, the network, the loop."""

    def __init__(self, options, content, styles, device, progress, should_stop, on_image,
                 image_every, share=1.0, start=None, hold=None):
        self.o, self.content, self.styles, self.device = options, content, styles, device
        self.start_image, self.hold = start, hold
        self.report, self.should_stop = progress, should_stop or (lambda: False)
        self.on_image, self.image_every = on_image, image_every
        self.dtype = select_dtype(options.resolved("precision"), device)
        self.start = time.perf_counter()
        h, w = content.shape[:2]
        self.budget = int(share * budget.budget_of(options, device))
        self.margin, scales = budget.plan_run(options, (w, h), [s.shape[1::-1] for s in styles],
                                              self.dtype, self.budget, self.device)
        if start is not None:  # the picture is there already: only the final scale refines it
            scales = scales[-1:]
        self.scales = [(s.size, s.iterations) for s in scales]
        self.plans = [s.plan for s in scales]
        if device.type == "cpu" and options.max_memory is not None and any(
                p.core is not None for p in self.plans):
            hold_to_budget()  # the user's cap over speed: every large tensor back at once
        self.work = [s.work for s in scales]
        # Each scale's measured speed goes to the record the estimate learns from; the run's
        # own estimate is logged beside its time (none without a record: no probe in a run).
        self.speed_key = speed.device_key(describe(device, self.dtype))
        self.run_id = speed.new_run()
        known = speed.speeds(self.speed_key)
        self.expected_s = estimate.of_scales(scales, len(styles), options.style_loss,
                                             known) if known else None
        self.step = 0  # iterations done, over all scales
        self.done = 0.0  # work done

    # -- checks and set-up ----------------------------------------------------------------------

    def emit(self, phase, scale=0, iteration=0, iterations=0, loss=None, rate=None, extra=0.0):
        if self.report is None:
            return
        total = sum(self.work)
        done = total if phase == "finishing" else self.done + extra
        eta = None if rate is None else max(total - done, 0.0) / rate
        self.report(Progress(phase, scale, len(self.scales), iteration, iterations, self.step,
                             sum(n for _, n in self.scales), min(done / total, 1.0), loss, eta,
                             time.perf_counter() - self.start))

    def tensor(self, rgb: np.ndarray) -> torch.Tensor:
        """HxWx3 0..1 array -> (1, 3, H, W) 0..255 float tensor on the device."""
        return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(self.device) * 255.0

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> np.ndarray:
        self.emit("loading")
        o = self.o
        log.info("stylizing on %s; memory budget %.1f GB; scales %s",
                 describe(self.device, self.dtype), self.budget / budget.GB, ", ".join(
                     f"{w}x{h}:{n} ({'whole' if p.core is None else f'blocks of {p.core}'}, "
                     f"{p.optimizer}{p.history or ''}, ~{p.need / budget.GB:.1f} GB)"
                     for ((w, h), n), p in zip(self.scales, self.plans)))
        self.net = network(o.content_layers + o.style_layers, o.pooling, o.model, self.device)
        content_full = self.tensor(self.content)
        style_full = [self.tensor(s) for s in self.styles]
        generator = torch.Generator().manual_seed(o.seed)
        x = None
        for index, ((w, h), iterations) in enumerate(self.scales, start=1):
            plan = self.plans[index - 1]
            log.info("scale %d/%d: %dx%d, %d iterations, %s, %s", index, len(self.scales), w, h,
                     iterations, "whole image" if plan.core is None else
                     f"in blocks of {plan.core} px", plan.optimizer)
            content = images.resize(content_full, (w, h))
            objective = self.objective(content, style_full, plan)
            x = self.initial(content, generator) if x is None else images.resize(x, (w, h))
            del content
            x, stopped = self.optimise(x, objective, index, iterations, plan)
            del objective
            if self.device.type == "cpu":
                release_memory()  # the scale's buffers, before the next, larger one
            if stopped:
                break
        else:
            log.info("took %.1f s; the estimate was %s", time.perf_counter() - self.start,
                     "none (no run measured here yet)" if self.expected_s is None
                     else f"{self.expected_s:.1f} s")
        return self.finish(x)

    def objective(self, content: torch.Tensor, styles: list, plan) -> blockwise.Objective:
        """This scale's objective: content features and the blended styles' targets (Gram
        matrices, or W2's Gaussians), computed block by block where the plan says so (no
        autograd: bigger blocks fit). Styles blend by their statistics (for W2 the mean and
        second moment, i.e. the mixture of their feature distributions)."""
        o = self.o
        h, w = content.shape[-2:]
        room = self.budget - plan.need + budget.BACKWARD_BYTES[self.dtype] * (
            0 if plan.core is None else (plan.core + 2 * self.margin) ** 2)

        def core_for(image):  # None: the whole image in one pass
            ih, iw = image.shape[-2:]
            if plan.core is None and ih * iw <= h * w:
                return None
            c = budget.largest_core(room, budget.FORWARD_BYTES[self.dtype], self.margin, iw, ih)
            return None if c >= max(iw, ih) else max(c, plan.core or 0, budget.MIN_CORE)

        targets = blockwise.content_targets(self.net, content, o.content_layers, self.autocast,
                                            core_for(content), self.margin)
        kind = losses.STYLE_LOSSES[o.style_loss]
        blend = np.asarray(o.style_blend or [1.0] * len(styles), dtype=np.float64)
        stats = {layer: None for layer in o.style_layers}
        for b, style in zip(blend / blend.sum(), styles):
            sw, sh = style_size(style.shape[-1], style.shape[-2], max(w, h), o.style_scale,
                                o.style_upsample)
            style = images.resize(style, (sw, sh))
            for k, st in blockwise.style_stats(self.net, style, o.style_layers, self.autocast,
                                               core_for(style), self.margin, kind).items():
                st = tuple(float(b) * t for t in st)
                stats[k] = st if stats[k] is None else tuple(map(torch.add, stats[k], st))
        return blockwise.Objective(
            self.net, targets, {k: kind.target(st) for k, st in stats.items()},
            content_weight=o.resolved("content_weight"),
            style_weight=o.resolved("style_weight") * o.strength,
            layer_weights=dict(zip(o.style_layers, o.resolved_style_layer_weights())),
            tv_weight=o.resolved("tv_weight"),
            range_weight=RANGE_WEIGHT if o.preset_values.clamp else 0.0,
            autocast=self.autocast, core=plan.core, margin=self.margin,
            should_stop=self.should_stop, style_loss=kind, hold=self.hold_term(w, h))

    def hold_term(self, w: int, h: int) -> tuple | None:
        if self.hold is None or self.start_image is None:
            return None
        target = images.resize(self.tensor(images.to_array(self.start_image)), (w, h))
        mask = torch.from_numpy(np.ascontiguousarray(self.hold, dtype=np.float32))[None, None]
        mask = images.resize(mask.to(self.device), (w, h)).clamp(0, 1)
        return HOLD_WEIGHT, target, mask

    def optimise(self, x, objective, index, iterations, plan) -> tuple[torch.Tensor, bool]:
        """One scale's iterations; returns (the image, whether should_stop ended them)."""
        (w, h), _ = self.scales[index - 1]
        if self.o.preset_values.clamp:
            x = x.clamp(0, 255)
        # L-BFGS flattens its parameter: keep x contiguous (the objective hands VGG a
        # channels_last copy).
        x = x.detach().contiguous().requires_grad_(True)
        opt = self.optimizer(x, plan)
        best, best_loss = x.detach().clone(), float("inf")
        unit = self.work[index - 1] / iterations  # work of one iteration
        blocks = 0 if plan.core is None else len(blockwise.blocks(h, w, plan.core, self.margin))

        def on_block(fraction):  # within a long block-wise iteration: keep the bar and ETA moving
            self.emit("stylizing", index, i, iterations, best_loss if best_loss < np.inf else None,
                      rate(), extra=unit * fraction)
        objective.on_block = on_block if blocks else None

        def closure():
            nonlocal best_loss
            opt.zero_grad(set_to_none=True)
            value, grad = objective(x)
            x.grad = grad
            if not np.isfinite(value) or value > BLOW_UP * best_loss:
                raise _Diverged(value)
            if value < best_loss:  # the loss belongs to x before this step
                best.copy_(x.detach())
                best_loss = value
            return torch.tensor(value)

        start = time.perf_counter()

        def rate():  # work per second at this scale, so far
            elapsed = time.perf_counter() - start
            done = (i - 1) * unit
            return done / elapsed if done and elapsed > 0 else None

        for i in range(1, iterations + 1):
            if self.should_stop():
                log.info("stopped at scale %d, iteration %d", index, i)
                return best, True
            try:
                opt.step(closure)
                if isinstance(opt, torch.optim.LBFGS):
                    _bound_step(opt, x)
            except blockwise.Stopped:
                log.info("stopped at scale %d, iteration %d (within a block-wise pass)", index, i)
                return best, True
            except _Diverged as e:
                # Plain L-BFGS (no line search, as jcjohnson's) overshoots now and then and
                # mostly recovers; a jump it cannot recover from (seen on tiny, flat images) sends
                # it back to the best image with a fresh history, and a second one to Adam,
                # whose steps are bounded.
                if isinstance(opt, torch.optim.Adam):
                    raise NSTError("the optimisation diverged; try another preset, seed or a "
                                   "lower style strength") from None
                restarted = getattr(opt, "restarted", False)
                log.warning("scale %d, iteration %d: the loss jumped to %.3g; going on from the "
                            "best image with %s", index, i, e.args[0],
                            "Adam" if restarted else "a fresh L-BFGS")
                with torch.no_grad():
                    x.copy_(best)
                if restarted:
                    opt = torch.optim.Adam([x], lr=self.o.learning_rate)
                else:
                    opt = self.optimizer(x, plan)
                    opt.restarted = True
            self.step += 1
            self.done += unit
            elapsed = time.perf_counter() - start
            self.emit("stylizing", index, i, iterations, best_loss,
                      i * unit / elapsed if elapsed > 0 else None)
            if self.on_image and self.image_every and self.step % self.image_every == 0:
                self.on_image(self.finish(x.detach(), report=False), self.step)
        speed.record_scale(self.speed_key, (w, h), plan, time.perf_counter() - start,
                           self.work[index - 1] * estimate.STYLE_LOSS_COST[self.o.style_loss],
                           self.run_id)
        # The last step's result has not been scored; it is the best unless it diverged.
        return x.detach(), False

    def initial(self, content: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        init = self.o.resolved("init")
        _, _, h, w = content.shape
        if self.start_image is not None:
            return images.resize(self.tensor(images.to_array(self.start_image)), (w, h))
        if init == "content":
            return content.clone()
        if init == "noise":  # jcjohnson: tiny noise around the mean colour
            mean_rgb = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)
            noise = torch.randn((1, 3, h, w), generator=generator) * 0.001
            return (mean_rgb + noise).to(self.device)
        if init == "style":
            return images.resize(self.tensor(self.styles[0]), (w, h))
        picture = images.to_array(images.load_image(init, what="init image", max_side=max(w, h)))
        return images.resize(self.tensor(picture), (w, h))

    def optimizer(self, x: torch.Tensor, plan) -> torch.optim.Optimizer:
        if plan.optimizer == "adam":
            return torch.optim.Adam([x], lr=self.o.learning_rate)
        # One iteration per step() call keeps progress and cancel per iteration; the history
        # carries over between calls. No tolerances: run the iterations asked for.
        return torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=plan.history,
                                 tolerance_grad=-1, tolerance_change=-1)

    def finish(self, x: torch.Tensor, report: bool = True) -> np.ndarray:
        """The image at the final size, as an HxWx3 array in 0..1."""
        (w, h), _ = self.scales[-1]
        with torch.no_grad():
            x = images.resize(x.float(), (w, h)).clamp(0, 255) / 255.0
        if report:
            self.emit("finishing", len(self.scales))
        return x[0].permute(1, 2, 0).contiguous().cpu().numpy()


_NETWORKS: dict = {}  # the last network built, reused while nothing it depends on changes


def network(layers, pooling: str, model: str, device: torch.device) -> VGG:
    """The network with its weights on the device, built once per process for a series of runs
    (a batch); the weights file's identity is part of the key, so new weights are loaded."""
    key = (tuple(dict.fromkeys(layers)), pooling, model, str(device),
           weights.file_stamp(weights.weights_path(model)))
    if key not in _NETWORKS:
        _NETWORKS.clear()  # one at a time: a network costs ~100 MB
        net = VGG(dict.fromkeys(layers), pooling, model).load_weights(weights.load(model=model))
        _NETWORKS[key] = net.to(device, memory_format=torch.channels_last)
    return _NETWORKS[key]


def style_size(width: int, height: int, long_side: int, scale: float = 1.0,
               upsample: bool = False) -> tuple[int, int]:
    """A width x height style image's size at a scale whose output has this long side:
    scale x the output's long side, never past the style's own size unless `upsample`, and never
    below what VGG's poolings need."""
    side = round(long_side * scale)
    if not upsample:
        side = min(side, max(width, height))
    side = max(side, round(images.MIN_SIDE * max(width, height) / min(width, height)))
    return images.fit_size(width, height, side)


def _bound_step(opt: torch.optim.LBFGS, x: torch.Tensor) -> None:
    """Shorten an L-BFGS step that moves a pixel by more than MAX_STEP (in 0..255 units).

    Plain L-BFGS takes the unit step along its direction; with bf16 gradients a curvature pair
    now and then makes that direction huge, and the next evaluation finds the loss 1e8 times
    higher (the range penalty of pixels thrown thousands of units out of range): a wasted
    evaluation and a restart without history. A step that long is never right, so it is cut
    back where it lands, and the optimiser's own record of it (t, used for the next curvature
    pair) is cut with it, which keeps the pairs consistent."""
    state = opt.state[opt._params[0]]
    d, t = state.get("d"), state.get("t")
    if d is None or not t:
        return
    longest = float(d.abs().max()) * t
    factor = 1.0
    if longest > MAX_STEP:
        factor = MAX_STEP / longest
    elif state.get("n_iter") == 1 and FIRST_STEP and longest > 0:
        factor = FIRST_STEP / longest
    if factor != 1.0:
        with torch.no_grad():
            x.view(-1).add_(d, alpha=t * (factor - 1))
        state["t"] = t * factor


class _Diverged(Exception):
    """The loss blew up (args[0]: its value)."""

