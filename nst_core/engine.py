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

from . import images, losses, weights
from .colour import luminance, preserve_colors
from .device import available_memory, describe, select_device, select_dtype
from .errors import ImageError, NSTError, OptionError, TooLargeError
from .options import Options
from .vgg import VGG19

log = logging.getLogger(__name__)

LBFGS_HISTORY = 100  # jcjohnson/neural-style's default
# Keeping pixels in 0..255 by clamping after each step breaks L-BFGS's curvature pairs (the loss
# climbs); a smooth penalty on the excess keeps the problem smooth and the image in range.
BLOW_UP = 1e6  # a step that multiplies the best loss by this much has diverged
RANGE_WEIGHT = 1.0  # 0.1 and 1 scored alike at 256 px; 1 keeps a margin
# Working memory per output pixel, on the safe side: activations kept for the backward pass, the
# L-BFGS history (2 x 100 RGB vectors) and the optimiser's copies. bench/ saw 1.13 GiB peak at
# 512x384 in bf16, about 0.5 GiB of it fixed: about 3.2 KB per pixel.
BYTES_PER_PIXEL = {torch.float32: 4400, torch.bfloat16: 3800, torch.float16: 3800}
FIXED_BYTES = 400 << 20  # weights, the interpreter, torch itself


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
            on_image=None, image_every: int = 0):
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
    if options.preserve_colors:  # luminance-only transfer (Gatys et al. 2016), colour put back
        run_content, run_styles = luminance(content_rgb), [luminance(s) for s in style_rgbs]

    def run_on(dev: torch.device) -> np.ndarray:
        return _Run(options, run_content, run_styles, dev, progress, should_stop, on_image,
                    image_every).run()

    try:
        result = run_on(device)
    except torch.cuda.OutOfMemoryError:
        if options.device != "auto":
            raise TooLargeError(f"out of GPU memory on {device}; choose a smaller output size "
                                "or --device cpu") from None
        log.warning("out of GPU memory on %s; running on the CPU instead", device)
        torch.cuda.empty_cache()
        result = run_on(torch.device("cpu"))
    if options.preserve_colors:
        h, w = result.shape[:2]
        result = preserve_colors(result, images.resize_array(content_rgb, (w, h)))
    return images.to_pil(result) if as_pil else result


