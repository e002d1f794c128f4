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
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
from gi.repository import GdkPixbuf, Gegl, Gimp, GimpUi, GLib, GObject, Gtk  # noqa: E402

try:  # nst_options.py (the arguments) and nst_bridge.py (the core) live in this folder
    import nst_bridge  # noqa: E402
    import nst_options  # noqa: E402
    _BRIDGE_ERROR = None
except Exception as e:  # noqa: BLE001 - shown to the user when the filter runs
    nst_bridge = nst_options = None
    _BRIDGE_ERROR = e

PROC_NAME = "plug-in-neural-style"
MENU_PATH = "<Image>/Filters/Artistic"
LABEL = "Neural Style Transfer..."
STYLE_FILES = ("style-file", "style-file-2", "style-file-3")

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
    kind = ("indexed (it uses a color palette)" if base == Gimp.ImageBaseType.INDEXED
            else f"of mode {base.value_nick}")
    return (f"Neural style works on RGB and grayscale images, and this image is {kind}. "
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


def _layer_stem(drawable):
    """A style layer as the result's name gives it: its image's file and the layer
    ("starry_night: Background"), not the layer alone, which is often just "Background"; the
    layer alone for an image never saved."""
    file = drawable.get_image().get_file()
    path = file.get_path() or file.get_basename() if file is not None else None
    return f"{_style_stem(path)}: {drawable.get_name()}" if path else drawable.get_name()


def _style_files(config):
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


def _style_pixels(drawable, thumbnail=None):
    """A layer (or any drawable) of any open image as a style for the core: its pixels at its
    own image's precision, with alpha, like the content; or, for a preview, an 8-bit thumbnail
    at most `thumbnail` px a side."""
    if not drawable.is_valid():
        raise ValueError("The style layer is no longer there (its image was closed or the layer "
                         "deleted): choose another one, or none.")
    image = drawable.get_image()
    refusal = _refusal_for_mode(image)
    if refusal:
        raise ValueError(f"The style layer \"{drawable.get_name()}\" cannot be used: its "
                         + refusal.split(", and this ", 1)[1])
    if thumbnail:
        return dict(_thumbnail(drawable, thumbnail), name=drawable.get_name())
    babl_type, sample_format = _sample_type(image)
    grey = image.get_base_type() == Gimp.ImageBaseType.GRAY
    w, h = drawable.get_width(), drawable.get_height()
    fmt = ("Y'A " if grey else "R'G'B'A ") + babl_type
    return dict(width=w, height=h, channels=2 if grey else 4, format=sample_format,
                data=_read(drawable, 0, 0, w, h, fmt), name=drawable.get_name())


def _thumbnail(drawable, size):
    """GIMP's own 8-bit thumbnail of a drawable, at most `size` px a side, as pixels."""
    data, w, h, bpp = drawable.get_thumbnail_data(size, size)
    return dict(width=w, height=h, channels=bpp, format="u8", data=data.get_data())


def _settings(config, thumbnail=None):
    """(core options, styles, style names) from the dialog's values, checked before any work:
    the style files, then a layer of any open image. Raises ValueError or BridgeError."""
    styles = _style_files(config)
    names = [_style_stem(path) for path in styles]
    style_layer = config.get_property("style-layer")
    if style_layer is not None:
        styles.append(_style_pixels(style_layer, thumbnail))
        names.append(_layer_stem(style_layer))
    options = dict((o.name, config.get_property(o.arg)) for o in nst_options.OPTIONS
                   if o.kind not in ("file", "drawable"))  # the styles are read above
    if styles:
        nst_bridge.style_blend(options["style_weights"], len(styles))
    return options, styles, names


def _estimate_text(answer, config, width, height):
    """What the run will cost here, for the dialog (the wording is nst_bridge's, one place)."""
    values = dict((o.name, config.get_property(o.arg)) for o in nst_options.OPTIONS
                  if o.name in ("preset", "size_mode", "size", "auto_minutes"))
    return nst_bridge.estimate_text(answer, values, width, height)


def _dialog_fields():
    """(the artistic fields, top to bottom; the technical ones, under "Advanced"), in
    nst_options' order, the time estimate below the size it depends on. The style files are not
    here: the dialog has choosers of its own for them (_file_choosers)."""
    shown = [o for o in nst_options.for_gimp(3) if o.kind != "file"]
    top = [o.arg for o in shown if not o.advanced]
    top.insert(top.index("size") + 1, "estimate")
    return top, [o.arg for o in shown if o.advanced]


def _file_choosers(config):
    """An "open" chooser for each style file argument, bound to it both ways: GIMP's own widget
    refuses file arguments declared ANY (see _add_file_argument)."""
    box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
    for o in nst_options.for_gimp(3):
        if o.kind != "file":
            continue
        chooser = GimpUi.FileChooser.new(Gimp.FileChooserAction.OPEN, o.label, o.text, None)
        chooser.set_tooltip_text(o.help)
        config.bind_property(o.arg, chooser, "file", GObject.BindingFlags.BIDIRECTIONAL
                             | GObject.BindingFlags.SYNC_CREATE)
        box.pack_start(chooser, False, False, 0)
    return box


def _real_ranges(dialog, config):
    """The dialog offers only values the core takes. "Custom size" is greyed out unless Paint
    at is Custom, and goes from the core's smallest size (a script may still send 0, the
    layer's own). The memory limit is 0 (automatic) or at least MIN_MEMORY_GB: a value between
    jumps to the nearer end of the gap, in the direction the user moved."""
    size = dialog.get_widget("size", GObject.TYPE_NONE)
    if hasattr(size, "get_spin_button"):
        size.get_spin_button().get_adjustment().set_lower(nst_options.MIN_SIZE)

    def size_mode(*_):
        size.set_sensitive(config.get_property("size-mode") == "custom")

    config.connect("notify::size-mode", size_mode)
    size_mode()
    low, last = nst_options.MIN_MEMORY_GB, [config.get_property("max-memory")]

    def memory(*_):
        value = config.get_property("max-memory")
        if 0 < value < low:
            value = low if value > last[0] else 0.0
            config.set_property("max-memory", value)
        last[0] = value

    config.connect("notify::max-memory", memory)
    memory()
    return size


def _write_state(path, dialog, config, advanced_fields, expander):
    """Tests only ($NST_DIALOG_STATE): what the dialog shows, as JSON, for a real-GIMP test
    that cannot see the screen (greyed fields, ranges, what sits under Advanced)."""
    import json

    def spin(name):
        widget = dialog.get_widget(name, GObject.TYPE_NONE)
        adjustment = widget.get_spin_button().get_adjustment()
        return dict(sensitive=widget.get_sensitive(), lower=adjustment.get_lower(),
                    upper=adjustment.get_upper(), value=config.get_property(name))

    state = dict(size=spin("size"), max_memory=spin("max-memory"),
                 advanced=advanced_fields, expander=expander.get_label(),
                 expanded=expander.get_expanded())
    saved = [(name, config.get_property(name)) for name in ("size-mode", "max-memory")]
    for mode in ("layer", "custom"):
        config.set_property("size-mode", mode)
        state["size_sensitive_" + mode] = \
            dialog.get_widget("size", GObject.TYPE_NONE).get_sensitive()
    config.set_property("max-memory", 0.0)
    config.set_property("max-memory", 0.3)  # up from 0: the gap's top
    state["memory_up"] = config.get_property("max-memory")
    config.set_property("max-memory", 0.5)  # down from there: 0
    state["memory_down"] = config.get_property("max-memory")
    for name, value in saved:
        config.set_property(name, value)
    with open(path, "w") as f:
        json.dump(state, f)


class _Preview:
    """The dialog's live preview: what the run paints first (its scales up to the preview's
    size, the same settings) on a thumbnail of the layer, painted by the core in a thread while
    the user works; the first picture is the smallest scale's, in seconds. Every change of the
    settings (after a short pause, so a dragged slider starts one run) starts a new one and
    cancels the running one, as closing the dialog does. The thread never touches GTK: it hands
    each picture the core streams to GTK's own thread with GLib.idle_add."""

    PAUSE_MS = 700

    def __init__(self, config, layer):
        self.config, self.layer = config, layer
        # Never larger than the layer (the core takes 64 px and more).
        long_side = max(layer.get_width(), layer.get_height())
        self.size = max(64, min(nst_bridge.PREVIEW_SIZE, long_side))
        self.generation = 0  # of the settings; a preview of an older one is cancelled
        self.timer = None
        self.image = Gtk.Image()
        self.image.set_size_request(nst_bridge.PREVIEW_SIZE, nst_bridge.PREVIEW_SIZE)
        self.status = Gtk.Label(label="")
        self.status.set_line_wrap(True)
        self.status.set_max_width_chars(40)
        self.live = Gtk.CheckButton.new_with_mnemonic("Li_ve preview")
        self.live.set_active(True)
        self.live.connect("toggled", self.changed)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        for widget in (self.image, self.status, self.live):
            box.pack_start(widget, False, False, 0)
        self.widget = Gtk.Frame(label="Preview (the run's first scales)")
        self.widget.add(box)
        config.connect("notify", self.changed)
        self.changed()

    def changed(self, *_):
        self.generation += 1
        if self.timer is not None:
            GLib.source_remove(self.timer)
        self.timer = GLib.timeout_add(self.PAUSE_MS, self.start)

    def close(self):
        self.generation += 1  # the running preview's core is stopped within a second
        if self.timer is not None:
            GLib.source_remove(self.timer)
            self.timer = None

    def start(self):
        self.timer = None
        if not self.live.get_active():
            self.status.set_text("")
            return False
        try:
            options, styles, _ = _settings(self.config, thumbnail=2 * self.size)
            content = _thumbnail(self.layer, self.size)
        except (ValueError, nst_bridge.BridgeError) as e:
            self.status.set_text(getattr(e, "message", None) or str(e))
            return False
        if not styles:
            self.status.set_text("Choose a style image to see a preview.")
            return False
        self.status.set_text("Painting the preview...")
        threading.Thread(target=self.paint, args=(self.generation, options, content, styles),
                         daemon=True).start()
        return False  # a one-shot timer

    def paint(self, generation, options, content, styles):  # in its own thread: no GTK here
        def stale():
            return generation != self.generation

        def on_image(width, height, data):
            GLib.idle_add(self.show, generation, width, height, data)

        def on_progress(fraction, text):
            GLib.idle_add(self.say, generation, f"Painting the preview: {fraction:.0%}")

        try:
            nst_bridge.preview(options, content, styles, on_image, should_cancel=stale,
                               on_progress=on_progress, size=self.size)
            GLib.idle_add(self.say, generation, "Preview: the run goes on from here to the "
                          "full size.")
        except nst_bridge.BridgeError as e:
            if e.kind != "cancelled":
                GLib.idle_add(self.say, generation, e.message)

    def show(self, generation, width, height, data):
        if generation == self.generation:
            pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(data),
                                                     GdkPixbuf.Colorspace.RGB, False, 8,
                                                     width, height, width * 3)
            self.image.set_from_pixbuf(pixbuf)
        return False

    def say(self, generation, text):
        if generation == self.generation:
            self.status.set_text(text)
        return False


