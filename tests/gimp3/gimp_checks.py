# Runs INSIDE a real GIMP 3 (gimp-console-3.0 --batch-interpreter=python-fu-eval), started by
# tests/test_gimp3.py in the Debian chroot. It builds small images, calls plug-in-neural-style
# through the PDB exactly as a script would, and writes what it saw as JSON to the file named in
# the parameters; pytest asserts on that JSON. Parameters come from the JSON file named by
# $NST_GIMP_TEST_PARAMS:
#   {"out": path, "style": path, "core_config": path of the installed nst-core.json,
#    "options": {...plug-in argument values...}, "cases": [names] or null for all}
# Standard library and GIMP only (this is GIMP's own Python, not the project's venv).

import array
import hashlib
import json
import os
import signal
import threading
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp, Gio  # noqa: E402

PARAMS = json.load(open(os.environ["NST_GIMP_TEST_PARAMS"]))
PROC = "plug-in-neural-style"
pdb = Gimp.get_pdb()
RESULTS = {"gimp_version": Gimp.version(), "cases": {}}


def save():
    tmp = PARAMS["out"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(RESULTS, f, indent=1, sort_keys=True)
    os.replace(tmp, PARAMS["out"])


# -- images --------------------------------------------------------------------------------------


def make_image(width=64, height=48, layer=None, precision=Gimp.Precision.U8_NON_LINEAR,
               grey=False, alpha=False, name="Photo"):
    """An image with one layer (lw, lh, lx, ly) filled with a smooth colour pattern."""
    base = Gimp.ImageBaseType.GRAY if grey else Gimp.ImageBaseType.RGB
    img = Gimp.Image.new_with_precision(width, height, base, precision)
    lw, lh, lx, ly = layer or (width, height, 0, 0)
    add_layer(img, name, lw, lh, lx, ly, grey=grey, alpha=alpha)
    return img


def add_layer(img, name, lw, lh, lx=0, ly=0, grey=False, alpha=False, phase=0.0):
    if grey:
        kind = Gimp.ImageType.GRAYA_IMAGE if alpha else Gimp.ImageType.GRAY_IMAGE
    else:
        kind = Gimp.ImageType.RGBA_IMAGE if alpha else Gimp.ImageType.RGB_IMAGE
    lay = Gimp.Layer.new(img, name, lw, lh, kind, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(lay, None, 0)
    lay.set_offsets(lx, ly)
    px = array.array("f")
    for y in range(lh):
        for x in range(lw):
            r = x / max(1, lw - 1)
            g = y / max(1, lh - 1)
            b = 0.5 + 0.4 * ((x * 7 + y * 5 + phase * 10) % 17) / 17.0
            a = 1.0 if not alpha else (0.25 if x < lw // 4 else 1.0)
            px.extend((r, g, b, a))
    write(lay, "R'G'B'A float", px.tobytes())
    return lay


def write(drawable, fmt, data):
    buf = drawable.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height()), fmt, data)
    buf.flush()
    drawable.update(0, 0, drawable.get_width(), drawable.get_height())


def read(drawable, fmt):
    buf = drawable.get_buffer()
    return buf.get(Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height()), 1.0,
                   fmt, Gegl.AbyssPolicy.NONE)


def floats(data):
    return array.array("f", data)


def fmt_name(drawable):
    return Babl.get_name(drawable.get_format())


def all_layers(img):
    out = []

    def walk(items):
        for item in items:
            out.append(item)
            if item.is_group_layer():
                walk(item.get_children())

    walk(img.get_layers())
    return out


def snapshot(img):
    """Everything about the image a run must not touch (or may only add to)."""
    layers = []
    for lay in all_layers(img):
        layers.append(dict(id=lay.get_id(), name=lay.get_name(), w=lay.get_width(),
                           h=lay.get_height(), offsets=list(lay.get_offsets()[1:]),
                           format=fmt_name(lay),
                           sha=hashlib.sha256(read(lay, fmt_name(lay))).hexdigest()))
    return dict(layers=layers, precision=img.get_precision().value_nick,
                width=img.get_width(), height=img.get_height())


def layer_info(img, lay):
    parent = lay.get_parent()
    return dict(id=lay.get_id(), name=lay.get_name(), w=lay.get_width(), h=lay.get_height(),
                offsets=list(lay.get_offsets()[1:]), format=fmt_name(lay),
                has_alpha=lay.has_alpha(), position=img.get_item_position(lay),
                parent=parent.get_id() if parent else None)


