"""The plug-ins' side of the neural style core: find it, start it, talk to it, stop it.

Used by both the GIMP 3 plug-in (Python 3) and the GIMP 2.10 plug-in (Python 2.7), so this file
is Python 2.7 AND 3 and uses the standard library only. It never imports nst_core: GIMP's own
Python has no torch. The core is a separate process (`python -m nst_core.worker`) spoken to over
its stdin/stdout with the wire format of nst_core/protocol.py; its stderr goes to a new log file
per run in this user's private folder, <tempdir>/neural-style-gimp-<uid>/ (see log_dir).

    result = nst_bridge.run(options, content, [style_path, style_pixels], mask=None,
                            on_progress=callback, should_cancel=callback)

The options, their defaults and limits are nst_options.py's table (beside this file).

Every failure is one BridgeError with a readable message that ends with the log file's path:
bad input before anything starts, and anything the core sends that is not the protocol.
"""
# Python 2.7 compatible on purpose: no f-strings, no `raise from`, IOError spelled out.
# ruff: noqa: UP003, UP010, UP024, UP025, UP031, B904

from __future__ import absolute_import, division, print_function

import errno
import json
import numbers
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata

try:
    import queue  # novm
except ImportError:  # Python 2
    import Queue as queue  # novm

try:
    import nst_options
except ImportError:  # imported as gimp_plugin.nst_bridge (the tests)
    from . import nst_options

PRESETS = nst_options.choice_values("preset")
DEVICES = nst_options.choice_values("device")
# size_mode: what the painting is computed at (the result always covers the layer): "auto" = the
# layer's own size unless that takes more than the option auto_minutes (default AUTO_MINUTES) on
# this machine, else the largest size that does; "layer" = the layer's own size; "custom" =
# `size` px (long side). A painting smaller than the layer is enlarged: soft at 100 %, so the
# limit is generous and the estimate line says how much (estimate_text).
SIZE_MODES = nst_options.choice_values("size_mode")
AUTO_MINUTES = nst_options.BY_NAME["auto_minutes"].default
PREVIEW_SIZE = 256  # the live preview's long side (the core takes 64..512)
MAX_SIZE = nst_options.MAX_SIZE
# The options sent to the core, with the plug-ins' defaults.
DEFAULTS = dict((o.name, o.default) for o in nst_options.OPTIONS if o.core)
# The plug-ins' own arguments that are not core options (the styles, their weights, the time
# limit for Automatic): run() sends them its own way.
_NOT_OPTIONS = tuple(o.name for o in nst_options.OPTIONS if not o.core)
_WORDS = tuple(o.name for o in nst_options.OPTIONS if o.kind == "choice")
CONFIG_NAME = "nst-core.json"
ENV_COMMAND = "NST_CORE_COMMAND"
PROTOCOL = 1
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}
# The core's error kinds (nst_core/errors.py); an unknown one from a newer core reads as internal.
CORE_KINDS = ("bad_request", "bad_option", "bad_image", "weights", "device", "too_large",
              "cancelled", "internal")
PROGRESS_FIELDS = ("phase", "scale", "scales", "iteration", "iterations", "step", "steps",
                   "fraction", "loss", "eta_s", "elapsed_s")
LOG_DIR_NAME = "neural-style-gimp"
LOG_KEEP_DAYS = 7
MAX_HEADER = 1 << 20  # nst_core/protocol.py's limits, repeated: GIMP's Python cannot import it
MAX_STYLE_BYTES = 256 << 20
MAX_SIDE = 32768
MAX_ETA_S = 1e6  # an estimate of more than 11 days left is not shown
MAX_CORE_TEXT = 1000  # characters of the core's own error text shown to the user
CANCEL_WAIT_S = 2.0
EXIT_WAIT_S = 10.0  # how long the core may take to close stdout after answering, and to exit
REPAIR = ("Run installer/install.py from the Neural Style for GIMP download again "
          "(`python3 installer/install.py`) to repair it")

_monotonic = getattr(time, "monotonic", time.time)
_PY2 = sys.version_info[0] == 2
_TEXT = (str, type(u""))


class BridgeError(Exception):
    """One readable failure. kind: core_missing, core_crashed, cancelled, or a core error kind
    (bad_request, bad_option, bad_image, weights, device, too_large, internal). .message is text
    (unicode on Python 2) and ends with the log file's path when there is a log."""

    def __init__(self, kind, message, log_path=None):
        message = _text(message)
        if log_path:  # on its own line: the path is what a bug report needs, whole
            message = u"%s\nLog: %s" % (message.rstrip(), _text(log_path))
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.log_path = log_path

    def __str__(self):
        if _PY2:  # Python 2: str() must be bytes
            return self.message.encode("utf-8")
        return self.message

    def __unicode__(self):
        return self.message


def _text(value):
    """Python 2: bytes (paths in the file system's encoding) -> unicode, so that messages that
    mix a path and the core's (unicode) text can be joined. Python 3: unchanged."""
    if _PY2 and isinstance(value, str):
        return value.decode(sys.getfilesystemencoding() or "utf-8", "replace")
    return value


# -- finding the core ----------------------------------------------------------------------------


def _split_command(line):
    if os.name != "nt":
        return shlex.split(line)
    parts = []
    for part in shlex.split(line, posix=False):  # keeps backslashes; strip the quotes
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return parts


def config_path(config_dir=None):
    folder = config_dir or os.path.dirname(os.path.abspath(__file__))
    return os.path.join(folder, CONFIG_NAME)


