#!/usr/bin/env python3
# Neural Style for GIMP 3.0 / 3.2: paints the selected layer(s) in the style of an artwork
# (Gatys et al., "A Neural Algorithm of Artistic Style") and adds the result as a new layer.
#
# This plug-in is thin on purpose: it reads the layer's pixels (and the selection), hands them to
# the neural style core through nst_bridge.py (which lives in this folder) and writes the answer
# into a new layer. Beside it: nst_gimp_layers.py (reading GIMP: pixels, styles, the dialog's
# values) and nst_gimp_dialog.py (the dialog and its live preview). All the pixel work - the
# network, resizing, alpha and selection compositing - happens in the core, a separate Python
# process with PyTorch (GIMP's own Python has no torch).
#
# Procedure "plug-in-neural-style", menu Filters > Artistic > Neural Style Transfer...
# Arguments (also for scripts), defined in nst_options.py (this folder): style-file,
# style-file-2, style-file-3 (files), style-layer (a drawable of any open image), style-weights
# (text, one per style, e.g. "2, 1"), preset, size-mode (auto, layer, custom), size (int, for
# custom), style-scale, strength, colors (style, luminance, histogram), model (vgg19, vgg16),
# style-loss (gram, w2), device, seed, max-memory (GB, 0 = automatic), auto-minutes (the time
# limit for size-mode auto).
#
# MIT license, see the project's README.

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

try:  # the arguments (nst_options), the core (nst_bridge), reading GIMP and the dialog: here
    import nst_bridge  # noqa: E402
    import nst_gimp_dialog  # noqa: E402
    import nst_gimp_layers  # noqa: E402
    import nst_options  # noqa: E402
    _BRIDGE_ERROR = None
except Exception as e:  # noqa: BLE001 - shown to the user when the filter runs
    nst_bridge = nst_gimp_dialog = nst_gimp_layers = nst_options = None
    _BRIDGE_ERROR = e

PROC_NAME = "plug-in-neural-style"
MENU_PATH = "<Image>/Filters/Artistic"
LABEL = "Neural Style Transfer..."

RW = GObject.ParamFlags.READWRITE


def _choice(choices):
    choice = Gimp.Choice.new()
    for i, (nick, label, help_text) in enumerate(choices):
        choice.add(nick, i, label, help_text)
    return choice


def _add_argument(procedure, option):
    """One argument from its row in nst_options.OPTIONS."""
    o, name = option, option.arg
    if o.kind == "file":
        _add_file_argument(procedure, name, o.label, o.help)
    elif o.kind == "drawable":  # none_ok: no style layer is the usual case
        procedure.add_drawable_argument(name, o.label, o.help, True, RW)
    elif o.kind == "text":
        procedure.add_string_argument(name, o.label, o.help, o.default, RW)
    elif o.kind == "choice":
        procedure.add_choice_argument(name, o.label, o.help, _choice(o.choices), o.default, RW)
    elif o.kind == "int":
        procedure.add_int_argument(name, o.label, o.help, o.low, o.high, o.default, RW)
    elif o.kind == "float":
        procedure.add_double_argument(name, o.label, o.help, o.low, o.high, o.default, RW)
    elif o.kind == "bool":
        procedure.add_boolean_argument(name, o.label, o.help, o.default, RW)
    else:
        raise ValueError(f"nst_options: unknown kind {o.kind!r} of {o.name}")


def _add_file_argument(procedure, name, nick, blurb):
    # ANY, not OPEN: with OPEN, GIMP itself refuses a missing file a script passes, with "value
    # '<not transformable to string>' ... out of range"; the plug-in says which file instead.
    # The dialog shows an "open" chooser of its own for it (_file_choosers).
    try:  # GIMP 3.0 and 3.2: (name, nick, blurb, action, none_ok, default_file, flags)
        procedure.add_file_argument(name, nick, blurb, Gimp.FileChooserAction.ANY,
                                    True, None, RW)
    except TypeError:  # the GIMP 2.99 development series: (name, nick, blurb, flags)
        procedure.add_file_argument(name, nick, blurb, RW)


def _error(procedure, message, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    return procedure.new_return_values(status, GLib.Error(message))


def neural_style(procedure, run_mode, image, drawables, config, data):
    if nst_bridge is None:
        folder = os.path.dirname(os.path.abspath(__file__))
        return _error(procedure, f"The Neural Style plug-in is incomplete: its modules "
                      f"(nst_*.py) could not be loaded from {folder} ({_BRIDGE_ERROR}). "
                      "Run the installer again to repair it.")
    refusal = nst_gimp_layers.refusal_for_mode(image)
    if refusal:
        return _error(procedure, refusal)
    layers = [d for d in drawables or [] if isinstance(d, Gimp.Layer)]
    if not layers:
        return _error(procedure, "Neural style works on layers: select one or more layers "
                      "(not a channel or a layer mask).")
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    if interactive and not nst_gimp_dialog.show_dialog(procedure, config, layers):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

    try:
        options, styles, names = nst_gimp_layers.settings(config)
    except ValueError as e:
        return _error(procedure, str(e))
    except nst_bridge.BridgeError as e:
        return _error(procedure, e.message)

    Gegl.init(None)
    babl_type, sample_format = nst_gimp_layers.sample_type(image)
    grey = image.get_base_type() == Gimp.ImageBaseType.GRAY
    pixel_format = ("Y'A " if grey else "R'G'B'A ") + babl_type
    mask_format = "Y " + babl_type  # the selection's own (linear) coverage values
    has_selection = not Gimp.Selection.is_empty(image)

    jobs = []
    for layer in layers:
        w, h = layer.get_width(), layer.get_height()
        x, y = nst_gimp_layers.offsets(layer)
        mask = None
        if has_selection:
            if not layer.mask_intersect()[0]:
                continue  # the selection does not touch this layer
            mask = dict(width=w, height=h, format=sample_format,
                        data=nst_gimp_layers.read(image.get_selection(), x, y, w, h, mask_format))
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
                       data=nst_gimp_layers.read(layer, 0, 0, w, h, pixel_format))
        try:
            result = nst_bridge.run(options, content, styles, mask=mask,
                                    result_format=sample_format, on_progress=on_progress)
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
    stem = " + ".join(names)
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
            nst_gimp_layers.copy_mask(layer, new)
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
            "mask, limited to the selection if there is one. One undo step removes it. Up to "
            "three style images and a layer of any open image can be blended, with a weight "
            "each. RGB and grayscale images only (convert an indexed one with Image > Mode > "
            "RGB). The work runs in a separate neural style core (PyTorch) on a GPU or the "
            "CPU; GIMP's progress bar shows its progress and canceling stops it.",
            name)
        procedure.set_attribution("Neural Style for GIMP contributors",
                                  "Neural Style for GIMP contributors (MIT license)", "2025")

        if nst_options is not None:  # else the filter only says what is missing
            for option in nst_options.for_gimp(3):
                _add_argument(procedure, option)
        return procedure


Gimp.main(NeuralStyle.__gtype__, sys.argv)
