# Runs INSIDE a real GIMP 3 with its GUI (gimp-3.x on Xvfb, --batch-interpreter=python-fu-eval),
# together with tests/gimp3/gui_driver.py, which plays the user: it presses OK in the dialog and
# Ctrl+Z / Ctrl+Y in the image window when this script asks for it (request files in the work
# folder). What only the GUI can show is checked here:
#   - the dialog opens (INTERACTIVE) with the caller's values and runs on OK;
#   - GIMP remembers the values: a WITH_LAST_VALS run without a style file uses the last one;
#   - one Ctrl+Z removes everything a run added (two layers here), Ctrl+Y brings it back;
#   - the dialog's live preview: its core paints a picture, and closing the dialog while one
#     paints stops that core (the image is left as it was).
# "screenshot" mode only opens a photo and the dialog, for docs/gimp-dialog.png.
# Parameters: the JSON file named by $NST_GIMP_TEST_PARAMS; results: JSON to params["out"].

import glob
import json
import os
import tempfile
import threading
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio  # noqa: E402

PARAMS = json.load(open(os.environ["NST_GIMP_TEST_PARAMS"]))
WORK = os.path.dirname(PARAMS["out"])
PROC = "plug-in-neural-style"
pdb = Gimp.get_pdb()
RESULTS = {"gimp_version": Gimp.version(), "steps": []}
_request_no = [0]


