#!/usr/bin/env python2
# -*- coding: utf-8 -*-
"""Neural Style Transfer for GIMP 2.10 (gimpfu, Python 2.7).

Filters > Artistic > Neural Style Transfer... paints the active layer in the style of one or
two chosen images (blended by their weights) and puts the result in a new layer above it. The deep learning runs in a separate Python 3
process (the "core"); nst_bridge.py, installed beside this file, finds it and talks to it.
The arguments are nst_options.py's (also beside this file), as the GIMP 3 plug-in's, as far as
GIMP 2.10 allows: two style files (GIMP 3: three, and a layer of an open image); the new layer
carries a copy of the source's layer mask; indexed images are refused.

This file must stay Python 2.7 AND 3 compatible (GIMP 2.10 on Windows and macOS bundles
Python 2.7; the tests import it under Python 3 with a fake gimpfu): no f-strings, no
keyword-only arguments, no Python-3-only library calls. tests/test_gimp2_plugin.py checks it
with vermin.

Bit depth. GIMP 2.10 images can be 8/16/32-bit integer or 16/32/64-bit float, with linear or
perceptual (sRGB) values, but gimpfu's pixel regions hand out 8-bit perceptual data unless the
plug-in calls gimp-plugin-enable-precision, after which they carry the drawable's own format.
This plug-in does that for 16-bit integer and 32-bit float images in perceptual gamma, which it
sends to the core as "u16" / "f32" and gets back at the same depth. Every other precision
(linear light, 32-bit integer, half and double float) is read and written as 8-bit perceptual
data, which GIMP converts to and from the image's precision: the new layer then holds 8-bit
worth of levels. A layer mask is copied to the new layer the same way. The source layer is
never touched either way.
"""

from __future__ import absolute_import, division, print_function

import array
import os
import sys
import traceback

import gimpfu
from gimpfu import (GRAY, GRAYA_IMAGE, INDEXED, NORMAL_MODE, PF_BOOL, PF_DRAWABLE, PF_FILE,
                    PF_FLOAT, PF_IMAGE, PF_INT, PF_OPTION, PF_SLIDER, PF_SPINNER, PF_STRING, RGB,
                    RGBA_IMAGE, gimp, main, pdb, register)

# nst_bridge.py is installed in this plug-in's own folder; GIMP does not put it on sys.path.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

try:
    import nst_options
except Exception as _e:  # a missing or broken table: register anyway, say so when run
    nst_options = None
    _BRIDGE_ERROR = "%s" % (_e,)
try:
    import nst_bridge
    _BRIDGE_ERROR = None
except Exception as _e:  # a missing or broken bridge: register anyway, say so when run
    nst_bridge = None
    _BRIDGE_ERROR = "%s" % (_e,)

PROC_NAME = "python-fu-neural-style"
MENU = "<Image>/Filters/Artistic"
LABEL = "Neural Style Transfer..."
IMAGE_TYPES = "RGB*, GRAY*"
# The procedure's values after image and drawable: nst_options' rows for GIMP 2.10, in order
# (none without the table: then the procedure only says what is missing).
OPTIONS = nst_options.for_gimp(2) if nst_options is not None else []

# GIMP 2.10's default "Normal" layer mode; GIMP 2.8 only knows the legacy one.
LAYER_MODE = getattr(gimpfu, "LAYER_MODE_NORMAL", NORMAL_MODE)

ADD_MASK_WHITE = 0  # GimpAddMaskType (gimpfu calls it ADD_WHITE_MASK or ADD_MASK_WHITE)

# GimpPrecision values (GIMP 2.10) whose native pixels we send as they are.
PRECISION_U16_GAMMA = 250
PRECISION_FLOAT_GAMMA = 650
_NATIVE_PRECISIONS = (PRECISION_U16_GAMMA, PRECISION_FLOAT_GAMMA)

_PY2 = sys.version_info[0] == 2
_TEXT = type(u"")
_SAMPLE = {"u8": ("B", 1, 255), "u16": ("H", 2, 65535), "f32": ("f", 4, 1.0)}
_FORMAT_BY_BYTES = {1: "u8", 2: "u16", 4: "f32"}


