#!/usr/bin/env python3
# Runs INSIDE the chroot (its own python3, standard library only): starts Xvfb and a real GIMP
# window running tests/gimp3/gui_checks.py as a batch script, and plays the user for it. The
# batch script writes request files (req-NNN-<action>) into the work folder; this driver acts
# with xdotool and answers with ack-NNN:
#   dialog-ok     wait for the "Neural Style Transfer" dialog, press OK
#   screenshot    wait for the dialog, save the screen (Xvfb's XWD frame buffer) as screen.xwd,
#                 then cancel the dialog
#   undo / redo   Ctrl+Z / Ctrl+Y in the image window
#   maximize      make the image window fill the screen
#   quit          stop
# usage: gui_driver.py WORK_DIR GIMP_BINARY BATCH_COMMAND [TIMEOUT_S]

import os
import shutil
import subprocess
import sys
import time

WORK, GIMP, BATCH = sys.argv[1], sys.argv[2], sys.argv[3]
TIMEOUT = float(sys.argv[4]) if len(sys.argv) > 4 else 600
DISPLAY = ":57"
DIALOG_TITLE = "^Neural Style Transfer$"
FB_DIR = os.path.join(WORK, "fb")
LOG = open(os.path.join(WORK, "driver.log"), "a", buffering=1)


def log(*args):
    print(f"{time.monotonic():9.2f}", *args, file=LOG)


def xdo(*args, timeout=30):
    try:
        r = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log("xdotool", args, "timed out")
        return None
    log("xdotool", args, "->", r.returncode, r.stdout.strip(), r.stderr.strip()[:200])
    return r.stdout.strip() if r.returncode == 0 else None


def find_window(pattern, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = xdo("search", "--onlyvisible", "--name", pattern, timeout=10)
        if out:
            return out.split()[-1]
        time.sleep(0.3)
    return None


def press(window, *keys):
    xdo("windowactivate", "--sync", window, timeout=5)  # needs a window manager; may fail
    xdo("windowfocus", "--sync", window, timeout=5)
    xdo("key", "--clearmodifiers", *keys)


def dialog(action):
    window = find_window(DIALOG_TITLE, timeout=120)
    if window is None:
        return "no dialog"
    time.sleep(1.5)  # let it draw
    if action == "dialog-cancel":
        press(window, "Escape")
    elif action == "screenshot":
        xdo("mousemove", "1279", "799")
        time.sleep(1.5)
        shutil.copyfile(os.path.join(FB_DIR, "Xvfb_screen0"), os.path.join(WORK, "screen.xwd"))
        press(window, "Escape")
    else:
        press(window, "alt+o")
        time.sleep(1.0)
        if find_window(DIALOG_TITLE, timeout=1):
            log("dialog still open after alt+o: trying Return")
            press(window, "Return")
    for _ in range(50):
        if not find_window(DIALOG_TITLE, timeout=0.2):
            return "ok"
        time.sleep(0.2)
    return "dialog did not close"


def image_window_key(keys):
    window = find_window(r"GIMP$", timeout=20)
    if window is None:
        return "no image window"
    press(window, keys)
    return "ok"


def maximize():
    window = find_window(r"GIMP$", timeout=20)
    if window is None:
        return "no image window"
    xdo("windowmove", "--sync", window, "0", "0", timeout=5)
    xdo("windowsize", "--sync", window, "100%", "100%", timeout=5)
    time.sleep(1.0)
    return "ok"


def main():
    os.makedirs(FB_DIR, exist_ok=True)
    xvfb = subprocess.Popen(["Xvfb", DISPLAY, "-screen", "0", "1280x800x24", "-nolisten", "tcp",
                             "-fbdir", FB_DIR], stdout=LOG, stderr=subprocess.STDOUT)
    os.environ["DISPLAY"] = DISPLAY
    for _ in range(100):
        if os.path.exists(f"/tmp/.X11-unix/X{DISPLAY[1:]}"):
            break
        time.sleep(0.1)
    wm = None
    if shutil.which("openbox"):
        wm = subprocess.Popen(["openbox"], stdout=LOG, stderr=subprocess.STDOUT)
        time.sleep(0.5)
    gimp_out = open(os.path.join(WORK, "gimp-output.txt"), "w")
    gimp = subprocess.Popen([GIMP, "--no-splash", "--batch-interpreter=python-fu-eval",
                             "-b", BATCH, "--quit"], stdout=gimp_out, stderr=subprocess.STDOUT)
    done, end = set(), time.monotonic() + TIMEOUT
    quitting = False
    try:
        while time.monotonic() < end and gimp.poll() is None and not quitting:
            for name in sorted(os.listdir(WORK)):
                if not name.startswith("req-") or name in done:
                    continue
                done.add(name)
                n, action = name[4:7], name[8:]
                log("request", n, action)
                if action in ("dialog-ok", "dialog-cancel", "screenshot"):
                    answer = dialog(action)
                elif action == "undo":
                    answer = image_window_key("ctrl+z")
                elif action == "maximize":
                    answer = maximize()
                elif action == "redo":
                    answer = image_window_key("ctrl+y")
                elif action == "quit":
                    answer, quitting = "ok", True
                else:
                    answer = "unknown action"
                log("answer", n, answer)
                with open(os.path.join(WORK, f"ack-{n}"), "w") as f:
                    f.write(answer)
            time.sleep(0.1)
        try:
            code = gimp.wait(timeout=max(5, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            log("GIMP did not quit; killing it")
            gimp.kill()
            code = gimp.wait()
        log("GIMP exited with", code)
        return 0 if code == 0 else 1
    finally:
        for p in (wm, xvfb):
            if p is not None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    sys.exit(main())
