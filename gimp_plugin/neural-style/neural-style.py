#!/usr/bin/env python3
# Neural Style for GIMP 3.0 / 3.2: paints the selected layer(s) in the style of an artwork
# (Gatys et al., "A Neural Algorithm of Artistic Style") and adds the result as a new layer.
#
# This plug-in is thin on purpose: it reads the layer's pixels (and the selection), hands them to
# the neural style core through nst_bridge.py (which lives in this folder) and writes the answer
# into a new layer. All the pixel work - the network, resizing, alpha and selection compositing -
# happens in the core, a separate Python process with PyTorch (GIMP's own Python has no torch).
#
# Procedure "plug-in-neural-style", menu Filters > Artistic > Neural Style Transfer...
# Arguments (also for scripts): style-file (file), preset (choice), size-mode (choice: auto,
# layer, custom), size (int, for custom), style-scale (double), strength (double),
# preserve-colors (bool), device (choice), seed (int), max-memory (double, GB, 0 = automatic).
#
# MIT license, see the project's README.

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GimpUi, GLib, GObject  # noqa: E402

try:
    import nst_bridge  # noqa: E402
    _BRIDGE_ERROR = None
except Exception as e:  # noqa: BLE001 - shown to the user when the filter runs
    nst_bridge = None
    _BRIDGE_ERROR = e

PROC_NAME = "plug-in-neural-style"
MENU_PATH = "<Image>/Filters/Artistic"
LABEL = "Neural Style Transfer..."

# Only used when nst_bridge.py cannot be imported, so that the filter still shows up in the menu
# and can say what is wrong; the real values are nst_bridge.PRESETS / DEVICES / DEFAULTS.
if nst_bridge is not None:
    PRESETS, DEVICES, DEFAULTS = nst_bridge.PRESETS, nst_bridge.DEVICES, nst_bridge.DEFAULTS
    SIZE_MODES, MAX_SIZE = nst_bridge.SIZE_MODES, nst_bridge.MAX_SIZE
else:
    PRESETS, DEVICES, SIZE_MODES, MAX_SIZE = ("standard",), ("auto",), ("auto",), 16384
    DEFAULTS = dict(preset="standard", size_mode="auto", size=1024, strength=1.0,
                    preserve_colors=False, device="auto", seed=0, style_scale=1.0,
                    max_memory=0.0)

PRESET_LABELS = {
    "draft": ("Draft (a quick look)", "Few iterations: seconds to a minute or two"),
    "standard": ("Standard", "Good quality for its time: coarse-to-fine, the default"),
    "high": ("High (slow)", "More iterations at every scale"),
    "classic": ("Classic (very slow)",
                "The original recipe: one scale, L-BFGS, 1000 iterations, noise start"),
}
DEVICE_LABELS = {
    "auto": ("Automatic", "A GPU when there is one (CUDA or Apple), else the CPU"),
    "cpu": ("CPU", "The processor: works everywhere, slowest"),
    "cuda": ("NVIDIA GPU (CUDA)", "An NVIDIA graphics card"),
    "mps": ("Apple GPU (MPS)", "The GPU of an Apple Silicon Mac"),
}
SIZE_MODE_LABELS = {
    "auto": ("Automatic (a few minutes at most)",
             "The layer's own size where that takes a few minutes on this machine, else the "
             "largest size that does"),
    "layer": ("The layer's own size", "Every pixel of the layer painted: slowest, finest"),
    "custom": ("Custom size", "The long side given below"),
}
MAX_SEED = 2147483647  # G_MAXINT

RW = GObject.ParamFlags.READWRITE


def _choice(nicks, labels):
    choice = Gimp.Choice.new()
    for i, nick in enumerate(nicks):
        label, help_text = labels.get(nick, (nick.title(), ""))
        choice.add(nick, i, label, help_text)
    return choice


def _add_file_argument(procedure, name, nick, blurb):
    try:  # GIMP 3.0 and 3.2: (name, nick, blurb, action, none_ok, default_file, flags)
        procedure.add_file_argument(name, nick, blurb, Gimp.FileChooserAction.OPEN,
                                    True, None, RW)
    except TypeError:  # the GIMP 2.99 development series: (name, nick, blurb, flags)
        procedure.add_file_argument(name, nick, blurb, RW)


