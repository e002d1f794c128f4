"""Every option of the engine, its default and its help text: defined here once.

The CLI (`nst stylize --help`), the worker (request "options") and the Python API all take
`Options`. Fields left at None take their value from the quality preset.
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

from . import networks
from .errors import OptionError

# Convolutions per block of each network; a layer is named after the ReLU that follows its
# convolution (relu2_2), or as Keras names the convolution (block2_conv2): both are accepted.
MODELS = networks.MODELS
MODEL_LAYERS = networks.LAYERS
LAYERS = MODEL_LAYERS["vgg19"]  # every layer name of either network (VGG16's are a subset)
COLORS = ("style", "luminance", "histogram")
STYLE_LOSSES = ("gram", "w2")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style")
POOLINGS = ("max", "avg")
MAX_STYLE_SCALE = 8.0
# The interpreter, torch, the network and the smallest block: below this nothing runs.
MIN_MEMORY_GB = 0.75
MAX_SIZE = 16384  # px, the long side of an output or a scale
MAX_SEED = 2**63 - 1  # torch's generator takes 64 bits
MAX_ITERATIONS = 1_000_000
MAX_LIST = 64  # layers, layer weights and style weights: more is a mistake, not a setting
# Loss weights: the presets use 1e-3 to 100. Past these the loss (weights times strength times
# layer weight) can overflow float32 and the run paints nothing, so they are refused up front.
MAX_WEIGHT = 1e9
MAX_STRENGTH = 1e4
MAX_RELATIVE = 1e6  # layer weights and blend weights: relative to each other
MAX_LEARNING_RATE = 1e4  # Adam's step in 0..255 pixel units: far past any useful one
MAX_MEMORY_GB = 1e6  # a petabyte: finite, so GB -> bytes cannot overflow


@dataclass(frozen=True)
class Preset:
    """What a quality preset decides. Iterations run from `first_iterations` at the coarsest
    scale to `last_iterations` at the output size (geometrically); scales grow by sqrt(2) from
    `min_size`. Measured at 512 px (bench/): iterations at the final scale buy the most quality,
    so the presets spend about as many there as at the cheap coarse scales."""

    description: str
    first_iterations: int
    last_iterations: int
    # Above detail_size (long side) a scale mostly adds fine detail to an already painted image:
    # its iterations fall with its pixel count (the work per scale stays about constant), down to
    # detail_iterations. jcjohnson's multi-resolution recipe does the same (2048 px: 100, 3620: 50).
    detail_iterations: int = 4
    detail_size: int = 1024
    # and Adam paints them: with so few iterations plain L-BFGS overshot (measured at 2048 px
    # from the upsampled 1024 px result, 5 iterations: the objective x29 with L-BFGS, /3 with
    # Adam). With its steps bounded (engine.MAX_STEP, FIRST_STEP) L-BFGS does better where it
    # gets 12 or more iterations (1232x816: 0.77x Adam's full objective in the same iterations)
    # and much worse with fewer (4 MP with 2.5x fewer: 2.5x the objective, relu4_1's style
    # term 8x): --detail-optimizer lbfgs chooses it. An --optimizer given explicitly is used
    # everywhere.
    detail_optimizer: str = "adam"
    min_size: int = 128
    optimizer: str = "lbfgs"
    init: str = "content"
    content_weight: float = 5.0
    style_weight: float = 100.0
    tv_weight: float = 1e-3
    precision: str = "auto"
    clamp: bool = True  # keep pixels in 0..255 while optimising: what is saved is what was scored


PRESETS = {
    "draft": Preset("quick look: coarse-to-fine, few iterations", 15, 15, detail_iterations=2),
    "standard": Preset("the default: coarse-to-fine, good quality for its time", 30, 45),
    "high": Preset("slow and careful: more iterations at every scale", 60, 100,
                   detail_iterations=10),
    "classic": Preset(
        "jcjohnson/neural-style defaults: one scale, L-BFGS, 1000 iterations, noise init, fp32",
        1000, 1000, min_size=0, init="noise", precision="fp32", clamp=False),
}
DEFAULT_PRESET = "standard"


def _opt(default, help, **meta):
    """A field with its help text, CLI hints and limits in one place. Limits: minimum, maximum
    (inclusive; exclusive=True makes the minimum exclusive), step, choices; validate() enforces
    them and the web page shows them. affects_result=False: where and how, not what (the
    picture is the same whatever its value; a batch does not repaint when it changes)."""
    return field(default=default, metadata=dict(help=help, **meta))


@dataclass(frozen=True)
class Options:
    size: int | None = _opt(
        512, 'long side of the output in pixels; "keep" (None) for the content\'s own size',
        metavar="PX|keep", minimum=16, maximum=MAX_SIZE)
    preset: str = _opt(DEFAULT_PRESET, "quality preset", choices=tuple(PRESETS))
    content_weight: float | None = _opt(None, "weight of the content loss", metavar="W",
                                        minimum=0.0, maximum=MAX_WEIGHT)
    style_weight: float | None = _opt(None, "weight of each style layer's loss", metavar="W",
                                      minimum=0.0, maximum=MAX_WEIGHT)
    tv_weight: float | None = _opt(None, "weight of the total-variation (smoothness) loss",
                                   metavar="W", minimum=0.0, maximum=MAX_WEIGHT)
    strength: float = _opt(1.0, "style strength: multiplies the style weight", metavar="X",
                           minimum=0.0, maximum=MAX_STRENGTH)
    iterations: int | None = _opt(
        None, "total iterations over all scales (split between scales as the preset does)",
        metavar="N", minimum=1, maximum=MAX_ITERATIONS)
    optimizer: str | None = _opt(None, "optimiser", choices=OPTIMIZERS)
    learning_rate: float = _opt(5.0, "Adam's step size, in 0..255 pixel units", metavar="LR",
                                minimum=0.0, exclusive=True, maximum=MAX_LEARNING_RATE)
    init: str | None = _opt(
        None, 'starting image: "content", "noise", "style" or an image file', metavar="INIT")
    seed: int = _opt(0, "random seed: the same seed gives the same image", metavar="N",
                     minimum=0, maximum=MAX_SEED)
    device: str = _opt("auto", 'where to run: auto, cpu, cuda, cuda:N or mps', metavar="DEV",
                       affects_result=False)
    precision: str | None = _opt(
        None, "number format of the network passes (auto: bf16/fp16 where it is as good as fp32)",
        choices=PRECISIONS)
    colors: str = _opt(
        "style", "the result's colours: the style's; the content's, with only the style's "
        "luminance transferred (luminance); or the style image recoloured to the content's "
        "colour distribution before the run (histogram)", choices=COLORS)
    model: str = _opt("vgg19", "the network whose features define content and style",
                      choices=MODELS)
    style_loss: str = _opt(
        "gram", "how style is compared: Gram matrices (Gatys et al.) or the Wasserstein-2 "
        "distance between the feature distributions (means and covariances)",
        choices=STYLE_LOSSES)
    pooling: str = _opt("max", "VGG pooling", choices=POOLINGS)
    content_layers: tuple[str, ...] = _opt(("relu4_2",), "content layers", metavar="LAYER")
    style_layers: tuple[str, ...] = _opt(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), "style layers", metavar="LAYER")
    style_layer_weights: tuple[float, ...] | None = _opt(
        None, "relative weight of each style layer (default: 1 each)", metavar="W",
        minimum=0.0, maximum=MAX_RELATIVE)
    style_blend: tuple[float, ...] | None = _opt(
        None, "relative weights of several style images (default: equal)", metavar="W",
        minimum=0.0, maximum=MAX_RELATIVE)
    min_size: int | None = _opt(
        None, "long side of the coarsest scale (0: a single scale at the output size)",
        metavar="PX", minimum=0, maximum=MAX_SIZE)
    style_scale: float = _opt(
        1.0, "size of the style image relative to the output at each scale (larger: bigger "
        "brush strokes); never past the style's own size unless --style-upsample", metavar="X",
        minimum=0.0, exclusive=True, maximum=MAX_STYLE_SCALE)
    style_upsample: bool = _opt(
        False, "let --style-scale enlarge the style image past its own size")
    max_memory: float | None = _opt(
        None, "the most memory the run may use on its device, in GB, the process included "
        "(default: 80 percent of what is free at the start); past it the image is painted in "
        "blocks, with the same result", metavar="GB", minimum=MIN_MEMORY_GB,
        maximum=MAX_MEMORY_GB, affects_result=False)
    detail_optimizer: str | None = _opt(
        None, "optimiser of the scales above the preset's detail size (default: the preset's, "
        "Adam; lbfgs scored better at 1 MP in the same time, but is not measured at larger "
        "sizes yet)",
        choices=OPTIMIZERS)
    block_size: int | None = _opt(
        None, "paint in blocks of this many pixels square even where the whole image fits "
        "(default: blocks only when needed, as large as the memory allows)", metavar="PX",
        minimum=16, maximum=MAX_SIZE, step=16)

    def __post_init__(self):
        for name in ("content_layers", "style_layers"):  # Keras names -> ours, once
            value = getattr(self, name)
            if isinstance(value, tuple):
                object.__setattr__(self, name, tuple(map(canonical_layer, value)))
        self.validate()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict) -> Options:
        """Options from a JSON-like dict (the worker's request); unknown names are an error."""
        values = dict(values)
        if "preserve_colors" in values:  # our earlier option, kept as an alias of colors
            keep = values.pop("preserve_colors")  # (the one place it is understood)
            if not isinstance(keep, bool):
                raise OptionError(f"preserve_colors must be true or false, not {keep!r}"[:120],
                                  field="colors")
            if keep and values.get("colors", "style") == "style":  # the default: luminance
                values["colors"] = "luminance"
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OptionError(f"unknown option(s): {', '.join(map(repr, unknown))}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> Options:
        return replace(self, **changes)

    # -- validation -----------------------------------------------------------------------------

    def validate(self) -> None:
        for f in fields(self):  # types first: the checks below may then compare and measure
            _check_type(getattr(self, f.name), f.name, f.type)
        if self.max_memory is not None and 0 < self.max_memory < MIN_MEMORY_GB:
            raise OptionError(f"max_memory of {self.max_memory:g} GB is too small for anything: "
                              f"the network alone needs about {MIN_MEMORY_GB:g} GB",
                              field="max_memory")
        for f in fields(self):  # then each field's limits
            _check_limits(getattr(self, f.name), f.name, f.metadata)
        for f in fields(self):  # then each field's choices
            if "choices" in f.metadata:
                _check_choice(getattr(self, f.name), f.name, f.metadata["choices"],
                              allow_none=f.default is None)
        if not isinstance(self.style_upsample, bool):
            raise OptionError("style_upsample must be true or false", field="style_upsample")
        if self.init is not None and not (isinstance(self.init, str) and self.init):
            raise OptionError('init must be "content", "noise", "style" or an image file',
                              field="init")
        if self.init not in (None, *INITS) and not os.path.isfile(self.init):
            raise OptionError(f'init image {self.init} does not exist (init must be "content", '
                              '"noise", "style" or an image file)', field="init")
        if not isinstance(self.device, str) or not (
                self.device in DEVICES or _is_cuda_index(self.device)):
            raise OptionError(
                f"unknown device {self.device!r}: use auto, cpu, cuda, cuda:N or mps",
                field="device")
        for name in ("content_layers", "style_layers"):
            layers = getattr(self, name)
            if not isinstance(layers, tuple) or not layers:
                raise OptionError(f"{name} needs at least one layer", field=name)
            for layer in layers:
                if layer not in MODEL_LAYERS[self.model]:
                    raise OptionError(
                        f"{name}: {self.model} has no layer {layer!r}; its layers are "
                        f"{', '.join(MODEL_LAYERS[self.model])} (or Keras's names, "
                        "block1_conv1 ...)", field=name)
        if self.style_layer_weights is not None:
            if len(self.style_layer_weights) != len(self.style_layers):
                raise OptionError(f"style_layer_weights needs {len(self.style_layers)} weights, "
                                  f"one per style layer, not {len(self.style_layer_weights)}",
                                  field="style_layer_weights")
        if self.style_blend is not None:
            if not isinstance(self.style_blend, tuple) or not self.style_blend:
                raise OptionError("style_blend needs one weight per style image",
                                  field="style_blend")
            if not sum(self.style_blend) > 0:
                raise OptionError("style_blend weights must not all be zero", field="style_blend")

    # -- what the engine runs -------------------------------------------------------------------

    @property
    def preset_values(self) -> Preset:
        return PRESETS[self.preset]

    def resolved(self, name: str):
        """The option's value, or the preset's where the option is None."""
        value = getattr(self, name)
        return getattr(self.preset_values, name) if value is None else value

    def style_side(self, content_long_side: int) -> int:
        """The longest side a style image needs for a run on content of this long side: the
        output's times style_scale. Styles are decoded no larger (they are never upsampled past
        their own size anyway)."""
        return round((self.size or content_long_side) * self.style_scale)

    def resolved_style_layer_weights(self) -> tuple[float, ...]:
        return self.style_layer_weights or (1.0,) * len(self.style_layers)

    def scale_optimizer(self, detail: bool) -> str:
        """The optimiser of a scale: --optimizer everywhere if given, else the preset's (its
        detail optimiser above its detail size, unless --detail-optimizer says otherwise)."""
        if self.optimizer is not None:
            return self.optimizer
        if detail:
            return self.detail_optimizer or self.preset_values.detail_optimizer
        return self.preset_values.optimizer

    def schedule(self, content_long_side: int) -> list[tuple[int, int]]:
        """(long side, iterations) per scale, coarse to fine."""
        preset = self.preset_values
        final = content_long_side if self.size is None else self.size
        min_size = self.resolved("min_size")
        sizes = [final]
        while min_size and sizes[-1] / math.sqrt(2) >= min_size * 0.99:
            sizes.append(round(sizes[-1] / math.sqrt(2)))
        sizes.reverse()
        n = len(sizes)
        # Iterations fall geometrically from the coarsest scale to the finest.
        base = [preset.first_iterations * (preset.last_iterations / preset.first_iterations)
                ** (i / (n - 1)) if n > 1 else preset.last_iterations for i in range(n)]
        floor = [1] * n
        if n > 1:  # big scales: fewer iterations, as many pixel-iterations as at detail_size
            for i, side in enumerate(sizes):
                if side > preset.detail_size:
                    base[i] = max(preset.detail_iterations,
                                  base[i] * (preset.detail_size / side) ** 2)
                    floor[i] = preset.detail_iterations
        if self.iterations is None:
            iterations = [max(f, round(b)) for b, f in zip(base, floor)]
        else:  # share the exact total out; with fewer iterations than scales, keep the finest
            sizes, base = sizes[-self.iterations:], base[-self.iterations:]
            shares = [b * self.iterations / sum(base) for b in base]
            iterations = [max(1, math.floor(x)) for x in shares]
            by_remainder = sorted(range(len(shares)), reverse=True,
                                  key=lambda i: shares[i] - math.floor(shares[i]))
            for i in by_remainder[: self.iterations - sum(iterations)]:
                iterations[i] += 1
            while sum(iterations) > self.iterations:  # the minimums of 1 overshot: trim the biggest
                iterations[iterations.index(max(iterations))] -= 1
        return list(zip(sizes, iterations))


# The options whose value does not change the picture (device, memory budget).
NOT_AFFECTING_RESULT = frozenset(f.name for f in fields(Options)
                                 if f.metadata.get("affects_result") is False)


def option_fields():
    """The Options fields with their defaults and help: what the CLI is built from."""
    for f in fields(Options):
        default = f.default if f.default is not MISSING else None
        yield f.name, default, f.metadata


# -- checks ------------------------------------------------------------------------------------


def canonical_layer(name):
    """block2_conv2 (Keras) -> relu2_2; other names unchanged (checked later)."""
    if isinstance(name, str) and name.startswith("block") and "_conv" in name:
        block, conv = name[len("block"):].split("_conv", 1)
        if block.isdigit() and conv.isdigit():
            return f"relu{int(block)}_{int(conv)}"
    return name


def _is_cuda_index(device: str) -> bool:
    return device.startswith("cuda:") and device[5:].isdigit()


# What each annotation in Options admits (None is allowed where the annotation says "| None").
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_TYPE_WORDS = {"int": "a whole number", "float": "a number", "str": "a string",
               "bool": "true or false"}


def _check_type(value, name, annotation: str) -> None:
    """The option's JSON type, from its annotation ("float | None", "tuple[str, ...]", ...), so
    every option gets a typed error whatever value arrives: a list for a string, a string for a
    list, nesting, a bool for a number."""
    base, optional = annotation.removesuffix(" | None"), annotation.endswith(" | None")
    if value is None and optional:
        return
    if base.startswith("tuple["):
        item = base[len("tuple["):-len(", ...]")]
        ok = isinstance(value, tuple) and 0 < len(value) <= MAX_LIST and all(
            _is(v, item) for v in value)
        if not ok:
            raise OptionError(f"{name} must be a list of 1 to {MAX_LIST} "
                              f"{_TYPE_WORDS[item].removeprefix('a ')}s, not {_describe(value)}",
                              field=name)
        return
    if not _is(value, base):
        raise OptionError(f"{name} must be {_TYPE_WORDS[base]}"
                          f"{' or null' if optional else ''}, not {_describe(value)}", field=name)


def _is(value, kind: str) -> bool:
    if isinstance(value, bool) and kind != "bool":
        return False
    return isinstance(value, _TYPES[kind])


def _describe(value) -> str:
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_choice(value, name, choices, allow_none=False):
    if value is None and allow_none:
        return
    if value not in choices:
        raise OptionError(f"{name} must be one of {', '.join(choices)}, not {value!r}", field=name)


def _check_number(value, name, allow_none=False, minimum=None, exclusive=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise OptionError(f"{name} must be a finite number, not {_describe(value)}", field=name)
    if minimum is not None and (value < minimum or (exclusive and value == minimum)):
        relation = "greater than" if exclusive else "at least"
        raise OptionError(f"{name} must be {relation} {minimum:g}, not {value:g}", field=name)


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _check_int(value, name, allow_none=False, minimum=None, maximum=None):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"{name} must be a whole number, not {_describe(value)}", field=name)
    if minimum is not None and value < minimum:
        raise OptionError(f"{name} must be at least {minimum}, not {_describe(value)}", field=name)
    if maximum is not None and value > maximum:
        raise OptionError(f"{name} must be at most {maximum}, not {_describe(value)}", field=name)


def _check_limits(value, name: str, meta) -> None:
    """A value (or each item of a tuple) within its field's minimum, maximum and step."""
    low, high, step = meta.get("minimum"), meta.get("maximum"), meta.get("step")
    if value is None or (low is None and high is None):
        return
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(low, int) and isinstance(high, int):
            _check_int(v, name, minimum=low, maximum=high)
        else:
            _check_number(v, name, minimum=low, exclusive=meta.get("exclusive", False))
            if high is not None and v > high:
                raise OptionError(f"{name} must be at most {high:g}, not {v:g}", field=name)
        if step and v % step:
            raise OptionError(f"{name} must be a multiple of {step}, not {v}", field=name)