def find_core_command(config_dir=None):
    """The core's command as an argument list: $NST_CORE_COMMAND, else nst-core.json beside this
    file (or in config_dir). Raises BridgeError(kind="core_missing") saying how to repair."""
    line = os.environ.get(ENV_COMMAND, "").strip()
    if line:
        try:
            command = _split_command(line)
        except ValueError as e:
            raise BridgeError("core_missing", "%s=%r cannot be split into a command (%s)."
                              % (ENV_COMMAND, line, e))
        if command:
            return command
    path = config_path(config_dir)
    if not os.path.exists(path):
        raise BridgeError("core_missing", "The neural style core is not installed: %s is "
                          "missing and %s is not set. %s." % (path, ENV_COMMAND, REPAIR))
    try:
        with open(path, "rb") as f:
            config = json.loads(f.read().decode("utf-8"))
    except (IOError, OSError, ValueError) as e:
        raise BridgeError("core_missing", "The neural style core's settings file %s cannot be "
                          "read (%s). %s." % (path, e, REPAIR))
    command = config.get("command") if isinstance(config, dict) else None
    if not (isinstance(command, list) and command
            and all(isinstance(a, _TEXT) and a for a in command)):
        raise BridgeError("core_missing", "The neural style core's settings file %s has no "
                          "valid \"command\". %s." % (path, REPAIR))
    return [_native(a) for a in command]


def _native(text):
    """Python 2: unicode from JSON -> str in the file system's encoding, for subprocess."""
    if _PY2 and not isinstance(text, str):
        return text.encode(sys.getfilesystemencoding() or "utf-8")
    return text


def _check_executable(command):
    program = command[0]
    if os.path.dirname(program):
        if not os.path.isfile(program):
            raise BridgeError("core_missing", "The neural style core's program %s does not "
                              "exist. %s." % (program, REPAIR))
        if os.name != "nt" and not os.access(program, os.X_OK):
            raise BridgeError("core_missing", "The neural style core's program %s is not "
                              "executable. %s." % (program, REPAIR))


# -- the request ---------------------------------------------------------------------------------


def core_options(options):
    """Plug-in values -> the core's option names. size_mode "auto" and "layer" (and a custom
    size of 0 or None) send no size: the layer's own; "auto" lets run() ask the core to fit it;
    names the plug-ins do not know are passed through for the core to check."""
    values = dict(DEFAULTS, size_mode="custom")  # a script that gives only a size gets it
    values.update(options or {})
    if "preserve_colors" in values:  # the earlier option, still taken from scripts
        if values.pop("preserve_colors") and values["colors"] == "style":
            values["colors"] = "luminance"
    out = {}
    for name, value in values.items():
        if name == "size_mode" or name in _NOT_OPTIONS:
            continue
        try:
            if name == "size":
                custom = values["size_mode"] == "custom" and value
                out["size"] = int(value) if custom else None
                _above_zero_at_least(name, out["size"], nst_options.MIN_SIZE, "px",
                                     "the layer's own size")
            elif name == "max_memory":  # 0: automatic
                out[name] = float(value) if value else None
                _above_zero_at_least(name, out[name], nst_options.MIN_MEMORY_GB, "GB",
                                     "automatic")
            elif name in ("strength", "style_scale"):
                out[name] = float(value)
            elif name in ("seed",):
                out[name] = int(value)
            elif name in _WORDS:
                out[name] = str(value)
            else:
                out[name] = value
        except (TypeError, ValueError, OverflowError):  # the core checks ranges; types here
            raise BridgeError("bad_option", "The option %s=%s is not a %s." % (
                name, _brief(value), "word" if name in _WORDS else "number"))
    return out


def _above_zero_at_least(name, value, low, unit, zero):
    """Fields where 0 means something (`zero`) and small values nothing the core can do: one
    message in the dialog's words before the core starts."""
    if value is not None and value < low:
        raise BridgeError("bad_option", u"\"%s\" must be 0 (%s) or at least %g %s, not %g."
                          % (nst_options.BY_NAME[name].text, zero, low, unit, value))


def auto_seconds(options):
    """The time limit for size_mode "auto", in seconds, from the option auto_minutes."""
    option = nst_options.BY_NAME["auto_minutes"]
    minutes = (options or {}).get("auto_minutes", option.default)
    if not _within(minutes, option.low, option.high):
        raise BridgeError("bad_option", "The time limit for Automatic must be %g to %g "
                          "minutes, not %s." % (option.low, option.high, _brief(minutes)))
    return 60.0 * minutes


def style_blend(weights, count):
    """The core's style_blend for `count` styles from the plug-ins' style weights: text such as
    "2, 1" (commas or spaces) or a list of numbers; None when none are given (all the same)."""
    if isinstance(weights, _TEXT):
        weights = weights.replace(",", " ").replace(";", " ").split()
    if not weights:
        return None
    shown = ", ".join(_text(w) if isinstance(w, _TEXT) else repr(w) for w in weights)
    try:
        blend = [float(w) for w in weights]
    except (TypeError, ValueError, OverflowError):
        blend = None
    if blend is None or not all(0 <= w < float("inf") for w in blend):
        raise BridgeError("bad_option", u"The style weights \"%s\" are not all numbers of 0 or "
                          u"more: give one per style, e.g. \"2, 1\"." % _printable(shown, 80))
    if len(blend) != count:
        raise BridgeError("bad_option", u"The style weights \"%s\" are %d weight(s) for %d "
                          u"style(s): give one per style, in order (style image, 2, 3, then the "
                          u"open layer), or none for all the same."
                          % (_printable(shown, 80), len(blend), count))
    if not sum(blend) > 0:
        raise BridgeError("bad_option", "The style weights are all zero: give at least one style "
                          "a weight above 0.")
    return blend