# -- running the procedure -----------------------------------------------------------------------


def run_proc(img, drawables, run_mode=Gimp.RunMode.NONINTERACTIVE, style=None, **options):
    proc = pdb.lookup_procedure(PROC)
    cfg = proc.create_config()
    cfg.set_property("run-mode", run_mode)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", drawables)
    style = PARAMS["style"] if style is None else style
    if style:
        cfg.set_property("style-file", Gio.File.new_for_path(style))
    values = dict(PARAMS["options"])
    values.update(options)
    for name, value in values.items():
        cfg.set_property(name, value)
    t0 = time.monotonic()
    res = proc.run(cfg)
    status = res.index(0)
    message = res.index(1) if res.length() > 1 else None
    return dict(status=status.value_nick, message=message,
                seconds=round(time.monotonic() - t0, 2))


def new_layers(before, img):
    old = {layer["id"] for layer in before["layers"]}
    return [lay for lay in all_layers(img) if lay.get_id() not in old]


def diff_stats(a, b):
    """Mean absolute difference of two float buffers (RGB only, every 4th is alpha)."""
    n, total = 0, 0.0
    for i in range(0, min(len(a), len(b))):
        if i % 4 != 3:
            total += abs(a[i] - b[i])
            n += 1
    return total / max(1, n)


def source_unchanged(before, img):
    now = {lay["id"]: lay for lay in snapshot(img)["layers"]}
    return all(now.get(lay["id"]) == lay for lay in before["layers"])


# -- cases ---------------------------------------------------------------------------------------


def case_basic():
    """A layer smaller than the image, with offsets: a new layer above it, same size and place,
    named after the source and the style; the source keeps every pixel."""
    img = make_image(64, 48, layer=(48, 36, 10, 6))
    src = img.get_layers()[0]
    before = snapshot(img)
    src_px = floats(read(src, "R'G'B'A float"))
    r = run_proc(img, [src])
    added = new_layers(before, img)
    r.update(before=before, after=snapshot(img), source=layer_info(img, src),
             source_unchanged=source_unchanged(before, img),
             added=[layer_info(img, lay) for lay in added],
             layer_order=[lay.get_id() for lay in img.get_layers()])
    if added:
        px = floats(read(added[0], "R'G'B'A float"))
        r["mean_abs_diff"] = diff_stats(src_px, px)
        r["alpha_min"] = min(px[3::4])
        r["alpha_max"] = max(px[3::4])
    img.delete()
    return r


def case_selection():
    """A feathered rectangular selection: opaque inside, transparent outside, soft edge."""
    img = make_image(64, 48, layer=(56, 40, 4, 4))
    src = img.get_layers()[0]
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 12, 24, 20)  # image coordinates
    Gimp.Selection.feather(img, 6.0)
    before = snapshot(img)
    r = run_proc(img, [src])
    added = new_layers(before, img)
    r.update(source_unchanged=source_unchanged(before, img),
             added=[layer_info(img, lay) for lay in added])
    if added:
        lay = added[0]
        px = floats(read(lay, "R'G'B'A float"))
        sel = floats(img.get_selection().get_buffer().get(
            Gegl.Rectangle.new(4, 4, 56, 40), 1.0, "Y float", Gegl.AbyssPolicy.NONE))
        w = lay.get_width()

        def alpha(x, y):  # layer coordinates
            return px[(y * w + x) * 4 + 3]

        r["alpha_centre"] = alpha(32 - 4, 22 - 4)       # image (32, 22): deep inside
        r["alpha_corner"] = alpha(0, 0)                 # image (4, 4): far outside
        r["alpha_far_right"] = alpha(55, 39)
        alphas = px[3::4]
        r["alpha_partial"] = sum(1 for a in alphas if 0.02 < a < 0.98)
        r["alpha_vs_selection_max_err"] = max(abs(a - s) for a, s in zip(alphas, sel))
        r["selection_partial"] = sum(1 for s in sel if 0.02 < s < 0.98)
    img.delete()
    return r


