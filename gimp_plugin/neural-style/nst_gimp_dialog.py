"""The GIMP 3 plug-in's dialog: GIMP's procedure dialog with the artistic fields on top and the
technical ones under "Advanced", its own choosers for the style files, ranges the core takes,
the time estimate below the size, and the live preview beside the settings."""

import os
import threading

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
import nst_bridge  # noqa: E402
import nst_gimp_layers  # noqa: E402
import nst_options  # noqa: E402
import nst_wording  # noqa: E402
from gi.repository import GdkPixbuf, Gimp, GimpUi, GLib, GObject, Gtk  # noqa: E402


def _estimate_text(answer, config, width, height):
    """What the run will cost here, for the dialog (the wording is nst_wording's, one place)."""
    values = dict((o.name, config.get_property(o.arg)) for o in nst_options.OPTIONS
                  if o.name in ("preset", "size_mode", "size", "auto_minutes"))
    return nst_wording.estimate_text(answer, values, width, height)


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
        size.get_spin_button().get_adjustment().set_lower(nst_options.BY_NAME["size"].least)

    def size_mode(*_):
        size.set_sensitive(config.get_property("size-mode") == "custom")

    config.connect("notify::size-mode", size_mode)
    size_mode()
    low, last = nst_options.BY_NAME["max_memory"].least, [config.get_property("max-memory")]

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
            options, styles, _ = nst_gimp_layers.settings(self.config, thumbnail=2 * self.size)
            content = nst_gimp_layers.thumbnail(self.layer, self.size)
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


def show_dialog(procedure, config, layers):
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