def _error(procedure, message, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    return procedure.new_return_values(status, GLib.Error(message))


def _sample_type(image):
    """(babl type, protocol format) matching the image's precision: a 16-bit image is read and
    written as 16 bits, float (and half/32-bit/double) images as float."""
    name = image.get_precision().value_nick  # e.g. "u8-non-linear", "u16-linear", "half-linear"
    if name.startswith("u8"):
        return "u8", "u8"
    if name.startswith("u16"):
        return "u16", "u16"
    return "float", "f32"


def _offsets(drawable):
    values = drawable.get_offsets()  # (success, x, y) in GIMP 3.0
    return int(values[-2]), int(values[-1])


def _read(drawable, x, y, w, h, fmt):
    buf = drawable.get_buffer()
    return buf.get(Gegl.Rectangle.new(x, y, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE)


def _refusal_for_mode(image):
    """Why this image cannot be painted, or None. The menu only offers the filter on RGB and
    greyscale images, but a script can pass any image: an indexed one would come back quantised
    to its old palette, so it is refused before any work."""
    base = image.get_base_type()
    if base in (Gimp.ImageBaseType.RGB, Gimp.ImageBaseType.GRAY):
        return None
    kind = ("indexed (it uses a colour palette)" if base == Gimp.ImageBaseType.INDEXED
            else f"of mode {base.value_nick}")
    return (f"Neural style works on RGB and greyscale images, and this image is {kind}. "
            "Convert it with Image > Mode > RGB, then run the filter again.")


def _copy_mask(source, new):
    """Give `new` a copy of the source's layer mask, with its apply and show settings, so that
    what the mask hides stays hidden and the user can still edit the mask."""
    mask = source.get_mask()
    if mask is None:
        return
    copy = new.create_mask(Gimp.AddMaskType.WHITE)
    if not new.add_mask(copy):
        raise RuntimeError(f"GIMP could not add a layer mask to \"{new.get_name()}\"")
    w, h = new.get_width(), new.get_height()  # a mask always has its layer's size
    rect = Gegl.Rectangle.new(0, 0, w, h)
    buf = copy.get_buffer()
    mask.get_buffer().copy(rect, Gegl.AbyssPolicy.NONE, buf, rect)  # same format: exact
    buf.flush()
    copy.update(0, 0, w, h)
    new.set_apply_mask(source.get_apply_mask())
    new.set_show_mask(source.get_show_mask())
    new.set_edit_mask(False)  # add_mask selects the mask; the source's pixels were selected


def _style_stem(path):
    return os.path.splitext(os.path.basename(path))[0] or "style"


def _estimate_text(answer, config, width, height):
    """What the run will cost here, for the dialog: the size it computes at and the time."""
    if isinstance(answer, str):
        return f"Layer {width}x{height} px. No time estimate: {answer}"
    preset, mode = config.get_property("preset"), config.get_property("size-mode")
    long_side = max(width, height)
    if mode == "auto":
        size = min(answer["auto_size"].get(preset, long_side), long_side)
        limit = nst_bridge.format_duration(answer["auto_seconds"]).replace("about ", "")
        why = ("the layer's own size" if size >= long_side else
               f"the largest size that takes at most {limit} here")
    elif mode == "layer":
        size, why = long_side, "the layer's own size"
    else:
        size = config.get_property("size") or long_side
        why = "enlarged: slower, no finer" if size > long_side else "custom"
    seconds = nst_bridge.estimated_seconds(answer, preset, size)
    device = answer.get("device", "this machine")
    took = (f"{nst_bridge.format_duration(seconds)} on {device}" if seconds is not None
            else "does not fit in memory here: choose a smaller size")
    return f"Layer {width}x{height} px, painted at {size} px ({why}): {took}."


def _show_dialog(procedure, config, layers):
    GimpUi.init("neural-style.py")
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config,
                                    title="Neural Style Transfer")
    dialog.get_spin_scale("strength", 1.0)
    # The time estimate: one question to the core (it measures this machine once, then caches),
    # then every change of the settings is answered here, on GTK's own thread.
    width, height = max(((lay.get_width(), lay.get_height()) for lay in layers),
                        key=lambda size: size[0] * size[1])
    try:
        answer = nst_bridge.estimate(dict(device=config.get_property("device")), width, height)
    except nst_bridge.BridgeError as e:
        answer = e.message
    label = dialog.get_label("estimate", _estimate_text(answer, config, width, height),
                             False, False)
    if hasattr(label, "set_line_wrap"):
        label.set_line_wrap(True)
        label.set_max_width_chars(60)

    def update(*_):
        label.set_text(_estimate_text(answer, config, width, height))

    config.connect("notify", update)
    dialog.fill(["style-file", "preset", "size-mode", "size", "estimate", "style-scale",
                 "strength", "preserve-colors", "device", "seed", "max-memory"])
    ok = dialog.run()
    dialog.destroy()
    return ok


def neural_style(procedure, run_mode, image, drawables, config, data):
    if nst_bridge is None:
        folder = os.path.dirname(os.path.abspath(__file__))
        return _error(procedure, f"The Neural Style plug-in is incomplete: nst_bridge.py could "
                      f"not be loaded from {folder} ({_BRIDGE_ERROR}). Run the installer again "
                      "to repair it.")
    refusal = _refusal_for_mode(image)
    if refusal:
        return _error(procedure, refusal)
    layers = [d for d in drawables or [] if isinstance(d, Gimp.Layer)]
    if not layers:
        return _error(procedure, "Neural style works on layers: select one or more layers "
                      "(not a channel or a layer mask).")
    if run_mode == Gimp.RunMode.INTERACTIVE and not _show_dialog(procedure, config, layers):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

    style = config.get_property("style-file")
    style_path = style.get_path() if style is not None else None
    if style is not None and not style_path:
        return _error(procedure, f"The style image {style.get_uri()} is not a local file; "
                      "save it to disk first.")
    options = dict((name, config.get_property(name.replace("_", "-"))) for name in DEFAULTS)

    Gegl.init(None)
    babl_type, sample_format = _sample_type(image)
    grey = image.get_base_type() == Gimp.ImageBaseType.GRAY
    pixel_format = ("Y'A " if grey else "R'G'B'A ") + babl_type
    mask_format = "Y " + babl_type  # the selection's own (linear) coverage values
    has_selection = not Gimp.Selection.is_empty(image)

    jobs = []
    for layer in layers:
        w, h = layer.get_width(), layer.get_height()
        x, y = _offsets(layer)
        mask = None
        if has_selection:
            if not layer.mask_intersect()[0]:
                continue  # the selection does not touch this layer
            mask = dict(width=w, height=h, format=sample_format,
                        data=_read(image.get_selection(), x, y, w, h, mask_format))
        jobs.append((layer, x, y, w, h, mask))
    if not jobs:
        return _error(procedure, "The selection does not touch the selected layer(s). "
                      "Select an area inside the layer, or Select > None.")

    # 1. Run the core for every layer. Nothing in the image changes until all results are back,
    #    so an error - or GIMP killing this plug-in when the user cancels - leaves it as it was.
    Gimp.progress_init("Neural style: starting")
    results = []
    count = len(jobs)
    for i, (layer, x, y, w, h, mask) in enumerate(jobs):
        prefix = "" if count == 1 else f"Layer {i + 1}/{count}: "

        def on_progress(fraction, text, i=i, prefix=prefix):
            Gimp.progress_set_text(prefix + text)
            Gimp.progress_update((i + fraction) / count)

        content = dict(width=w, height=h, channels=2 if grey else 4, format=sample_format,
                       data=_read(layer, 0, 0, w, h, pixel_format))
        try:
            result = nst_bridge.run(options, content, [style_path] if style_path else [],
                                    mask=mask, result_format=sample_format,
                                    on_progress=on_progress)
        except nst_bridge.BridgeError as e:
            Gimp.progress_end()
            return _error(procedure, e.message)
        except Exception as e:  # noqa: BLE001 - a bug, but still one message, image untouched
            Gimp.progress_end()
            return _error(procedure, f"Neural style failed unexpectedly: "
                          f"{type(e).__name__}: {e}")
        results.append((layer, x, y, w, h, result["data"]))
    Gimp.progress_update(1.0)

    # 2. Add the results as new layers above their sources: one undo step for everything.
    stem = _style_stem(style_path)
    layer_type = Gimp.ImageType.GRAYA_IMAGE if grey else Gimp.ImageType.RGBA_IMAGE
    added = []
    image.undo_group_start()
    try:
        for layer, x, y, w, h, pixels in results:
            new = Gimp.Layer.new(image, f"{layer.get_name()} ({stem})", w, h,
                                 layer_type, 100.0, Gimp.LayerMode.NORMAL)
            image.insert_layer(new, layer.get_parent(), image.get_item_position(layer))
            added.append(new)
            new.set_offsets(x, y)
            buf = new.get_buffer()
            buf.set(Gegl.Rectangle.new(0, 0, w, h), pixel_format, pixels)
            buf.flush()
            new.update(0, 0, w, h)
            _copy_mask(layer, new)
        # Inserting a layer selects only it: select every result, as the sources were.
        image.set_selected_layers(added)
    except Exception as e:  # noqa: BLE001 - one readable message, the image as it was
        for new in added:
            if new.is_valid():
                image.remove_layer(new)
        return _error(procedure, f"Adding the neural style layer failed: {e}")
    finally:
        image.undo_group_end()
        Gimp.progress_end()
    if run_mode != Gimp.RunMode.NONINTERACTIVE:
        Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


class NeuralStyle(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROC_NAME]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN,
                                            neural_style, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE
                                       | Gimp.ProcedureSensitivityMask.DRAWABLES)
        procedure.set_menu_label(LABEL)
        procedure.add_menu_path(MENU_PATH)
        procedure.set_documentation(
            "Paint the layer in the style of an artwork (neural style transfer)",
            "Repaints each selected layer in the style of a chosen image - a painting, a "
            "drawing, a photo - with the neural algorithm of Gatys et al. The result is a new "
            "layer above the original (which is left as it was), with a copy of its layer "
            "mask, limited to the selection if there is one. One undo step removes it. RGB and "
            "greyscale images only (convert an indexed one with Image > Mode > RGB). The work "
            "runs in a separate neural style core (PyTorch) on a GPU or the CPU; GIMP's "
            "progress bar shows its progress and cancelling stops it.",
            name)
        procedure.set_attribution("Neural Style for GIMP contributors",
                                  "Neural Style for GIMP contributors (MIT license)", "2025")

        _add_file_argument(procedure, "style-file", "St_yle image",
                           "The image whose style (colours, brush strokes, texture) is painted "
                           "onto the layer")
        procedure.add_choice_argument(
            "preset", "_Quality", "Quality preset: more iterations look better and take longer",
            _choice(PRESETS, PRESET_LABELS), DEFAULTS["preset"], RW)
        procedure.add_choice_argument(
            "size-mode", "_Paint at",
            "The size the painting is computed at; the result always covers the whole layer. "
            "Bigger is finer and slower.",
            _choice(SIZE_MODES, SIZE_MODE_LABELS), DEFAULTS["size_mode"], RW)
        procedure.add_int_argument(
            "size", "Custom si_ze (px)",
            "With 'Custom size': the long side the painting is computed at, in pixels (0 = the "
            "layer's own size). Above the layer's size it is computed larger and scaled down.",
            0, MAX_SIZE, int(DEFAULTS["size"]), RW)
        procedure.add_double_argument(
            "style-scale", "St_yle scale",
            "Size of the style image relative to the painting (never past the style image's own "
            "size): larger gives bigger brush strokes",
            0.1, 8.0, float(DEFAULTS["style_scale"]), RW)
        procedure.add_double_argument(
            "strength", "Style _strength",
            "How strongly the style is applied: 1 is the preset's balance, higher is more style",
            0.0, 10.0, float(DEFAULTS["strength"]), RW)
        procedure.add_boolean_argument(
            "preserve-colors", "_Keep original colours",
            "Take only the style's brush strokes and texture, keep the layer's own colours",
            bool(DEFAULTS["preserve_colors"]), RW)
        procedure.add_choice_argument(
            "device", "_Device", "Where the neural network runs",
            _choice(DEVICES, DEVICE_LABELS), DEFAULTS["device"], RW)
        procedure.add_int_argument(
            "seed", "Ra_ndom seed", "The same seed and settings give the same result",
            0, MAX_SEED, int(DEFAULTS["seed"]), RW)
        procedure.add_double_argument(
            "max-memory", "_Memory limit (GB)",
            "The most memory the painting may use (0 = automatic: most of what is free). "
            "Larger layers are painted in blocks within it, with the same result.",
            0.0, 1024.0, float(DEFAULTS["max_memory"]), RW)
        return procedure


Gimp.main(NeuralStyle.__gtype__, sys.argv)