class PluginError(Exception):
    """A problem the user can act on; its message is shown as it is."""


# -- small Python 2/3 helpers ----------------------------------------------------------------------


def _native(text):
    """A str for GIMP: Python 2's gimp.message() and gimp.Layer() want byte strings."""
    if _PY2 and isinstance(text, _TEXT):
        return text.encode("utf-8")
    return text


def _fs_path(path):
    """The path as the file system wants it: GTK gives UTF-8 bytes, which Python 2 on Windows
    would read in the ANSI code page."""
    if _PY2 and os.name == "nt" and isinstance(path, bytes):
        try:
            return path.decode("utf-8")
        except UnicodeDecodeError:
            return path
    return path


def _to_array(fmt, data):
    values = array.array(_SAMPLE[fmt][0])
    if _PY2:
        values.fromstring(data)
    else:
        values.frombytes(data)  # novermin: Python 3 only, guarded
    if sys.byteorder == "big" and fmt != "u8":
        values.byteswap()  # the protocol is little-endian; GIMP hands out native order
    return values


def _to_bytes(values, fmt):
    if sys.byteorder == "big" and fmt != "u8":
        values = array.array(values.typecode, values)
        values.byteswap()
    if _PY2:
        return values.tostring()
    return values.tobytes()  # novermin: Python 3 only, guarded


def _native_order(data, fmt):
    """Little-endian protocol bytes <-> GIMP's native byte order (a no-op on every GIMP host
    we know of, which are all little-endian)."""
    if sys.byteorder == "big" and fmt != "u8":
        return _to_bytes(_to_array(fmt, data), fmt)
    return data


def _add_alpha(data, fmt, pixels, colours):
    """Interleave an opaque alpha channel after `colours` channels."""
    src = _to_array(fmt, data)
    code, _, opaque = _SAMPLE[fmt]
    step = colours + 1
    out = array.array(code, [0]) * (pixels * step)
    for c in range(colours):
        out[c::step] = src[c::colours]
    out[colours::step] = array.array(code, [opaque]) * pixels
    return _to_bytes(out, fmt)


def _error_text(error):
    if nst_bridge is not None and isinstance(error, nst_bridge.BridgeError):
        return error.message
    if isinstance(error, PluginError):
        return error.args[0]
    try:
        detail = u"%s" % (error,) if _PY2 else "%s" % (error,)
    except UnicodeError:
        detail = repr(error)
    return u"Neural Style Transfer failed unexpectedly (%s: %s). Please report this." % (
        type(error).__name__, detail)


# -- reading the layer ---------------------------------------------------------------------------


def _precision(image):
    """The image's GimpPrecision, or None where GIMP has none (2.8: always 8-bit). Asking the
    PDB first keeps GIMP 2.8 from showing a "procedure not found" error."""
    if not pdb.gimp_procedural_db_proc_exists("gimp-image-get-precision"):
        return None
    return pdb.gimp_image_get_precision(image)


def _channels(image, drawable):
    colours = 1 if image.base_type == GRAY else 3
    return colours, colours + (1 if drawable.has_alpha else 0)


def _read_rect(drawable, x, y, width, height):
    """Pixels of drawable-local rectangle (x, y, width, height) as one string."""
    region = drawable.get_pixel_rgn(x, y, width, height, False, False)
    return region[x:x + width, y:y + height]