def _image_bytes(image, what, channels=None):
    try:
        width, height = int(image["width"]), int(image["height"])
        fmt = image["format"]
        if channels is None:
            channels = int(image["channels"])
        data = image["data"]
        view = memoryview(data)  # bytes-like only: text or numbers would fail in the writer
        size = len(view) * view.itemsize
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise BridgeError("bad_request", "The %s is not a dict(width, height, channels, format, "
                                         "data) (%s)." % (what, e))
    if not (isinstance(fmt, _TEXT) and fmt in SAMPLE_BYTES and 1 <= channels <= 4
            and 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise BridgeError("bad_request", "The %s has an unsupported size or format (%dx%d, %d "
                          "channel(s), %s)." % (what, width, height, channels, _brief(fmt)))
    expected = width * height * channels * SAMPLE_BYTES[fmt]
    if size != expected:
        raise BridgeError("bad_request", "The %s holds %d bytes; %dx%d, %d channel(s) of %s need "
                          "%d." % (what, size, width, height, channels, fmt, expected))
    return dict(width=width, height=height, channels=channels, format=fmt), data


def _read_styles(style_paths):
    """The request's "styles" entries and their bytes. A style is a file's path (its bytes are
    sent) or pixels like the content's, dict(width, height, channels, format, data, name)."""
    if isinstance(style_paths, _TEXT) or isinstance(style_paths, dict):
        style_paths = [style_paths]
    style_paths = [p for p in (style_paths or []) if p]
    if not style_paths:
        raise BridgeError("bad_image", "Choose a style image (a painting or a photo whose look "
                                       "the layer should take).")
    styles, blobs = [], []
    for style in style_paths:
        if isinstance(style, dict):
            entry, data = _image_bytes(style, "style layer's pixel data")
            name = style.get("name") or u"style layer"
        else:
            data = _read_style(style)
            entry, name = {"size": len(data)}, os.path.basename(style)
        # The name only labels the core's messages: text that any JSON reader can take.
        entry["name"] = _text(name).encode("utf-8", "replace").decode("utf-8")
        styles.append(entry)
        blobs.append(data)
    return styles, blobs


def _read_style(path):
    """One style file's bytes. Only a regular file is read (a FIFO or a device could block GIMP
    or never end), at most MAX_STYLE_BYTES: checked before reading and again while reading, as
    the file may grow. Opened non-blocking so that opening a FIFO does not wait for a writer."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except (IOError, OSError) as e:
        raise _style_error(path, "cannot be read: %s" % _reason(e))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _style_error(path, "is not an image file (it is a folder, a pipe or a device)")
        if info.st_size > MAX_STYLE_BYTES:
            raise _style_error(path, "is %d MiB, over the limit of %d MiB; save a smaller copy"
                               % (info.st_size >> 20, MAX_STYLE_BYTES >> 20))
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_STYLE_BYTES:
                raise _style_error(path, "grew past the limit of %d MiB while it was read"
                                   % (MAX_STYLE_BYTES >> 20))
            chunks.append(chunk)
    except (IOError, OSError) as e:
        raise _style_error(path, "cannot be read: %s" % _reason(e))
    finally:
        os.close(fd)
    if not size:
        raise _style_error(path, "is empty")
    return b"".join(chunks)


def _style_error(path, problem):
    return BridgeError("bad_image", "The style image %s %s." % (_text(path), problem))


def _reason(error):
    return getattr(error, "strerror", None) or error


def _header(message):
    try:
        text = json.dumps(message, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as e:  # a script's own option that JSON cannot carry
        raise BridgeError("bad_option", "The options cannot be sent to the core (%s)." % e)
    return text.encode("ascii") + b"\n"


# -- logs ----------------------------------------------------------------------------------------


def log_dir():
    """This user's log folder. The temp folder is shared on POSIX, so the folder's name holds the
    user id: <tempdir>/neural-style-gimp-<uid>; on Windows the temp folder is the user's own."""
    name = LOG_DIR_NAME
    if hasattr(os, "getuid"):
        name = "%s-%d" % (LOG_DIR_NAME, os.getuid())
    return os.path.join(tempfile.gettempdir(), name)


def _private_folder(path):
    """Makes `path` (0700) if it is missing; True if it is a folder only this user can use: not a
    link, owned by us, closed to group and others. Another user may have made it first (or
    planted a link there): such a folder is left as it is, never changed or written into."""
    try:
        os.mkdir(path, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:  # EEXIST: ours from an earlier run, another run's, or a trap
            raise
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return False
    if hasattr(os, "getuid"):
        return info.st_uid == os.getuid() and not info.st_mode & 0o077
    return True


def _new_log():
    """(fd, path) of a new log file in log_dir(), or in a fresh private folder when log_dir()
    is not safe to use. mkstemp: a unique name, created exclusively (O_EXCL, no link followed),
    mode 0600; the name holds the time and our pid."""
    prefix = "core-%s-pid%d-" % (time.strftime("%Y%m%d-%H%M%S"), os.getpid())
    folder, problem = log_dir(), None
    try:
        if _private_folder(folder):
            _prune_logs(folder)
            return tempfile.mkstemp(prefix=prefix, suffix=".log", dir=folder)
        problem = "%s is not a private folder of this user: not used" % folder
    except (IOError, OSError) as e:
        problem = "%s: %s" % (folder, _reason(e))
    try:
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=".log",
                                    dir=tempfile.mkdtemp(prefix=LOG_DIR_NAME + "-"))
    except (IOError, OSError) as e:
        raise BridgeError("core_crashed", "Cannot create a log file for the neural style core "
                          "(%s; %s)." % (problem, _reason(e)))
    os.write(fd, _note_line(problem))
    return fd, path


def _prune_logs(folder):
    """Deletes this user's log files older than LOG_KEEP_DAYS from our private folder: only
    regular files named like ours (lstat: a link is never followed, nor deleted)."""
    limit = time.time() - LOG_KEEP_DAYS * 86400
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith("core-") and name.endswith(".log"):
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode) and uid in (None, info.st_uid) \
                        and info.st_mtime < limit:
                    os.remove(path)
            except OSError:
                pass


