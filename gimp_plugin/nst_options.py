"""The plug-ins' options, defined once: name, default, range or choices, label and help.

nst_bridge.py builds its DEFAULTS, PRESETS, DEVICES and limits from OPTIONS; the GIMP 3
plug-in builds its procedure arguments and the GIMP 2.10 plug-in its PF_* parameters from it.
tests/test_bridge.py checks the table against nst_core.options.Options (the plug-ins cannot
import nst_core: GIMP's Python has no torch). Python 2.7 AND 3, standard library only.

Adding an option: add a row here (and, when the core needs its value changed on the way, a
line in nst_bridge.core_options). Mnemonics (the "_" in GIMP 3 labels) must differ from each
other and from the dialog's own buttons (_Help, _Reset, _Load/_Save Settings, _Cancel, _OK).
"""

# Python 2.7 compatible on purpose: a class of object, the __future__ imports.
# ruff: noqa: UP004, UP010, UP031, UP032

from __future__ import absolute_import, division, print_function


class Option(object):
    """One plug-in argument.

    name: the bridge's name (underscores; GIMP's argument name has dashes instead);
    kind: "file", "drawable", "text", "choice", "int", "float" or "bool";
    label: GIMP 3's, with its mnemonic; help: GIMP 3's tooltip;
    label2: GIMP 2.10's label, which has no tooltip and so says a little more;
    choices: ((value, label, help), ...); low, high: the range of a number; step: its step
    in GIMP 2.10's slider or spinner (none: a plain entry there);
    gimp: the GIMP versions (2, 3) whose dialog shows it;
    core: sent to the core as an option (the style arguments are not: they are the styles);
    advanced: technical, under GIMP 3's "Advanced" expander, below the artistic controls;
    zero: what 0 means where it means something (sent to the core as None), and least: then the
    smallest other value the core takes (the dialog skips the values between)."""

    def __init__(self, name, kind, default, label, help, label2=None, choices=(), low=None,
                 high=None, step=None, gimp=(2, 3), core=True, advanced=False, zero=None,
                 least=None):
        self.name, self.kind, self.default = name, kind, default
        self.label, self.help = label, help
        self.label2 = label2 or label.replace("_", "")
        self.choices, self.low, self.high, self.step = tuple(choices), low, high, step
        self.gimp, self.core, self.advanced = tuple(gimp), core, advanced
        self.zero, self.least = zero, least

    @property
    def text(self):
        """The GIMP 3 label as text (no mnemonic): what messages call the field."""
        return self.label.replace("_", "")

    @property
    def arg(self):
        """The GIMP argument's name."""
        return self.name.replace("_", "-")

    @property
    def values(self):
        """A choice's values, in order."""
        return tuple(value for value, _, _ in self.choices)


MAX_SIZE = 16384  # nst_core.options.MAX_SIZE
MIN_SIZE = 16  # the core's smallest size (VGG's poolings); 0 in "size" means the layer's own
MIN_MEMORY_GB = 0.75  # nst_core.options.MIN_MEMORY_GB; 0 in "max_memory" means automatic
MAX_SEED = 2147483647  # G_MAXINT: GIMP's int arguments are 32-bit (the core takes 64)
STYLE_FILES = 3  # GIMP 3's dialog; GIMP 2.10's shows the first two
BUTTON_MNEMONICS = "hrlsco"  # _Help _Reset _Load Saved Settings _Save Settings _Cancel _OK

PRESET_CHOICES = (
    ("draft", "Draft (a quick look)",
     "A quick look: coarse-to-fine, few iterations. About half the time of Standard"),
    ("standard", "Standard",
     "Good quality for its time: coarse-to-fine (the default). About 40 s for 512 px on a "
     "2-core CPU; the estimate below says how long here"),
    ("high", "High (slow)",
     "More iterations at every scale: finer strokes. About 2.5 times the time of Standard"),
    ("classic", "Classic (very slow)",
     "The original recipe: one scale, L-BFGS, 1000 iterations, noise start. About 25 times "
     "the time of Standard"),
)
SIZE_MODE_CHOICES = (
    ("auto", "Automatic (the layer's size within a time limit)",
     "The layer's own size unless that takes longer than the time limit for Automatic on this "
     "machine (10 minutes unless changed below), else the largest size that does"),
    ("layer", "The layer's own size", "Every pixel of the layer painted: slowest, finest"),
    ("custom", "Custom size", "The long side given below"),
)
COLOR_CHOICES = (
    ("style", "No: the style image's colors", "The result takes the style image's colors"),
    ("luminance", "Yes: only light and shade from the style",
     "Only the style's light and shade (luminance) is painted; the layer keeps its colors"),
    ("histogram", "Yes: the style recolored to the layer's colors",
     "The style image is first recolored to the layer's colors, then painted: the strokes are "
     "the style's, the palette the layer's"),
)
MODEL_CHOICES = (
    ("vgg19", "VGG19", "The network of the original paper (the default)"),
    ("vgg16", "VGG16", "A smaller network: a different look, a little faster. It needs its "
     "own weights file; if it is missing, the message says how to get it"),
)
STYLE_LOSS_CHOICES = (
    ("gram", "Gram matrices", "How most neural style transfer compares styles (the default)"),
    ("w2", "Wasserstein-2 (W2)",
     "The distance between the feature distributions (their means and covariances)"),
)
DEVICE_CHOICES = (
    ("auto", "Automatic", "A GPU when there is one (CUDA or Apple), else the CPU"),
    ("cpu", "CPU", "The processor: works everywhere, slowest"),
    ("cuda", "NVIDIA GPU (CUDA)", "An NVIDIA graphics card"),
    ("mps", "Apple GPU (MPS)", "The GPU of an Apple Silicon Mac"),
)