def _show_dialog(procedure, config, layers):
    GimpUi.init("neural-style.py")
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config,
                                    title="Neural Style Transfer")
    dialog.get_spin_scale("strength", 1.0)
    # The time estimate: one question to the core (its record of the runs here; a first-time probe),
    # then every change of the settings is answered here, on GTK's own thread.
    width, height = max(((lay.get_width(), lay.get_height()) for lay in layers),
                        key=lambda size: size[0] * size[1])
    try:
        answer = nst_bridge.estimate(dict(device=config.get_property("device"),
                                          auto_minutes=config.get_property("auto-minutes")),
                                     width, height)
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
    top, advanced = _dialog_fields()
    dialog.fill_box("advanced-box", advanced)
    dialog.get_label("advanced-title", "Advanced", False, False)
    expander = dialog.fill_expander("advanced", "advanced-title", False, "advanced-box")
    settings = dialog.fill_box("settings", top + ["advanced"])
    dialog.fill(["settings"])
    choosers = _file_choosers(config)
    settings.pack_start(choosers, False, False, 0)
    settings.reorder_child(choosers, 0)  # the styles first, as the arguments are
    choosers.show_all()
    _real_ranges(dialog, config)
    largest = max(layers, key=lambda lay: lay.get_width() * lay.get_height())
    preview = _Preview(config, largest)
    # Beside the settings, not below them: the dialog must fit a laptop's screen.
    parent = settings.get_parent()
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=12)
    parent.remove(settings)
    row.pack_start(settings, True, True, 0)
    row.pack_start(preview.widget, False, False, 0)
    parent.pack_start(row, True, True, 0)
    parent.reorder_child(row, 0)
    row.show_all()
    if os.environ.get("NST_DIALOG_STATE"):
        _write_state(os.environ["NST_DIALOG_STATE"], dialog, config, advanced, expander)
    try:
        return dialog.run()
    finally:
        preview.close()
        dialog.destroy()


def neural_style(procedure, run_mode, image, drawables, config, data):
    if nst_bridge is None:
        folder = os.path.dirname(os.path.abspath(__file__))
        return _error(procedure, f"The Neural Style plug-in is incomplete: nst_bridge.py or "
                      f"nst_options.py could not be loaded from {folder} ({_BRIDGE_ERROR}). "
                      "Run the installer again to repair it.")
    refusal = _refusal_for_mode(image)
    if refusal:
        return _error(procedure, refusal)
    layers = [d for d in drawables or [] if isinstance(d, Gimp.Layer)]
    if not layers:
        return _error(procedure, "Neural style works on layers: select one or more layers "
                      "(not a channel or a layer mask).")
    if run_mode == Gimp.RunMode.INTERACTIVE and not _show_dialog(procedure, config, layers):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

    try:
        options, styles, names = _settings(config)
    except ValueError as e:
        return _error(procedure, str(e))
    except nst_bridge.BridgeError as e:
        return _error(procedure, e.message)

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