def _note_line(text):
    return (u"%s bridge: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), _text(text))).encode(
        "utf-8", "replace")


def _log_note(path, text):
    try:
        with open(path, "ab") as f:
            f.write(_note_line(text))
    except Exception:  # noqa: BLE001 - a note in the log must never break the run
        pass


def _log_tail(path, lines=6):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return ""
    kept = [line.strip() for line in text.splitlines()
            if line.strip() and " bridge: " not in line]
    return _printable(u" | ".join(kept[-lines:]), 1000)


# -- progress text -------------------------------------------------------------------------------


def format_eta(seconds):
    seconds = int(round(max(0, seconds)))
    return "%d:%02d" % (seconds // 60, seconds % 60)


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _within(value, low, high):
    """True for a number in [low, high]; never for NaN, Infinity or a non-number."""
    return _real(value) and low <= value <= high


def _integer(value, low, high):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) \
        and low <= value <= high


def _clamp(value, low, high, default):
    """A finite number clamped to [low, high]; default for NaN, Infinity and non-numbers."""
    if not _within(value, -1e300, 1e300):
        return default
    return float(min(high, max(low, value)))


def progress_text(message):
    """E.g. "Neural style: scale 2/5, 43%, about 0:35 left". Numbers are the core's measurements:
    any value that cannot be shown (NaN, negative, absurdly large) is left out or clamped."""
    phase = message.get("phase")
    if phase == "loading":
        return "Neural style: loading"
    if phase == "finishing":
        return "Neural style: finishing"
    parts = []
    scale, scales = message.get("scale"), message.get("scales")
    if _within(scales, 2, 1000) and _within(scale, 1, scales):
        parts.append("scale %d/%d" % (scale, scales))
    parts.append("%d%%" % int(100 * _clamp(message.get("fraction"), 0.0, 1.0, 0.0)))
    eta = message.get("eta_s")
    if _within(eta, 0, MAX_ETA_S):
        parts.append("about %s left" % format_eta(eta))
    return "Neural style: " + ", ".join(parts)


# -- what the core says --------------------------------------------------------------------------
# The policy: the protocol's types are a contract. A message whose fields have the wrong types or
# are missing (a string or a list where a number goes, a result that is not the one asked for)
# means a broken core: one BridgeError, the core is stopped. Progress numbers are measurements,
# which may be NaN, Infinity or absurd (Python's json reads NaN and Infinity): they only feed the
# progress bar and text, so they are clamped or left out there, never an error. Messages of an
# unknown type are ignored (a newer core may say more).


class _Broken(Exception):
    """The core broke the protocol; args[0] says how, for the user."""


def _printable(text, limit=200):
    """The core's text, safe to show: control and format characters (escape sequences, NULs,
    direction overrides) become spaces; at most `limit` characters."""
    text = u"".join(u" " if unicodedata.category(c)[0] == "C" else c for c in text[:limit + 1])
    return text if len(text) <= limit else text[:limit - 3] + u"..."


def _brief(value):
    """A value the core (or a script) sent, in a few readable characters."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, _TEXT):
        return u'"%s"' % _printable(_text(value), 40)
    return _printable(_text(str(value)), 40)


def _check(message, answer, expected):
    """The core's `message` (a dict with a text "type") as the protocol defines it; raises
    _Broken saying how it is not. answer: the kind of answer this exchange waits for, "result"
    (then `expected` is dict(width, height, channels, format)) or "estimate"."""
    kind = message["type"]
    if kind == answer == "result":
        return _check_result(message, expected)
    if answer == "preview" and kind in ("image", "result"):
        return _check_picture(message, expected["size"])
    if "payload" in message and not _integer(message["payload"], 0, 0):
        raise _Broken("its %s message carries an unexpected payload" % _brief(kind))
    if kind in ("result", "estimate") and kind != answer:
        raise _Broken("it sent a %s where a %s was due" % (kind, answer))
    if kind == "progress":
        for name in PROGRESS_FIELDS:
            value = message.get(name)
            if value is not None and not (isinstance(value, _TEXT) if name == "phase"
                                          else _real(value)):
                raise _Broken("its progress message's %s is %s" % (name, _brief(value)))
    elif kind == "error":
        text = message.get("message")
        if not isinstance(message.get("kind"), _TEXT) or not isinstance(text, _TEXT):
            raise _Broken('its error message lacks a text "kind" or "message"')
        kind = message["kind"] if message["kind"] in CORE_KINDS else "internal"
        text = _printable(text, MAX_CORE_TEXT).strip() or "the core failed without saying why"
        return dict(type="error", kind=kind, message=text)
    elif kind == "estimate":
        return _check_estimate(message)
    return message


def _check_result(message, expected):
    names = ("width", "height", "channels", "format")
    got = [message.get(k) for k in names]
    size = message.get("payload")
    want = (expected["width"] * expected["height"] * expected["channels"]
            * SAMPLE_BYTES[expected["format"]])
    typed = all(_integer(v, 1, MAX_SIDE) for v in got[:3]) and isinstance(got[3], _TEXT) \
        and _integer(size, want, want)
    if not typed or got != [expected[k] for k in names]:
        raise _Broken("its result is not the image asked for (%s instead of %dx%d, %d channel(s), "
                      "%s, %d bytes)" % (", ".join("%s %s" % (k, _brief(v)) for k, v in zip(
                          names + ("payload",), got + [size])), expected["width"],
                          expected["height"], expected["channels"], expected["format"], want))
    return message


def _check_picture(message, limit):
    """A preview's picture (each "image" and its "result"): RGB u8, at most `limit` px a side."""
    w, h = message.get("width"), message.get("height")
    if not (_integer(w, 1, limit) and _integer(h, 1, limit) and message.get("channels") == 3
            and message.get("format") == "u8"
            and _integer(message.get("payload"), w * h * 3, w * h * 3)):
        raise _Broken("its preview picture is not RGB u8 of at most %d px a side" % limit)
    return message