def case_u16():
    """A 16-bit image stays 16-bit, and the result is not squeezed through 8 bits."""
    img = make_image(64, 48, precision=Gimp.Precision.U16_NON_LINEAR)
    src = img.get_layers()[0]
    before = snapshot(img)
    r = run_proc(img, [src])
    added = new_layers(before, img)
    r.update(source_unchanged=source_unchanged(before, img), precision=before["precision"],
             precision_after=img.get_precision().value_nick,
             added=[layer_info(img, lay) for lay in added])
    if added:
        raw = array.array("H", read(added[0], "R'G'B'A u16"))
        rgb = [v for i, v in enumerate(raw) if i % 4 != 3]
        r["u16_not_multiple_of_257"] = sum(1 for v in rgb if v % 257)
        r["u16_values"] = len(rgb)
        r["u16_distinct"] = len(set(rgb))
    img.delete()
    return r


def case_float_grey():
    """A linear-float greyscale image: grey result layer, float precision kept."""
    img = make_image(64, 48, precision=Gimp.Precision.FLOAT_LINEAR, grey=True, alpha=True)
    src = img.get_layers()[0]
    before = snapshot(img)
    r = run_proc(img, [src])
    added = new_layers(before, img)
    r.update(source_unchanged=source_unchanged(before, img),
             precision_after=img.get_precision().value_nick,
             added=[layer_info(img, lay) for lay in added])
    img.delete()
    return r


def case_two_layers():
    """Two selected layers: one result above each."""
    img = make_image(64, 48, layer=(64, 48, 0, 0), name="Bottom")
    add_layer(img, "Top", 32, 24, 16, 12, alpha=True, phase=1.0)
    top, bottom = img.get_layers()
    before = snapshot(img)
    r = run_proc(img, [top, bottom])
    r.update(source_unchanged=source_unchanged(before, img),
             order=[lay.get_name() for lay in img.get_layers()],
             selected=sorted(lay.get_name() for lay in img.get_selected_layers()),
             added=[layer_info(img, lay) for lay in new_layers(before, img)])
    img.delete()
    return r


def flattened(img):
    """What the image looks like: its layers composited (masks applied) on the background."""
    dup = img.duplicate()
    px = floats(read(dup.flatten(), "R'G'B' float"))
    dup.delete()
    return px