def _read_layer(image, drawable):
    """The layer's pixels as the bridge's content dict, always with an alpha channel so that
    the core can fold the selection into it."""
    width, height = drawable.width, drawable.height
    colours, channels = _channels(image, drawable)
    bpp = drawable.bpp
    if bpp % channels or (bpp // channels) not in _FORMAT_BY_BYTES:
        raise PluginError("Neural Style Transfer cannot read this layer: %d bytes per pixel for "
                          "%d channel(s) is not a format it knows." % (bpp, channels))
    fmt = _FORMAT_BY_BYTES[bpp // channels]
    data = _read_rect(drawable, 0, 0, width, height)
    if len(data) != width * height * bpp:
        raise PluginError("Neural Style Transfer read %d bytes from the layer instead of %d."
                          % (len(data), width * height * bpp))
    if channels == colours:
        data = _add_alpha(data, fmt, width * height, colours)
        channels += 1
    else:
        data = _native_order(data, fmt)
    return dict(width=width, height=height, channels=channels, format=fmt, data=data)


def _read_mask(image, drawable):
    """The selection over the layer's area (dict for the bridge), or None without a selection.
    Parts of the layer outside the canvas count as not selected."""
    if pdb.gimp_selection_is_empty(image):
        return None
    non_empty, _x, _y, _w, _h = pdb.gimp_drawable_mask_intersect(drawable)
    if not non_empty:
        raise PluginError("The selection does not touch the layer \"%s\": select part of the "
                          "layer, or nothing to stylise all of it." % drawable.name)
    selection = pdb.gimp_image_get_selection(image)
    width, height = drawable.width, drawable.height
    off_x, off_y = drawable.offsets
    # the selection channel has the canvas' size; clip the layer's rectangle to it
    x0, y0 = max(off_x, 0), max(off_y, 0)
    x1, y1 = min(off_x + width, image.width), min(off_y + height, image.height)
    sample = selection.bpp
    fmt = _FORMAT_BY_BYTES.get(sample)
    if fmt is None:
        raise PluginError("Neural Style Transfer cannot read the selection (%d bytes per pixel)."
                          % sample)
    if (x0, y0, x1, y1) == (off_x, off_y, off_x + width, off_y + height):
        data = _read_rect(selection, x0, y0, width, height)
    else:
        rows = []
        zeros = b"\0" * (width * sample)
        inside = _read_rect(selection, x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else b""
        left = b"\0" * ((x0 - off_x) * sample)
        right = b"\0" * ((off_x + width - x1) * sample)
        row_bytes = (x1 - x0) * sample
        for row in range(height):
            y = off_y + row
            if y0 <= y < y1:
                start = (y - y0) * row_bytes
                rows.append(left + inside[start:start + row_bytes] + right)
            else:
                rows.append(zeros)
        data = b"".join(rows)
    return dict(width=width, height=height, format=fmt, data=_native_order(data, fmt))


# -- the procedure -------------------------------------------------------------------------------


def _choice(value, names, what):
    """PF_OPTION's index -> the name (negative indices are errors, not Python's from-the-end)."""
    try:
        index = int(value)
    except (TypeError, ValueError):
        index = -1
    if not 0 <= index < len(names):
        raise PluginError("Unknown %s %r: use 0 to %d (%s)."
                          % (what, value, len(names) - 1, ", ".join(names)))
    return names[index]


def _number(option, value):
    """A number within the option's range. Interactive runs hand PF_SPINNER values over as
    floats, and a script may give any number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if option.kind == "int" and number == number:
        number = int(round(number))
    if not option.low <= number <= option.high:
        raise PluginError("%s must be %s to %s, not %s." % (
            option.label2.split(" (")[0], _plain(option.low), _plain(option.high), value))
    return number


def _plain(number):
    return "%g" % number


def _options(values):
    """gimpfu's values, in OPTIONS' order -> (style files, the bridge's options). PF_OPTION
    gives the chosen item's index, PF_TOGGLE a bool, PF_FILE a path or None."""
    styles, options = [], {}
    for option, value in zip(OPTIONS, values):
        if option.kind == "file":
            if value:
                styles.append(value)
        elif option.kind == "choice":
            options[option.name] = _choice(value, option.values, option.name.replace("_", " "))
        elif option.kind in ("int", "float"):
            options[option.name] = _number(option, value)
        elif option.kind == "bool":
            options[option.name] = bool(value)
        else:
            options[option.name] = value
    return styles, options


def _check_styles(style_files):
    if not style_files:
        raise PluginError("Choose a style image (a painting or a photo whose look the layer "
                          "should take).")
    paths = []
    for style_file in style_files:
        path = _fs_path(style_file)
        if not os.path.isfile(path):
            raise PluginError("The style image %s does not exist." % style_file)
        paths.append(path)
    return paths


def _check_mode(image):
    """Refuse anything but RGB and greyscale. The menu only offers the filter there, but a
    script can pass any image, and an indexed one would come back quantised to its palette."""
    if image.base_type in (RGB, GRAY):
        return
    kind = ("indexed (it uses a color palette)" if image.base_type == INDEXED
            else "of mode %d" % image.base_type)
    raise PluginError("Neural Style Transfer works on RGB and grayscale images, and this image "
                      "is %s. Convert it with Image > Mode > RGB, then run the filter again."
                      % kind)


def _layer_name(drawable, style_files):
    stems = [os.path.splitext(os.path.basename(f))[0] for f in style_files]
    return "%s (%s)" % (drawable.name, " + ".join(stems))


class _Progress(object):
    def __init__(self):
        self.text = None

    def __call__(self, fraction, text):
        gimp.progress_update(fraction)
        if text != self.text:
            self.text = text
            pdb.gimp_progress_set_text(_native(text))


def _new_layer(image, drawable, name, result):
    """The result as a new layer above `drawable` (same size, offsets and parent). On failure
    nothing is left behind."""
    width, height = drawable.width, drawable.height
    kind = GRAYA_IMAGE if result["channels"] == 2 else RGBA_IMAGE
    layer = gimp.Layer(image, name, width, height, kind, 100.0, LAYER_MODE)
    bpp = result["channels"] * _SAMPLE[result["format"]][1]
    if layer.bpp != bpp:
        pdb.gimp_item_delete(layer)
        raise PluginError("The new layer takes %d bytes per pixel but the result has %d."
                          % (layer.bpp, bpp))
    off_x, off_y = drawable.offsets
    layer.set_offsets(off_x, off_y)
    parent = pdb.gimp_item_get_parent(drawable)
    position = pdb.gimp_image_get_item_position(image, drawable)
    pdb.gimp_image_insert_layer(image, layer, parent, position)  # above the source
    try:
        region = layer.get_pixel_rgn(0, 0, width, height, True, False)
        region[0:width, 0:height] = _native_order(result["data"], result["format"])
        layer.flush()
        layer.update(0, 0, width, height)
        _copy_mask(drawable, layer)
        # GIMP 2.10 has one active layer (GIMP 3 selects every result); this procedure makes
        # one new layer per run, which becomes the active drawable - not its mask.
        pdb.gimp_image_set_active_layer(image, layer)
    except Exception:
        pdb.gimp_image_remove_layer(image, layer)
        raise
    return layer


def _copy_mask(source, layer):
    """Give `layer` a copy of the source's layer mask, with its apply and show settings, so
    that what the mask hides stays hidden and the user can still edit the mask."""
    mask = pdb.gimp_layer_get_mask(source)
    if mask is None:
        return
    copy = pdb.gimp_layer_create_mask(layer, ADD_MASK_WHITE)
    pdb.gimp_layer_add_mask(layer, copy)
    width, height = source.width, source.height  # a mask has its layer's size
    # Both masks are in the image's precision and read the same way: the bytes copy exactly.
    pixels = _read_rect(mask, 0, 0, width, height)
    region = copy.get_pixel_rgn(0, 0, width, height, True, False)
    region[0:width, 0:height] = pixels
    copy.flush()
    copy.update(0, 0, width, height)
    pdb.gimp_layer_set_apply_mask(layer, pdb.gimp_layer_get_apply_mask(source))
    pdb.gimp_layer_set_show_mask(layer, pdb.gimp_layer_get_show_mask(source))
    pdb.gimp_layer_set_edit_mask(layer, 0)  # add_mask made the mask the active drawable


def neural_style(image, drawable, *values):
    """The procedure: stylise `drawable` into a new layer above it, in one undo group. `values`
    are OPTIONS' in order. Every failure is one message to the user; the image is then left as
    it was."""
    try:
        if nst_options is None:
            raise PluginError("Neural Style Transfer is not installed completely: "
                              "nst_options.py is missing or broken in %s (%s). Run the "
                              "installer again." % (_HERE, _BRIDGE_ERROR))
        _check_mode(image)  # before the undo group: a refused image gets no undo step at all
        style_files, options = _options(values)
        pdb.gimp_image_undo_group_start(image)
        try:
            _run(image, drawable, style_files, options)
        finally:
            pdb.gimp_image_undo_group_end(image)
    except Exception as error:  # one readable message for every failure
        if not isinstance(error, PluginError) and not (
                nst_bridge is not None and isinstance(error, nst_bridge.BridgeError)):
            traceback.print_exc()  # GIMP's console / stderr, for bug reports
        gimp.message(_native(_error_text(error)))


def _run(image, drawable, style_files, options):
    if nst_bridge is None:
        raise PluginError("Neural Style Transfer is not installed completely: nst_bridge.py is "
                          "missing or broken in %s (%s). Run the installer again." % (
                              _HERE, _BRIDGE_ERROR))
    if not pdb.gimp_item_is_layer(drawable):
        raise PluginError("Neural Style Transfer works on layers: select a layer, not a channel "
                          "or a layer mask.")
    style_paths = _check_styles(style_files)
    nst_bridge.style_blend(options.get("style_weights"), len(style_paths))  # before any work

    gimp.progress_init(_native("Neural style: reading \"%s\"" % drawable.name))
    if _precision(image) in _NATIVE_PRECISIONS:
        pdb.gimp_plugin_enable_precision()  # pixel regions now carry the image's own depth
    content = _read_layer(image, drawable)
    mask = _read_mask(image, drawable)

    result = nst_bridge.run(options, content, style_paths, mask=mask,
                            result_format=content["format"], on_progress=_Progress())
    if (result["width"], result["height"], result["channels"]) != (
            content["width"], content["height"], content["channels"]):
        raise PluginError("The neural style core answered with a %dx%d, %d-channel image for a "
                          "%dx%d, %d-channel layer." % (
                              result["width"], result["height"], result["channels"],
                              content["width"], content["height"], content["channels"]))
    gimp.progress_update(1.0)
    _new_layer(image, drawable, _layer_name(drawable, style_files), result)


def _param(option):
    """One PF_* parameter from its row in nst_options. A number with a step is a slider (a
    float) or a spinner (an int); without one, a plain entry."""
    o, name, label = option, option.arg, option.label2
    if o.kind == "file":
        return (PF_FILE, name, label, "")
    if o.kind == "text":
        return (PF_STRING, name, label, o.default)
    if o.kind == "choice":
        return (PF_OPTION, name, label, o.values.index(o.default),
                [item_label for _, item_label, _ in o.choices])
    if o.kind == "bool":
        return (PF_BOOL, name, label, o.default)
    if o.step is None:
        return (PF_INT if o.kind == "int" else PF_FLOAT, name, label, o.default)
    return (PF_SPINNER if o.kind == "int" else PF_SLIDER, name, label, o.default,
            (o.low, o.high, o.step))


def _params():
    return [(PF_IMAGE, "image", "Input image", None),
            (PF_DRAWABLE, "drawable", "Input layer", None)] + [_param(o) for o in OPTIONS]


register(
    PROC_NAME,
    "Paint the layer in the style of another image (neural style transfer)",
    "Paints the active layer in the style of one or two chosen images (a painting, a photo; "
    "blended by their weights) with the "
    "neural algorithm of Gatys et al. and puts the result in a new layer above it, inside the "
    "selection if there is one. The work runs in the separate neural style core (installed "
    "with this plug-in), on the GPU when there is one.",
    "Neural Style for GIMP contributors",
    "MIT License",
    "2025",
    LABEL,
    IMAGE_TYPES,
    _params(),
    [],
    neural_style,
    menu=MENU,
)

main()