def _check_estimate(message):
    """The estimate's fields as the plug-ins use them (estimated_seconds takes logarithms)."""
    device, table = message.get("device"), message.get("table")
    auto, limit = message.get("auto_size"), message.get("auto_seconds")
    busy = message.get("busy")  # why a run may take longer now (a newer core's field)

    def row_ok(row):
        return isinstance(row, list) and len(row) == 2 and _within(row[0], 1, MAX_SIDE) \
            and _within(row[1], 0, 1e9)

    if not (isinstance(device, _TEXT) and isinstance(table, dict) and isinstance(auto, dict)
            and all(isinstance(rows, list) and all(row_ok(r) for r in rows)
                    for rows in table.values())
            and all(_integer(size, 1, MAX_SIDE) for size in auto.values())
            and _within(limit, 0, 1e9)):
        raise _Broken("its time estimate is not the table the protocol defines")
    return dict(type="estimate", device=_printable(device, 100), table=table, auto_size=auto,
                auto_seconds=limit,
                busy=_printable(busy, 200) if isinstance(busy, _TEXT) and busy else None)


# -- the core process ----------------------------------------------------------------------------


class _Reader(threading.Thread):
    """Reads the core's stdout into a queue: ("message", message, payload) for each message
    that passes _check, then ("eof",) or ("broken", how). Checks every size before reading a
    payload; anything after the answer (a result, estimate or error) is broken too."""

    def __init__(self, stream, answer, expected):
        threading.Thread.__init__(self, name="nst-bridge-reader")
        self.daemon = True
        self.stream = stream
        self.answer = answer  # "result", "preview" (streamed images, then a result), "estimate"
        self.expected = expected  # the result's dict(width, height, channels, format)
        self.answered = False
        self.queue = queue.Queue()

    def run(self):
        try:
            while True:
                line = self.stream.readline(MAX_HEADER + 1)
                if not line:
                    self.queue.put(("eof",))
                    return
                message, payload = self._message(line)
                self.queue.put(("message", message, payload))
        except _Broken as e:
            self.queue.put(("broken", e.args[0]))
        except Exception as e:  # noqa: BLE001 - reported to the main thread
            self.queue.put(("broken", "reading its output failed (%s)" % _brief(e)))

    def _message(self, line):
        if self.answered:
            raise _Broken("it wrote more after its answer")
        if len(line) > MAX_HEADER:
            raise _Broken("it wrote a line longer than %d bytes" % MAX_HEADER)
        if not line.endswith(b"\n"):
            raise _Broken("its output ended in the middle of a message")
        try:
            message = json.loads(line.decode("utf-8"))
        except (ValueError, RuntimeError):  # RuntimeError: RecursionError, deeply nested junk
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), _TEXT):
            raise _Broken(u'it wrote "%s" instead of a protocol message'
                          % _printable(line[:80].decode("utf-8", "replace").strip(), 80))
        message = _check(message, self.answer, self.expected)
        payload = None
        if message["type"] in ("result", "image"):
            payload = self._read(message["payload"])
        self.answered = message["type"] in ("result", "estimate", "error")
        return message, payload

    def _read(self, size):
        chunks, left = [], size
        while left:
            chunk = self.stream.read(min(left, 1 << 22))
            if not chunk:
                raise _Broken("its output ended %d bytes before the end of its result" % left)
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class _Writer(threading.Thread):
    """Writes the request without blocking the main thread (which watches for a cancel)."""

    def __init__(self, stream, parts):
        threading.Thread.__init__(self, name="nst-bridge-writer")
        self.daemon = True
        self.stream = stream
        self.parts = parts
        self.error = None

    def run(self):
        try:
            for part in self.parts:
                self.stream.write(part)
            self.stream.flush()
        except Exception as e:  # noqa: BLE001 - mostly: the core stopped reading; it says why
            self.error = e
            _close(self.stream)  # a request cut short: the core reports it, never waits
        self.parts = None

    def send_cancel(self):
        """Ask the core to stop, then close its stdin (closing also means stop)."""
        if self.is_alive():
            return False  # still writing the request: the caller kills the core instead
        try:
            self.stream.write(_header({"type": "cancel"}))
            self.stream.flush()
        except (IOError, OSError, ValueError):
            pass
        _close(self.stream)
        return True


def _close(stream):
    try:
        stream.close()
    except (IOError, OSError, ValueError):
        pass