_STYLE_HELP = "The image whose style (colors, brush strokes, texture) is painted onto the layer"

OPTIONS = (
    Option("style_file", "file", None, "Style _image", _STYLE_HELP, core=False),
    Option("style_file_2", "file", None, "Style image _2",
           "A second style image, blended with the first (empty: none)", core=False),
    Option("style_file_3", "file", None, "Style image _3",
           "A third style image, blended with the others (empty: none)", core=False,
           gimp=(3,)),
    Option("style_layer", "drawable", None, "Style _from an open layer",
           "A layer of any open image used as a style too, blended with the style images "
           "(empty: none)", core=False, gimp=(3,)),
    Option("style_weights", "text", "", "Style _weights",
           "How much each style counts, in order: style image, 2, 3, then the open layer; "
           "e.g. \"2, 1\". Empty: all the same",
           label2="Style weights (one per style, e.g. 2, 1; empty: all the same)", core=False),
    Option("preset", "choice", "standard", "_Quality",
           "Quality preset: more iterations look better and take longer",
           choices=PRESET_CHOICES),
    Option("size_mode", "choice", "auto", "_Paint at",
           "The size the painting is computed at; the result always covers the whole layer. "
           "Bigger is finer and slower.", choices=SIZE_MODE_CHOICES,
           label2="Paint at (the result always covers the layer)"),
    Option("size", "int", 1024, "Custom si_ze (px)",
           "With 'Custom size': the long side the painting is computed at, in pixels (0 = the "
           "layer's own size). Above the layer's size it is computed larger and scaled down.",
           low=0, high=MAX_SIZE, step=1, label2="Custom size (long side, px; 0 = layer size)",
           zero="the layer's own size", least=MIN_SIZE),
    Option("style_scale", "float", 1.0, "Style sc_ale",
           "Size of the style image relative to the painting (never past the style image's own "
           "size): larger gives bigger brush strokes", low=0.1, high=8.0, step=0.1,
           label2="Style scale (bigger brush strokes)"),
    Option("strength", "float", 1.0, "Style stren_gth",
           "How strongly the style is applied: 1 is the preset's balance, higher is more style",
           low=0.0, high=10.0, step=0.1),
    Option("colors", "choice", "style", "_Keep colors",
           "Whether the result keeps the layer's own colors, and how", choices=COLOR_CHOICES,
           label2="Keep the layer's colors"),
    Option("model", "choice", "vgg19", "_Network",
           "The neural network whose features define content and style", choices=MODEL_CHOICES,
           advanced=True),
    Option("style_loss", "choice", "gram", "St_yle loss",
           "How the painting's style is compared with the style image's",
           choices=STYLE_LOSS_CHOICES, advanced=True),
    Option("device", "choice", "auto", "_Device", "Where the neural network runs",
           choices=DEVICE_CHOICES, advanced=True),
    Option("seed", "int", 0, "Random s_eed", "The same seed and settings give the same result",
           low=0, high=MAX_SEED, advanced=True),
    Option("max_memory", "float", 0.0, "_Memory limit (GB)",
           "The most memory the painting may use: 0 = automatic (most of what is free), else "
           "at least {:g} GB. Larger layers are painted in blocks within it, with the same "
           "result.".format(MIN_MEMORY_GB),
           low=0.0, high=1024.0, label2="Memory limit (GB; 0 = automatic)", advanced=True,
           zero="automatic", least=MIN_MEMORY_GB),
    # Not a core option: the bridge sends it as the request's auto_seconds.
    Option("auto_minutes", "float", 10.0, "_Time limit for Automatic (min)",
           "With 'Paint at: Automatic': the longest a run may take on this machine before the "
           "painting is computed smaller than the layer (and enlarged, softer at 100 %)",
           low=0.5, high=1440.0, label2="Time limit for Automatic (minutes)", core=False,
           advanced=True),
)

BY_NAME = dict((o.name, o) for o in OPTIONS)


def for_gimp(version):
    """The options GIMP `version` (2 or 3) shows, in dialog order."""
    return [o for o in OPTIONS if version in o.gimp]


def choice_values(name):
    return BY_NAME[name].values