def save():
    tmp = PARAMS["out"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(RESULTS, f, indent=1, sort_keys=True)
    os.replace(tmp, PARAMS["out"])


def step(name, **info):
    RESULTS["steps"].append(dict(info, step=name, t=round(time.monotonic(), 2)))
    save()


def request(action, wait=True, timeout=60):
    """Ask the driver to act (dialog-ok, dialog-cancel, undo, redo, screenshot)."""
    _request_no[0] += 1
    n = _request_no[0]
    with open(os.path.join(WORK, f"req-{n:03d}-{action}"), "w") as f:
        f.write(action)
    if not wait:
        return n
    return wait_ack(n, timeout)


def wait_ack(n, timeout=60):
    path = os.path.join(WORK, f"ack-{n:03d}")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            with open(path) as f:
                return f.read()
        time.sleep(0.1)
    return "timeout"


def wait_for(predicate, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def make_image(names=("Photo",), width=64, height=48):
    img = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
    for i, name in enumerate(names):
        layer = Gimp.Layer.new(img, name, width, height, Gimp.ImageType.RGB_IMAGE, 100.0,
                               Gimp.LayerMode.NORMAL)
        img.insert_layer(layer, None, 0)
        Gimp.context_set_foreground(_colour(0.2 + 0.5 * i, 0.4, 0.8 - 0.5 * i))
        layer.edit_fill(Gimp.FillType.FOREGROUND)
        Gimp.context_set_foreground(_colour(0.9, 0.9, 0.2))
        img.select_ellipse(Gimp.ChannelOps.REPLACE, 10 + 10 * i, 8, 30, 26)
        layer.edit_fill(Gimp.FillType.FOREGROUND)
    Gimp.Selection.none(img)
    img.clean_all()
    return img


def _colour(r, g, b):
    gi.require_version("Gegl", "0.4")
    from gi.repository import Gegl

    c = Gegl.Color.new("black")
    c.set_rgba(r, g, b, 1.0)
    return c


def names(img):
    return [layer.get_name() for layer in img.get_layers()]


def run_proc(img, drawables, run_mode, style=None, **options):
    proc = pdb.lookup_procedure(PROC)
    cfg = proc.create_config()
    cfg.set_property("run-mode", run_mode)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", drawables)
    if style:
        cfg.set_property("style-file", Gio.File.new_for_path(style))
    for name, value in options.items():
        cfg.set_property(name, value)
    res = proc.run(cfg)
    return dict(status=res.index(0).value_nick,
                message=res.index(1) if res.length() > 1 else None)


# The bridge's per-run core logs (nst_logs.log_dir), where a preview's core says what it did.
LOGS = os.path.join(tempfile.gettempdir(), f"neural-style-gimp-{os.getuid()}")


def core_logs():
    return set(glob.glob(os.path.join(LOGS, "core-*.log")))


def preview_logs(since):
    """The text of each preview core's log that is not in `since`."""
    texts = []
    for path in sorted(core_logs() - since):
        with open(path, errors="replace") as f:
            text = f.read()
        if "preview of" in text:
            texts.append(text)
    return texts


def core_running():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"nst_core.worker" in f.read():
                    return True
        except OSError:
            pass
    return False


def when_preview_log_says(since, words, action, timeout=240):
    """Once a preview core's log has `words`, ask the driver for `action` (from a thread: the
    dialog blocks this one)."""
    def watch():
        end = time.monotonic() + timeout
        while time.monotonic() < end and not any(words in t for t in preview_logs(since)):
            time.sleep(0.2)
        request(action, wait=False)
    threading.Thread(target=watch, daemon=True).start()


def preview_checks(opts):
    # The preview paints a picture: its core sends a finished draft; then Cancel.
    img = make_image()
    Gimp.Display.new(img)
    since = core_logs()
    when_preview_log_says(since, "sent the result", "dialog-cancel")
    r = run_proc(img, img.get_layers(), Gimp.RunMode.INTERACTIVE, style=PARAMS["style"], **opts)
    logs = preview_logs(since)
    step("preview-painted", previews=len(logs), layers=names(img),
         painted=any("sent the result" in t for t in logs), **r)
    # Closing the dialog while a (larger) preview paints stops its core.
    big = make_image(width=480, height=360)
    Gimp.Display.new(big)
    since = core_logs()
    when_preview_log_says(since, "scale 1/", "dialog-cancel")
    r = run_proc(big, big.get_layers(), Gimp.RunMode.INTERACTIVE, style=PARAMS["style"], **opts)
    t_closed = time.monotonic()
    stopped = wait_for(lambda: not core_running(), timeout=15)
    logs = preview_logs(since)
    step("preview-closed", stopped=stopped, stopped_s=round(time.monotonic() - t_closed, 2),
         layers=names(big), finished=any("sent the result" in t for t in logs),
         cancelled=any("stop requested" in t for t in logs), **r)


def test_mode():
    opts = dict(PARAMS["options"])
    preview_checks(opts)
    # 1. INTERACTIVE: the dialog opens with these values; the driver presses OK.
    img = make_image()
    Gimp.Display.new(img)
    Gimp.displays_flush()
    step("image-shown", layers=names(img))
    n = request("dialog-ok", wait=False)
    first = dict(opts, seed=3, size=40, strength=1.5)
    r = run_proc(img, img.get_layers(), Gimp.RunMode.INTERACTIVE, style=PARAMS["style"], **first)
    step("interactive", ack=wait_ack(n, 5), layers=names(img), sent=first, **r)

    # 2. WITH_LAST_VALS without a style file and with other values: the last ones are used.
    r = run_proc(img, [img.get_layers()[-1]], Gimp.RunMode.WITH_LAST_VALS, style=None,
                 seed=11, size=32)
    step("last-values", layers=names(img), **r)

    # 3. One Ctrl+Z removes everything one run added: two source layers, two results.
    img2 = make_image(("Bottom", "Top"))
    Gimp.Display.new(img2)
    Gimp.displays_flush()
    before = names(img2)
    r = run_proc(img2, img2.get_layers(), Gimp.RunMode.NONINTERACTIVE, style=PARAMS["style"],
                 **opts)
    Gimp.displays_flush()
    after = names(img2)
    step("two-layers", before=before, after=after, **r)
    ack = request("undo")
    undone = wait_for(lambda: names(img2) == before)
    step("undo", ack=ack, layers=names(img2), undone=undone)
    ack = request("redo")
    redone = wait_for(lambda: names(img2) == after)
    step("redo", ack=ack, layers=names(img2), redone=redone)


def screenshot_mode():
    content = PARAMS.get("content")
    if content:
        img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(content))
        w, h = img.get_width(), img.get_height()
        scale = min(1.0, 560.0 / max(w, h))
        if scale < 1.0:
            img.scale(int(w * scale), int(h * scale))
        img.set_file(Gio.File.new_for_path(os.path.splitext(content)[0] + ".xcf"))
        img.clean_all()
    else:
        img = make_image(width=480, height=360)
    Gimp.Display.new(img)
    Gimp.displays_flush()
    step("maximize", ack=request("maximize"))
    when_preview_log_says(core_logs(), "sent the result", "screenshot")  # the preview painted
    r = run_proc(img, img.get_layers(), Gimp.RunMode.INTERACTIVE, style=PARAMS["style"],
                 **PARAMS["options"])
    step("screenshot", **r)


try:
    if PARAMS.get("mode") == "screenshot":
        screenshot_mode()
    else:
        test_mode()
except Exception:
    RESULTS["exception"] = traceback.format_exc()
RESULTS["done"] = True
save()
request("quit", wait=False)