def _wait(proc, timeout):
    """proc.wait with a timeout on Python 2 and 3; the exit status or None."""
    deadline = _monotonic() + timeout
    while proc.poll() is None:
        if _monotonic() >= deadline:
            return None
        time.sleep(0.02)
    return proc.returncode


def _stop(proc):
    """Kill the core if it still runs and reap it: never a zombie."""
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    proc.wait()


# ssh's options that take a value (`ssh -p 2222 -i key host command`): skipped to find the host.
_SSH_VALUE_OPTIONS = "BbcDEeFIiJLlmOoPpQRSWw"


def _ssh_host(command):
    """The host of a core command run through ssh (a remote core), else None."""
    if not command or os.path.basename(command[0]).split(".")[0] != "ssh":
        return None
    args = iter(command[1:])
    for arg in args:
        if arg.startswith("-") and len(arg) > 1:
            if arg[-1] in _SSH_VALUE_OPTIONS and len(arg) == 2:
                next(args, None)
            continue
        return arg
    return None


def _exit_description(code):
    if code is None:
        return "did not exit within %.0f s" % EXIT_WAIT_S
    if code < 0:
        names = dict((getattr(signal, n), n) for n in dir(signal)
                     if n.startswith("SIG") and not n.startswith("SIG_")
                     and isinstance(getattr(signal, n), int))
        name = names.get(-code, "signal %d" % -code)
        text = "was killed by %s" % name
        if -code == getattr(signal, "SIGKILL", 9):
            text += " (the system may have run out of memory)"
        return text
    return "exited with code %d" % code


def _popen(command, log_fd):
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    kwargs = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_fd, env=env,
                  bufsize=-1)
    if os.name == "nt":
        kwargs["creationflags"] = 0x08000000  # CREATE_NO_WINDOW: no console window pops up
    else:
        kwargs["close_fds"] = True
    return subprocess.Popen(command, **kwargs)


def run(options, content, style_paths, mask=None, result_format=None, on_progress=None,
        should_cancel=None, config_dir=None):
    """Stylise `content` with the core; returns dict(width, height, channels, format, data).

    options: plug-in values (see DEFAULTS; size_mode "auto": the core picks the layer's own size
    unless that takes more than auto_minutes, then the largest that does; style_weights: one per
    style, see style_blend); content: dict(width, height, channels, format ("u8", "u16",
    "f32"), data);
    style_paths: style image files and/or pixels like the content (plus an optional "name");
    mask: None or dict(width, height, format, data), one channel; on_progress(fraction, text)
    and should_cancel() are called from this (the calling) thread. Raises BridgeError."""
    command = find_core_command(config_dir)
    _check_options(options)
    content_info, content_data = _image_bytes(content, "layer's pixel data")
    result_format = result_format or content_info["format"]
    if not (isinstance(result_format, _TEXT) and result_format in SAMPLE_BYTES):
        raise BridgeError("bad_request", "Unknown result format %s." % _brief(result_format))
    mask_info, mask_data = None, b""
    if mask is not None:
        mask_info, mask_data = _image_bytes(mask, "selection mask", channels=1)
        mask_info.pop("channels")
        if (mask_info["width"], mask_info["height"]) != (content_info["width"],
                                                         content_info["height"]):
            raise BridgeError("bad_request", "The selection mask's size differs from the layer's.")
    request, parts = _request(options, content_info, content_data, style_paths)
    request.update(mask=mask_info, result={"format": result_format})
    if (options or {}).get("size_mode") == "auto":  # the core picks the size for the limit
        request["auto_seconds"] = auto_seconds(options)
    if mask_info:
        parts.append(mask_data)
    request["payload"] = sum(len(p) for p in parts)
    _check_executable(command)
    expected = dict(content_info, format=result_format)
    return _exchange(command, [_header(request)] + parts, "result", expected, on_progress,
                     should_cancel)


def preview(options, content, style_paths, on_image, should_cancel=None, size=PREVIEW_SIZE,
            on_progress=None, config_dir=None):
    """What a run of `options` paints first, at `size` px (long side), for a dialog's preview:
    the core streams the picture as it paints it, the first once its smallest scale is done.
    on_image(width, height, rgb_bytes) is called (from this thread) with each picture, RGB u8,
    the last one the finished preview, which is also returned as dict(width, height,
    channels=3, format="u8", data). content: a thumbnail of
    the layer, like run()'s content. Raises BridgeError (kind "cancelled" when should_cancel()
    said so)."""
    command = find_core_command(config_dir)
    _check_options(options)
    content_info, content_data = _image_bytes(content, "layer's thumbnail")
    request, parts = _request(options, content_info, content_data, style_paths)
    request.update(preview={"size": int(size)}, payload=sum(len(p) for p in parts))
    _check_executable(command)
    result = _exchange(command, [_header(request)] + parts, "preview", dict(size=int(size)),
                       on_progress, should_cancel, on_image)
    on_image(result["width"], result["height"], result["data"])
    return result


def _check_options(options):
    if options is not None and not isinstance(options, dict):
        raise BridgeError("bad_option", "The options must be a dict of plug-in values, not %s."
                          % _brief(options))


def _request(options, content_info, content_data, style_paths):
    """The request's header fields and payload parts common to runs and previews."""
    styles, style_data = _read_styles(style_paths)
    opts = core_options(options)
    blend = style_blend((options or {}).get("style_weights"), len(styles))
    if blend is not None:
        opts["style_blend"] = blend
    request = {"type": "request", "protocol": PROTOCOL, "options": opts,
               "content": content_info, "styles": styles}
    return request, [content_data] + style_data