def case_mask():
    """A layer with a layer mask (left third hidden, a soft ramp, the rest shown): the new layer
    carries an equal mask, so what the source's mask hides stays hidden."""
    w, h = 48, 36
    img = make_image(w, h)
    src = img.get_layers()[0]
    mask = src.create_mask(Gimp.AddMaskType.WHITE)
    src.add_mask(mask)
    ramp = array.array("f", (min(1.0, max(0.0, (x - 16) / 16.0)) for y in range(h)
                             for x in range(w)))
    write(mask, "Y float", ramp.tobytes())
    src.set_edit_mask(False)  # the layer, not its mask, is selected: as a user runs the filter
    mask_fmt = fmt_name(mask)
    mask_sha = hashlib.sha256(read(mask, mask_fmt)).hexdigest()
    before = snapshot(img)
    look_before = flattened(img)
    r = run_proc(img, [src])
    added = new_layers(before, img)
    r.update(source_unchanged=source_unchanged(before, img),
             source_mask_unchanged=hashlib.sha256(read(mask, mask_fmt)).hexdigest() == mask_sha,
             added=[layer_info(img, lay) for lay in added])
    if added:
        new = added[0]
        new_mask = new.get_mask()
        r["has_mask"] = new_mask is not None
        if new_mask is not None:
            r["mask_format"] = [mask_fmt, fmt_name(new_mask)]
            r["mask_equal"] = read(new_mask, mask_fmt) == read(mask, mask_fmt)
            r["flags"] = {name: [getattr(src, "get_" + name)(), getattr(new, "get_" + name)()]
                          for name in ("apply_mask", "show_mask", "edit_mask")}
        look = flattened(img)
        hidden = [i for i in range(len(look)) if (i // 3) % w < 16]
        shown = [i for i in range(len(look)) if (i // 3) % w >= 32]
        r["hidden_max_diff"] = max(abs(look[i] - look_before[i]) for i in hidden)
        r["shown_mean_diff"] = sum(abs(look[i] - look_before[i]) for i in shown) / len(shown)
    img.delete()
    return r


def case_indexed():
    """An indexed image, passed by a script (the menu does not offer the filter there)."""
    img = Gimp.Image.new(32, 24, Gimp.ImageBaseType.INDEXED)
    lay = Gimp.Layer.new(img, "Indexed", 32, 24, Gimp.ImageType.INDEXED_IMAGE, 100.0,
                         Gimp.LayerMode.NORMAL)
    img.insert_layer(lay, None, 0)
    before = snapshot(img)
    r = run_proc(img, [lay])
    r.update(unchanged=snapshot(img) == before, layers_before=len(before["layers"]),
             layers_after=len(all_layers(img)), base_type=img.get_base_type().value_nick)
    img.delete()
    return r


def case_missing_style():
    img = make_image()
    before = snapshot(img)
    missing = "/nonexistent/folder/starry-night.jpg"
    r = run_proc(img, img.get_layers(), style=missing)
    r.update(missing=missing, unchanged=snapshot(img) == before)
    img.delete()
    return r


def case_corrupt_style():
    img = make_image()
    before = snapshot(img)
    path = os.path.join(os.path.dirname(PARAMS["out"]), "not-a-picture.jpg")
    with open(path, "wb") as f:
        f.write(b"this is not a JPEG file\n" * 20)
    r = run_proc(img, img.get_layers(), style=path)
    r.update(path=path, unchanged=snapshot(img) == before)
    img.delete()
    return r


def case_no_style():
    img = make_image()
    before = snapshot(img)
    r = run_proc(img, img.get_layers(), style="")
    r.update(unchanged=snapshot(img) == before)
    img.delete()
    return r


def _with_core_command(command):
    path = PARAMS["core_config"]
    with open(path) as f:
        saved = f.read()
    with open(path, "w") as f:
        json.dump({"version": 1, "command": command}, f)
    return path, saved


def case_broken_core():
    """The installed core command points at a program that does not exist."""
    img = make_image()
    before = snapshot(img)
    bad = "/opt/no-such-venv/bin/python"
    path, saved = _with_core_command([bad, "-m", "nst_core.worker"])
    try:
        r = run_proc(img, img.get_layers())
    finally:
        with open(path, "w") as f:
            f.write(saved)
    r.update(program=bad, unchanged=snapshot(img) == before)
    img.delete()
    return r


def case_crashing_core():
    """The core starts, reads nothing and exits with an error code."""
    img = make_image()
    before = snapshot(img)
    path, saved = _with_core_command(["/bin/sh", "-c", "echo 'core: simulated crash' >&2; exit 3"])
    try:
        r = run_proc(img, img.get_layers())
    finally:
        with open(path, "w") as f:
            f.write(saved)
    r.update(unchanged=snapshot(img) == before)
    img.delete()
    return r


def _processes():
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(pid)] = dict(cmd=cmd, state=stat[0], ppid=int(stat[1]))
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def case_cancel():
    """What GIMP does when the user cancels from the progress bar: it kills the plug-in. The
    core must notice (its stdin closes) and stop, and the image must stay as it was."""
    img = make_image(160, 120)
    info = {}
    delay = float(PARAMS.get("cancel_after_s", 4.0))

    def killer():
        t_end = time.monotonic() + 120
        worker = None
        while time.monotonic() < t_end and worker is None:
            for pid, p in _processes().items():
                if "nst_core.worker" in p["cmd"] and p["state"] != "Z":
                    worker = (pid, p["ppid"])
                    break
            time.sleep(0.05)
        if worker is None:
            info["error"] = "the core never started"
            return
        pid, plugin = worker
        info["worker_cmd"] = _processes().get(pid, {}).get("cmd")
        info["plugin_cmd"] = _processes().get(plugin, {}).get("cmd")
        t_seen = time.monotonic()
        while time.monotonic() < t_seen + delay and _alive(pid):
            time.sleep(0.05)
        _kill_plugin(pid, plugin, info)

    return _run_with_killer(img, killer, info, PARAMS.get("cancel_options", {}), 60)


def _kill_plugin(pid, plugin, info):
    """Kill the plug-in as gimp_plug_in_close (plug_in, kill_it=TRUE) does when the user
    cancels, and time how long its core (pid) takes to exit."""
    info["worker_alive_at_kill"] = _alive(pid)
    os.kill(plugin, signal.SIGKILL)
    t_kill = time.monotonic()
    while _alive(pid) and time.monotonic() < t_kill + 30:
        time.sleep(0.02)
    info["worker_exit_s"] = round(time.monotonic() - t_kill, 2)
    info["worker_alive_after"] = _alive(pid)


def _run_with_killer(img, killer, info, options, join_s):
    """Run the procedure on img while killer() cancels it; the image must stay as it was."""
    before = snapshot(img)
    t = threading.Thread(target=killer, daemon=True)
    t.start()
    r = run_proc(img, img.get_layers(), **options)
    t.join(join_s)
    r.update(info, unchanged=snapshot(img) == before)
    img.delete()
    return r


def _worker():
    """(pid, parent pid) of the running core, or None."""
    for pid, p in _processes().items():
        if "nst_core.worker" in p["cmd"] and p["state"] != "Z":
            return pid, p["ppid"]
    return None


def _log_of(pid):
    """The core's log: its stderr is the log file (wherever the bridge keeps logs)."""
    try:
        with open(os.readlink(f"/proc/{pid}/fd/2"), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def case_cancel_blocks():
    """A layer that, in a small memory budget, is painted block by block: cancel in the middle
    of the block-wise scale leaves the image as it was, and the core exits."""
    img = make_image(1024, 768)
    info = {}

    def killer():
        t_end = time.monotonic() + 300
        worker, text = None, ""
        while time.monotonic() < t_end:
            worker = worker or _worker()
            text = _log_of(worker[0]) if worker else ""
            if "in blocks of" in text:
                break
            time.sleep(0.2)
        else:
            info["error"] = "no block-wise scale started: " + text[-2000:]
            return
        if not _alive(worker[0]):
            info["error"] = "the core had gone before the cancel"
            return
        time.sleep(2.0)  # well inside the block-wise iterations
        info["log_at_kill"] = [ln for ln in text.splitlines() if "scale" in ln][-3:]
        _kill_plugin(worker[0], worker[1], info)

    return _run_with_killer(img, killer, info, PARAMS.get("block_options", {}), 330)


# -- several styles, a style from an open image ---------------------------------------------------


def case_style_layer():
    """Two styles with weights: a file and a layer of ANOTHER open image, of another precision
    and mode (linear float greyscale). Neither the style image nor the file is touched."""
    img = make_image(64, 48)
    src = img.get_layers()[0]
    style_img = make_image(40, 40, precision=Gimp.Precision.FLOAT_LINEAR, grey=True,
                           name="Brushes")
    style_img.set_file(Gio.File.new_for_path("/nowhere/Starry Night.xcf"))  # its name, no save
    style_before = snapshot(style_img)
    before = snapshot(img)
    r = run_proc(img, [src], **{"style-layer": style_img.get_layers()[0],
                                "style-weights": "1, 3"})
    added = new_layers(before, img)
    r.update(source_unchanged=source_unchanged(before, img),
             style_image_unchanged=snapshot(style_img) == style_before,
             added=[layer_info(img, lay) for lay in added])
    style_img.delete()
    img.delete()
    return r


def case_bad_weights():
    """Weights that do not fit the styles (three for two; all zero): one message each, before
    any work, nothing added."""
    img = make_image()
    other = make_image(24, 24, name="Brushes")
    before = snapshot(img)
    out = {}
    for key, weights in (("three_for_two", "1, 2, 3"), ("all_zero", "0 0")):
        out[key] = run_proc(img, img.get_layers(), **{"style-layer": other.get_layers()[0],
                                                      "style-weights": weights})
    out["unchanged"] = snapshot(img) == before
    other.delete()
    img.delete()
    return out


def case_indexed_style():
    """A layer of an indexed image as the style: one message saying how to convert it."""
    img = make_image()
    other = Gimp.Image.new(16, 16, Gimp.ImageBaseType.INDEXED)
    lay = Gimp.Layer.new(other, "Palette", 16, 16, Gimp.ImageType.INDEXED_IMAGE, 100.0,
                         Gimp.LayerMode.NORMAL)
    other.insert_layer(lay, None, 0)
    before = snapshot(img)
    r = run_proc(img, img.get_layers(), **{"style-layer": lay})
    r["unchanged"] = snapshot(img) == before
    other.delete()
    img.delete()
    return r


def case_closed_style_image():
    """The style layer's image was closed before the run: one message, nothing added."""
    img = make_image()
    other = make_image(16, 16, name="Gone")
    lay = other.get_layers()[0]
    other.delete()
    before = snapshot(img)
    try:
        r = run_proc(img, img.get_layers(), **{"style-layer": lay})
    except Exception as e:  # noqa: BLE001 - GIMP may refuse the argument itself
        r = dict(status="refused-by-gimp", message=f"{type(e).__name__}: {e}")
    r["unchanged"] = snapshot(img) == before
    img.delete()
    return r


# -- the core on another machine, through ssh (params: remote_command, refused_command) -------


def _with_remote(command, fn):
    path, saved = _with_core_command(command)
    try:
        return fn()
    finally:
        with open(path, "w") as f:
            f.write(saved)


def case_remote_run():
    img = make_image()
    before = snapshot(img)

    def run():
        r = run_proc(img, img.get_layers())
        r.update(added=[layer_info(img, lay) for lay in new_layers(before, img)],
                 source_unchanged=source_unchanged(before, img))
        return r

    r = _with_remote(PARAMS["remote_command"], run)
    img.delete()
    return r


def case_remote_kill():
    """The user cancels (GIMP kills the plug-in) while the core paints on the other machine:
    the ssh client loses its input, the remote core its stdin, and it stops. The remote core
    is out of this chroot's sight: the test watches it from outside and compares with the
    time of the kill recorded here (one clock, one machine)."""
    img = make_image(160, 120)
    info = {}

    def killer():
        t_end = time.monotonic() + 120
        client = None
        while time.monotonic() < t_end and not client:
            client = [(pid, p["ppid"]) for pid, p in _processes().items()
                      if p["cmd"].startswith("ssh ") and "worker" in p["cmd"]]
            time.sleep(0.05)
        if not client:
            info["error"] = "no ssh client started"
            return
        time.sleep(4.0)  # connected, and painting
        pid, plugin = client[0]
        info["client_cmd"] = _processes().get(pid, {}).get("cmd")
        info["killed_at"] = time.time()
        os.kill(plugin, signal.SIGKILL)
        while _alive(pid) and time.time() < info["killed_at"] + 30:
            time.sleep(0.02)
        info["client_exit_s"] = round(time.time() - info["killed_at"], 2)

    return _with_remote(PARAMS["remote_command"], lambda: _run_with_killer(
        img, killer, info, PARAMS.get("cancel_options", {}), 60))


def case_remote_refused():
    img = make_image()
    before = snapshot(img)
    r = _with_remote(PARAMS["refused_command"], lambda: run_proc(img, img.get_layers()))
    r["unchanged"] = snapshot(img) == before
    img.delete()
    return r


CASES = [("basic", case_basic), ("selection", case_selection), ("u16", case_u16),
         ("float_grey", case_float_grey), ("two_layers", case_two_layers),
         ("mask", case_mask), ("indexed", case_indexed),
         ("missing_style", case_missing_style), ("corrupt_style", case_corrupt_style),
         ("no_style", case_no_style),
         ("broken_core", case_broken_core), ("crashing_core", case_crashing_core),
         ("cancel", case_cancel), ("cancel_blocks", case_cancel_blocks),
         ("style_layer", case_style_layer), ("bad_weights", case_bad_weights),
         ("indexed_style", case_indexed_style), ("closed_style_image", case_closed_style_image),
         ("remote_run", case_remote_run), ("remote_kill", case_remote_kill),
         ("remote_refused", case_remote_refused)]
REMOTE = ("remote_run", "remote_kill", "remote_refused")  # only in a session given an sshd


def main():
    RESULTS["procedure_found"] = pdb.procedure_exists(PROC)
    if RESULTS["procedure_found"]:
        proc = pdb.lookup_procedure(PROC)
        RESULTS["arguments"] = [[a.name, a.value_type.name] for a in proc.get_arguments()]
        RESULTS["menu_paths"] = list(proc.get_menu_paths())
        RESULTS["menu_label"] = proc.get_menu_label()
        RESULTS["image_types"] = proc.get_image_types()
        RESULTS["sensitivity_expected"] = int(Gimp.ProcedureSensitivityMask.DRAWABLE
                                              | Gimp.ProcedureSensitivityMask.DRAWABLES)
        RESULTS["defaults"] = {}
        cfg = proc.create_config()
        for a in proc.get_arguments()[3:]:
            v = cfg.get_property(a.name)
            RESULTS["defaults"][a.name] = v if isinstance(v, (int, float, str, bool)) or v is None \
                else str(v)
        save()
        wanted = PARAMS.get("cases") or [name for name, _ in CASES if name not in REMOTE]
        for name, fn in CASES:
            if name not in wanted:
                continue
            try:
                RESULTS["cases"][name] = fn()
            except Exception:
                RESULTS["cases"][name] = {"exception": traceback.format_exc()}
            save()
    RESULTS["done"] = True
    save()


main()