class _Run:
    """One stylize() call: the schedule, the network, the loop."""

    def __init__(self, options, content, styles, device, progress, should_stop, on_image,
                 image_every):
        self.o, self.content, self.styles, self.device = options, content, styles, device
        self.report, self.should_stop = progress, should_stop or (lambda: False)
        self.on_image, self.image_every = on_image, image_every
        self.dtype = select_dtype(options.resolved("precision"), device)
        self.start = time.perf_counter()
        h, w = content.shape[:2]
        self.scales = []
        for long_side, iterations in options.schedule(max(w, h)):
            size = images.fit_size(w, h, long_side)
            if min(size) >= images.MIN_SIDE:  # too small for VGG's poolings: skip that scale
                self.scales.append((size, iterations))
        if not self.scales:
            fw, fh = images.fit_size(w, h, options.size or max(w, h))
            raise ImageError(f"the output would be {fw}x{fh} pixels; each side needs at least "
                             f"{images.MIN_SIDE} (choose a larger size)")
        self.work = [s[0] * s[1] * n for s, n in self.scales]
        self.step = 0  # iterations done, over all scales
        self.done = 0  # work done: pixels x iterations
        self.check_memory()

    # -- checks and set-up ----------------------------------------------------------------------

    def check_memory(self):
        (w, h), _ = self.scales[-1]
        need = w * h * BYTES_PER_PIXEL[self.dtype] + FIXED_BYTES
        have = available_memory(self.device)
        if need > have:
            fits = int(max(w, h) * (max(have - FIXED_BYTES, 0) / (need - FIXED_BYTES)) ** 0.5)
            raise TooLargeError(
                f"a {w}x{h} result needs about {need / 2**30:.1f} GB of memory, but only "
                f"{have / 2**30:.1f} GB is free on {self.device.type}; choose a size of at most "
                f"about {max(fits // 16 * 16, images.MIN_SIDE)} px (long side)")

    def emit(self, phase, scale=0, iteration=0, iterations=0, loss=None, rate=None):
        if self.report is None:
            return
        total = sum(self.work)
        done = total if phase == "finishing" else self.done
        eta = None if rate is None else (total - done) / rate
        self.report(Progress(phase, scale, len(self.scales), iteration, iterations, self.step,
                             sum(n for _, n in self.scales), done / total, loss, eta,
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
        log.info("stylizing on %s; scales %s", describe(self.device, self.dtype),
                 ", ".join(f"{w}x{h}:{n}" for (w, h), n in self.scales))
        net = VGG19(dict.fromkeys(o.content_layers + o.style_layers), o.pooling)
        self.net = net.load_weights(weights.load()).to(self.device,
                                                       memory_format=torch.channels_last)
        content_full = self.tensor(self.content)
        style_full = [self.tensor(s) for s in self.styles]
        generator = torch.Generator().manual_seed(o.seed)
        x = None
        for index, ((w, h), iterations) in enumerate(self.scales, start=1):
            content = images.resize(content_full, (w, h))
            targets, grams = self.targets(content, style_full)
            x = self.initial(content, generator) if x is None else images.resize(x, (w, h))
            x, stopped = self.optimise(x, targets, grams, index, iterations)
            if stopped:
                break
        return self.finish(x)

    def targets(self, content: torch.Tensor, styles: list) -> tuple[dict, dict]:
        """Content features and blended style Gram matrices at this scale, in fp32."""
        o = self.o
        h, w = content.shape[-2:]
        blend = np.asarray(o.style_blend or [1.0] * len(styles), dtype=np.float64)
        with torch.no_grad(), self.autocast():
            targets = {k: v.float() for k, v in self.net(_cl(content), o.content_layers).items()}
            grams = {layer: 0.0 for layer in o.style_layers}
            for b, style in zip(blend / blend.sum(), styles):
                long_side = min(max(w, h), max(style.shape[-2:]))  # never upsample the style
                sw, sh = images.fit_size(style.shape[-1], style.shape[-2], long_side)
                feats = self.net(_cl(images.resize(style, (sw, sh))), o.style_layers)
                for layer in o.style_layers:
                    grams[layer] = grams[layer] + float(b) * losses.gram(feats[layer])
        return targets, grams

    def objective(self, x: torch.Tensor, targets: dict, grams: dict) -> torch.Tensor:
        o = self.o
        with self.autocast():
            feats = self.net(_cl(x))
        loss = o.resolved("content_weight") * sum(
            losses.content_loss(feats[k], targets[k]) for k in o.content_layers)
        loss = loss + o.resolved("style_weight") * o.strength * sum(
            lw * losses.style_loss(feats[k], grams[k])
            for k, lw in zip(o.style_layers, o.resolved_style_layer_weights()))
        if o.resolved("tv_weight"):
            loss = loss + o.resolved("tv_weight") * losses.tv_loss(x)
        if o.preset_values.clamp:
            loss = loss + RANGE_WEIGHT * losses.range_loss(x)
        return loss

    def optimise(self, x, targets, grams, index, iterations) -> tuple[torch.Tensor, bool]:
        """One scale's iterations; returns (the image, whether should_stop ended them)."""
        (w, h), _ = self.scales[index - 1]
        if self.o.preset_values.clamp:
            x = x.clamp(0, 255)
        # L-BFGS flattens its parameter: keep x contiguous, hand VGG a channels_last copy.
        x = x.detach().contiguous().requires_grad_(True)
        opt = self.optimizer(x)
        best, best_loss = x.detach().clone(), float("inf")

        def closure():
            nonlocal best, best_loss
            opt.zero_grad(set_to_none=True)
            loss = self.objective(x, targets, grams)
            loss.backward()
            value = loss.item()
            if not np.isfinite(value) or value > BLOW_UP * best_loss:
                raise _Diverged(value)
            if value < best_loss:  # the loss belongs to x before this step
                best, best_loss = x.detach().clone(), value
            return loss

        start = time.perf_counter()
        for i in range(1, iterations + 1):
            if self.should_stop():
                log.info("stopped at scale %d, iteration %d", index, i)
                return best, True
            try:
                opt.step(closure)
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
                    opt = self.optimizer(x)
                    opt.restarted = True
            self.step += 1
            self.done += w * h
            elapsed = time.perf_counter() - start
            rate = (i * w * h) / elapsed if elapsed > 0 else None
            self.emit("stylizing", index, i, iterations, best_loss, rate)
            if self.on_image and self.image_every and self.step % self.image_every == 0:
                self.on_image(self.finish(x.detach(), report=False), self.step)
        # The last step's result has not been scored; it is the best unless it diverged.
        return x.detach(), False

    def initial(self, content: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        init = self.o.resolved("init")
        _, _, h, w = content.shape
        if init == "content":
            return content.clone()
        if init == "noise":  # jcjohnson: tiny noise around the mean colour
            mean_rgb = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)
            noise = torch.randn((1, 3, h, w), generator=generator) * 0.001
            return (mean_rgb + noise).to(self.device)
        if init == "style":
            return images.resize(self.tensor(self.styles[0]), (w, h))
        picture = images.to_array(images.load_image(init, what="init image"))
        return images.resize(self.tensor(picture), (w, h))

    def optimizer(self, x: torch.Tensor) -> torch.optim.Optimizer:
        if self.o.resolved("optimizer") == "adam":
            return torch.optim.Adam([x], lr=self.o.learning_rate)
        # One iteration per step() call keeps progress and cancel per iteration; the history
        # carries over between calls. No tolerances: run the iterations asked for.
        return torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=LBFGS_HISTORY,
                                 tolerance_grad=-1, tolerance_change=-1)

    def finish(self, x: torch.Tensor, report: bool = True) -> np.ndarray:
        """The image at the final size, as an HxWx3 array in 0..1."""
        (w, h), _ = self.scales[-1]
        with torch.no_grad():
            x = images.resize(x.float(), (w, h)).clamp(0, 255) / 255.0
        if report:
            self.emit("finishing", len(self.scales))
        return x[0].permute(1, 2, 0).contiguous().cpu().numpy()


class _Diverged(Exception):
    """The loss blew up (args[0]: its value)."""


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)