def estimate(options, width, height, config_dir=None, timeout=120.0):
    """How long runs on a width x height layer would take with the core's device and memory,
    from the core's record of its runs here (the first time, a measurement of a few seconds).
    Returns the core's answer: dict(device, table={preset: [[long side, seconds], ...]},
    auto_size={preset: long side} for the options' auto_minutes, auto_seconds, busy=None or why
    a run may take longer now). Raises BridgeError."""
    command = find_core_command(config_dir)
    _check_executable(command)
    opts = core_options(options)
    limit = auto_seconds(options)
    if not (_integer(width, 1, MAX_SIDE) and _integer(height, 1, MAX_SIDE)):
        raise BridgeError("bad_request", "Cannot estimate a %sx%s layer." % (
            _brief(width), _brief(height)))
    message = {"type": "estimate", "protocol": PROTOCOL, "options": opts,
               "content": {"width": int(width), "height": int(height)},
               "auto_seconds": limit}
    deadline = _monotonic() + timeout
    try:
        answer = _exchange(command, [_header(message)], "estimate", None, None,
                           lambda: _monotonic() > deadline)
    except BridgeError as e:
        if e.kind != "cancelled":
            raise
        raise BridgeError("core_crashed", "The neural style core gave no time estimate within "
                          "%.0f s." % timeout, e.log_path)
    answer.pop("type")
    return answer


def estimated_seconds(answer, preset, size):
    """Seconds for a long side, interpolated (log-log) in the core's table; None if unknown."""
    import math

    rows = (answer or {}).get("table", {}).get(preset) or []
    if not rows or size <= 0:
        return None
    if size <= rows[0][0]:
        return rows[0][1]
    for (s0, t0), (s1, t1) in zip(rows, rows[1:]):
        if size <= s1:
            if s1 == s0:
                return t1
            t0, t1 = max(t0, 0.05), max(t1, 0.05)  # the core rounds to 0.1 s: 0 has no log
            f = (math.log(size) - math.log(s0)) / (math.log(s1) - math.log(s0))
            return math.exp(math.log(t0) + f * (math.log(t1) - math.log(t0)))
    return None  # past the largest size that fits


def auto_size(answer, preset, long_side, limit_s):
    """The long side size_mode "auto" paints a long_side px layer at with this time limit: the
    core's own answer for its limit, else from its table (the dialog's limit was changed)."""
    if answer.get("auto_seconds") == limit_s and preset in answer.get("auto_size", {}):
        return min(answer["auto_size"][preset], long_side)

    def fits(size):
        seconds = estimated_seconds(answer, preset, size)
        return seconds is not None and seconds <= limit_s

    if fits(long_side):
        return long_side
    rows = (answer.get("table") or {}).get(preset) or [[long_side, 0]]
    lo, hi = min(rows[0][0], long_side) // 16, long_side // 16  # in steps of 16 px, as the core
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid * 16) else (lo, mid - 1)
    return max(lo * 16, min(rows[0][0], long_side))


def estimate_text(answer, options, width, height):
    """The dialog's line on what the run will cost here: the size it paints at, how much the
    result is enlarged when that is smaller than the layer, and the time. answer: estimate()'s,
    or the text of why there is none; options: the plug-in values."""
    if isinstance(answer, _TEXT):
        return "Layer %dx%d px. No time estimate: %s" % (width, height, answer)
    values = dict(DEFAULTS)
    values.update(options or {})
    options = values
    preset, mode = options["preset"], options["size_mode"]
    long_side = max(width, height)
    if mode == "auto":
        limit = auto_seconds(options)
        size = auto_size(answer, preset, long_side, limit)
        why = "the largest size that takes at most %s here" % (
            format_duration(limit).replace("about ", ""))
        if size >= long_side:
            why = "the layer's own size"
    elif mode == "layer":
        size, why = long_side, "the layer's own size"
    else:
        size = options.get("size") or long_side
        why = "enlarged: slower, no finer" if size > long_side else "custom"
    painted = "painted at %d px (%s)" % (size, why)
    if size < long_side:
        painted += ", enlarged %.1fx: softer at 100 %%" % (long_side / float(size))
    seconds = estimated_seconds(answer, preset, size)
    device = answer.get("device", "this machine")
    took = ("%s on %s" % (format_duration(seconds), device) if seconds is not None
            else "does not fit in memory here: choose a smaller size")
    text = "Layer %dx%d px, %s%s%s." % (width, height, painted,
                                        "; " if size < long_side else ": ", took)
    if answer.get("busy"):
        text += " It may take longer: %s." % answer["busy"]
    return text


