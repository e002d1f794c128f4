"""The GIMP 3 plug-in's reading of GIMP: an image's sample type, a layer's pixels and offsets, a
layer mask copied onto the result, and the dialog's values as the core's options and styles
(style files, checked, and a layer of any open image as pixels or a thumbnail)."""

import os

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
import nst_bridge  # noqa: E402
import nst_options  # noqa: E402
from gi.repository import Gegl, Gimp  # noqa: E402


def sample_type(image):
    """(babl type, protocol format) matching the image's precision: a 16-bit image is read and
    written as 16 bits, float (and half/32-bit/double) images as float."""
    name = image.get_precision().value_nick  # e.g. "u8-non-linear", "u16-linear", "half-linear"
    if name.startswith("u8"):
        return "u8", "u8"
    if name.startswith("u16"):
        return "u16", "u16"
    return "float", "f32"


def offsets(drawable):
    values = drawable.get_offsets()  # (success, x, y) in GIMP 3.0
    return int(values[-2]), int(values[-1])


def read(drawable, x, y, w, h, fmt):
    buf = drawable.get_buffer()
    return buf.get(Gegl.Rectangle.new(x, y, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE)


def refusal_for_mode(image):
    """Why this image cannot be painted, or None. The menu only offers the filter on RGB and
    greyscale images, but a script can pass any image: an indexed one would come back quantised
    to its old palette, so it is refused before any work."""
    base = image.get_base_type()
    if base in (Gimp.ImageBaseType.RGB, Gimp.ImageBaseType.GRAY):
        return None
    kind = ("indexed (it uses a color palette)" if base == Gimp.ImageBaseType.INDEXED
            else f"of mode {base.value_nick}")
    return (f"Neural style works on RGB and grayscale images, and this image is {kind}. "
            "Convert it with Image > Mode > RGB, then run the filter again.")


def copy_mask(source, new):
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


def style_stem(path):
    return os.path.splitext(os.path.basename(path))[0] or "style"


def layer_stem(drawable):
    """A style layer as the result's name gives it: its image's file and the layer
    ("starry_night: Background"), not the layer alone, which is often just "Background"; the
    layer alone for an image never saved."""
    file = drawable.get_image().get_file()
    path = file.get_path() or file.get_basename() if file is not None else None
    return f"{style_stem(path)}: {drawable.get_name()}" if path else drawable.get_name()


def style_files(config):
    """The chosen style files' paths, in order; empty ones are skipped. A file that is not
    there (a script's typo, a file moved since the last run) is named with its field."""
    paths = []
    for option in nst_options.OPTIONS:
        style = config.get_property(option.arg) if option.kind == "file" else None
        if style is None:
            continue
        path = style.get_path()
        if not path:
            raise ValueError(f"The style image {style.get_uri()} is not a local file; save it "
                             "to disk first.")
        if not os.path.isfile(path):
            problem = "is a folder, not an image file" if os.path.isdir(path) else \
                "does not exist"
            raise ValueError(f"The style image {path} ({option.text}) {problem}: choose "
                             "another file.")
        paths.append(path)
    return paths


def style_pixels(drawable, thumbnail=None):
    """A layer (or any drawable) of any open image as a style for the core: its pixels at its
    own image's precision, with alpha, like the content; or, for a preview, an 8-bit thumbnail
    at most `thumbnail` px a side."""
    if not drawable.is_valid():
        raise ValueError("The style layer is no longer there (its image was closed or the layer "
                         "deleted): choose another one, or none.")
    image = drawable.get_image()
    refusal = refusal_for_mode(image)
    if refusal:
        raise ValueError(f"The style layer \"{drawable.get_name()}\" cannot be used: its "
                         + refusal.split(", and this ", 1)[1])
    if thumbnail:
        return dict(thumbnail(drawable, thumbnail), name=drawable.get_name())
    babl_type, sample_format = sample_type(image)
    grey = image.get_base_type() == Gimp.ImageBaseType.GRAY
    w, h = drawable.get_width(), drawable.get_height()
    fmt = ("Y'A " if grey else "R'G'B'A ") + babl_type
    return dict(width=w, height=h, channels=2 if grey else 4, format=sample_format,
                data=read(drawable, 0, 0, w, h, fmt), name=drawable.get_name())


def thumbnail(drawable, size):
    """GIMP's own 8-bit thumbnail of a drawable, at most `size` px a side, as pixels."""
    data, w, h, bpp = drawable.get_thumbnail_data(size, size)
    return dict(width=w, height=h, channels=bpp, format="u8", data=data.get_data())


def settings(config, thumbnail=None):
    """(core options, styles, style names) from the dialog's values, checked before any work:
    the style files, then a layer of any open image. Raises ValueError or BridgeError."""
    styles = style_files(config)
    names = [style_stem(path) for path in styles]
    style_layer = config.get_property("style-layer")
    if style_layer is not None:
        styles.append(style_pixels(style_layer, thumbnail))
        names.append(layer_stem(style_layer))
    options = dict((o.name, config.get_property(o.arg)) for o in nst_options.OPTIONS
                   if o.kind not in ("file", "drawable"))  # the styles are read above
    if styles:
        nst_bridge.style_blend(options["style_weights"], len(styles))
    return options, styles, names