def format_duration(seconds):
    """E.g. "about 40 s", "about 4 min", "about 1 h 20 min"."""
    if seconds < 60:
        return "about %d s" % max(1, int(round(seconds / 5.0) * 5 or seconds))
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return "about %d min" % minutes
    return "about %d h %02d min" % (minutes // 60, minutes % 60)


def _exchange(command, parts, answer, expected, on_progress, should_cancel, on_image=None):
    """Start the core, send `parts`, and return its answer: a "result" (then `expected` is its
    dict(width, height, channels, format)), a "preview" (expected: dict(size); on_image gets
    each streamed picture) or an "estimate"."""
    log_fd, log_path = _new_log()
    try:
        os.write(log_fd, _note_line("starting %s" % (command,)))
        proc = _popen(command, log_fd)
    except (IOError, OSError) as e:
        _log_note(log_path, "could not start the core: %s" % e)
        raise BridgeError("core_missing", "The neural style core (%s) could not be started: %s. "
                          "%s." % (command[0], getattr(e, "strerror", None) or e, REPAIR),
                          log_path)
    finally:
        os.close(log_fd)

    reader = _Reader(proc.stdout, answer, expected)
    writer = _Writer(proc.stdin, parts)
    parts = None
    try:
        reader.start()
        writer.start()
        return _talk(proc, reader, writer, log_path, on_progress, should_cancel, on_image,
                     command)
    finally:
        _stop(proc)
        writer.join(1.0)
        _close(proc.stdin)
        reader.join(1.0)
        _close(proc.stdout)
        _log_note(log_path, "core %s" % _exit_description(proc.returncode))


def _talk(proc, reader, writer, log_path, on_progress, should_cancel, on_image, command=None):
    answer, payload, deadline, fraction = None, None, None, 0.0
    while deadline is None or _monotonic() < deadline:
        if should_cancel is not None and should_cancel():
            _cancel(proc, writer, log_path)
            raise BridgeError("cancelled", "Cancelled.", log_path)
        try:
            item = reader.queue.get(timeout=0.05)
        except queue.Empty:
            continue
        if item[0] == "eof":
            break
        if item[0] == "broken":
            _stop(proc)
            _log_note(log_path, "protocol broken: %s" % item[1])
            raise BridgeError("core_crashed", "The neural style core broke the protocol: %s. "
                              "%s." % (item[1], REPAIR), log_path)
        message = item[1]
        if message["type"] == "progress":
            if on_progress is not None:  # a NaN fraction keeps the bar where it was
                fraction = _clamp(message.get("fraction"), 0.0, 1.0, fraction)
                on_progress(fraction, progress_text(message))
        elif message["type"] == "image" and on_image is not None:
            on_image(message["width"], message["height"], item[2])
        elif message["type"] in ("result", "estimate", "error"):
            answer, payload = message, item[2]
            deadline = _monotonic() + EXIT_WAIT_S  # to close its output; then it is stopped
    code = _wait(proc, EXIT_WAIT_S)
    if answer is not None and answer["type"] == "error":
        raise BridgeError(answer["kind"],
                          _sentence(plugin_wording(answer["message"], command)), log_path)
    if answer is not None and code == 0:
        if answer["type"] == "estimate":
            return answer
        return dict(width=answer["width"], height=answer["height"],
                    channels=answer["channels"], format=answer["format"], data=payload)
    tail = _log_tail(log_path)
    host = _ssh_host(command)
    if host is not None and code == 255 and answer is None:  # ssh's own failure, not the core's
        raise BridgeError("core_missing", u"The neural style core on %s could not be reached "
                          u"over ssh%s. Check the host and the key in %s (or nst-core.json): "
                          u"`%s` must work in a terminal without asking anything." % (
                              host, (": " + tail.rstrip(".")) if tail else "", ENV_COMMAND,
                              u" ".join(_quoted(_text(p)) for p in command)), log_path)
    raise BridgeError("core_crashed", "The neural style core %s %s%s." % (
        "answered, but then" if answer is not None else "gave no answer: it",
        _exit_description(code), (". Last log lines: " + tail) if tail else ""), log_path)


# The core's advice names its command-line flags; a GIMP user has the dialog's fields instead.
_DIALOG_WORDS = (
    (u"Use --device cpu or auto", u"Choose Device: CPU or Automatic in the dialog"),
    (u"--device cpu", u"Device: CPU in the dialog"),
    (u"the --max-memory budget", u"the Memory limit"),
    (u"raise --max-memory", u"raise the Memory limit in the dialog"),
)
# An option's name where the core's message starts with it ("max_memory of 0.5 GB is too
# small", "size must be at least 16") or names its flag: the dialog's label instead.
_LABELS = tuple((re.compile(u"(?<![\\w-])(?:--%s|%s)(?= must | of |: )" % (
    re.escape(o.arg), re.escape(o.name))), u"\"%s\"" % o.text)
    for o in nst_options.OPTIONS if o.core and o.kind in ("int", "float", "choice"))


def plugin_wording(text, command=None):
    """The core's message in the dialog's words: its command-line advice and option names
    become the dialog's fields, and `nst ...` the full command of the installed core
    (`command`, the core's own command line), which a GIMP user can paste into a terminal."""
    for flag, words in _DIALOG_WORDS:
        text = text.replace(flag, words)
    for pattern, label in _LABELS:
        text = pattern.sub(label, text)
    nst = _nst_command(command)
    if nst:
        text = text.replace(u"`nst ", u"`%s " % nst)
    return text


def _nst_command(command):
    """`nst` as the installed core runs it: "python -m nst_core" for "python -m nst_core.worker",
    the command before "worker" for "... nst worker" (ssh included); None when unknown."""
    if not command:
        return None
    if list(command[-2:]) == ["-m", "nst_core.worker"]:
        parts = list(command[:-1]) + ["nst_core"]
    elif command[-1] == "worker" and len(command) > 1:
        parts = list(command[:-1])
    else:
        return None
    return u" ".join(_quoted(_text(p)) for p in parts)


def _quoted(part):
    if part and not any(c in part for c in u" \t\"'$`\\;&|<>()*?"):
        return part
    return u"\"%s\"" % part.replace(u"\\", u"\\\\").replace(u"\"", u"\\\"")


def _sentence(text):
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _cancel(proc, writer, log_path):
    _log_note(log_path, "cancelled by the user")
    if writer.send_cancel():
        if _wait(proc, CANCEL_WAIT_S) is not None:
            return
        _log_note(log_path, "the core did not stop within %.0f s; killing it" % CANCEL_WAIT_S)
    _stop(proc)
