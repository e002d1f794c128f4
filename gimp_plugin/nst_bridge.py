"""The plug-ins' side of the neural style core: find it, start it, talk to it, stop it.

Used by both the GIMP 3 plug-in (Python 3) and the GIMP 2.10 plug-in (Python 2.7), so this file
is Python 2.7 AND 3 and uses the standard library only. It never imports nst_core: GIMP's own
Python has no torch. The core is a separate process (`python -m nst_core.worker`) spoken to over
its stdin/stdout with the wire format of nst_core/protocol.py; its stderr goes to a new log file
per run under <tempdir>/neural-style-gimp/.

    result = nst_bridge.run(options, content, [style_path], mask=None,
                            on_progress=callback, should_cancel=callback)

Every failure is one BridgeError with a readable message that ends with the log file's path.
"""
# Python 2.7 compatible on purpose: no f-strings, no `raise from`, IOError spelled out.
# ruff: noqa: UP003, UP010, UP024, UP025, UP031, B904

from __future__ import absolute_import, division, print_function

import getpass
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time

try:
    import queue  # novm
except ImportError:  # Python 2
    import Queue as queue  # novm

PRESETS = ("draft", "standard", "high", "classic")
DEVICES = ("auto", "cpu", "cuda", "mps")
# size_mode: what the painting is computed at (the result always covers the layer): "auto" = the
# layer's own size where that takes at most AUTO_SECONDS on this machine, else the largest size
# that does; "layer" = the layer's own size; "custom" = `size` px (long side).
SIZE_MODES = ("auto", "layer", "custom")
AUTO_SECONDS = 180
MAX_SIZE = 16384
DEFAULTS = dict(preset="standard", size_mode="auto", size=1024, strength=1.0,
                preserve_colors=False, device="auto", seed=0, style_scale=1.0, max_memory=0.0)
CONFIG_NAME = "nst-core.json"
ENV_COMMAND = "NST_CORE_COMMAND"
PROTOCOL = 1
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}
LOG_DIR_NAME = "neural-style-gimp"
LOG_KEEP_DAYS = 7
MAX_HEADER = 1 << 20
CANCEL_WAIT_S = 2.0
EXIT_WAIT_S = 10.0  # after the core closed stdout, how long it may take to exit
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
        if log_path:
            message = u"%s Log: %s" % (message.rstrip(), _text(log_path))
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
    out = {}
    for name, value in values.items():
        if name == "size_mode":
            continue
        if name == "size":
            custom = values["size_mode"] == "custom" and value
            out["size"] = int(value) if custom else None
        elif name == "max_memory":  # 0: automatic
            out[name] = float(value) if value else None
        elif name in ("strength", "style_scale"):
            out[name] = float(value)
        elif name in ("seed",):
            out[name] = int(value)
        elif name == "preserve_colors":
            out[name] = bool(value)
        elif name in ("preset", "device"):
            out[name] = str(value)
        else:
            out[name] = value
    return out


def _image_bytes(image, what, channels=None):
    try:
        width, height = int(image["width"]), int(image["height"])
        fmt = image["format"]
        if channels is None:
            channels = int(image["channels"])
        data = image["data"]
    except (KeyError, TypeError, ValueError) as e:
        raise BridgeError("bad_request", "The %s is not a dict(width, height, channels, format, "
                                         "data) (%s)." % (what, e))
    if fmt not in SAMPLE_BYTES or not 1 <= channels <= 4 or width < 1 or height < 1:
        raise BridgeError("bad_request", "The %s has an unsupported size or format "
                          "(%dx%d, %d channel(s), %r)." % (what, width, height, channels, fmt))
    expected = width * height * channels * SAMPLE_BYTES[fmt]
    if len(data) != expected:
        raise BridgeError("bad_request", "The %s holds %d bytes; %dx%d, %d channel(s) of %s need "
                          "%d." % (what, len(data), width, height, channels, fmt, expected))
    return dict(width=width, height=height, channels=channels, format=fmt), data


def _read_styles(style_paths):
    if isinstance(style_paths, _TEXT):
        style_paths = [style_paths]
    style_paths = [p for p in (style_paths or []) if p]
    if not style_paths:
        raise BridgeError("bad_image", "Choose a style image (a painting or a photo whose look "
                                       "the layer should take).")
    styles, blobs = [], []
    for path in style_paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (IOError, OSError) as e:
            raise BridgeError("bad_image", "The style image %s cannot be read: %s."
                              % (path, getattr(e, "strerror", None) or e))
        if not data:
            raise BridgeError("bad_image", "The style image %s is empty." % path)
        styles.append({"name": os.path.basename(path), "size": len(data)})
        blobs.append(data)
    return styles, blobs


def _header(message):
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode("ascii") + b"\n"


# -- logs ----------------------------------------------------------------------------------------


def log_dir():
    return os.path.join(tempfile.gettempdir(), LOG_DIR_NAME)


def _log_dirs():
    """<tempdir>/neural-style-gimp, and a per-user one for when another user owns that."""
    base = log_dir()
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name: the uid or pid will do
        user = str(getattr(os, "getuid", os.getpid)())
    return [base, "%s-%s" % (base, "".join(c for c in user if c.isalnum()) or "user")]


def _new_log():
    """(fd, path) of a new log file: its name holds the time and our pid; mkstemp: unique."""
    prefix = "core-%s-pid%d-" % (time.strftime("%Y%m%d-%H%M%S"), os.getpid())
    problems = []
    for folder in _log_dirs():
        try:
            if not os.path.isdir(folder):
                try:
                    os.makedirs(folder)
                except OSError:  # another run made it in between: fine; anything else is not
                    if not os.path.isdir(folder):
                        raise
            _prune_logs(folder)
            return tempfile.mkstemp(prefix=prefix, suffix=".log", dir=folder)
        except (IOError, OSError) as e:
            problems.append("%s: %s" % (folder, getattr(e, "strerror", None) or e))
    raise BridgeError("core_crashed", "Cannot create a log file for the neural style core (%s)."
                      % "; ".join(problems))


def _prune_logs(folder):
    limit = time.time() - LOG_KEEP_DAYS * 86400
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith("core-") and name.endswith(".log"):
            path = os.path.join(folder, name)
            try:
                if os.path.getmtime(path) < limit:
                    os.remove(path)
            except OSError:
                pass


def _log_note(path, text):
    try:
        with open(path, "ab") as f:
            f.write((u"%s bridge: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), _text(text)))
                    .encode("utf-8", "replace"))
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
    return " | ".join(kept[-lines:])


# -- progress text -------------------------------------------------------------------------------


def format_eta(seconds):
    seconds = int(round(max(0, seconds)))
    return "%d:%02d" % (seconds // 60, seconds % 60)


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def progress_text(message):
    """E.g. "Neural style: scale 2/5, 43%, about 0:35 left"."""
    phase = message.get("phase")
    if phase == "loading":
        return "Neural style: loading"
    if phase == "finishing":
        return "Neural style: finishing"
    parts = []
    scale, scales = _number(message.get("scale")), _number(message.get("scales"))
    if scale and scales and scales > 1:
        parts.append("scale %d/%d" % (scale, scales))
    parts.append("%d%%" % int(100 * min(1.0, max(0.0, _number(message.get("fraction")) or 0.0))))
    eta = _number(message.get("eta_s"))
    if eta is not None and eta >= 0:
        parts.append("about %s left" % format_eta(eta))
    return "Neural style: " + ", ".join(parts)


# -- the core process ----------------------------------------------------------------------------


class _Reader(threading.Thread):
    """Reads the core's stdout into a queue: ("message", header, payload), ("eof",) or
    ("garbage", description). Checks every size before reading a payload."""

    def __init__(self, stream, expected_result):
        threading.Thread.__init__(self, name="nst-bridge-reader")
        self.daemon = True
        self.stream = stream
        self.expected = expected_result  # dict(width, height, channels, format)
        self.queue = queue.Queue()

    def run(self):
        try:
            while True:
                line = self.stream.readline(MAX_HEADER + 1)
                if not line:
                    self.queue.put(("eof",))
                    return
                error = self._handle_line(line)
                if error:
                    self.queue.put(("garbage", error))
                    return
        except Exception as e:  # noqa: BLE001 - reported to the main thread
            self.queue.put(("garbage", "reading its output failed (%s)" % e))

    def _handle_line(self, line):
        if not line.endswith(b"\n"):
            return "its output ended in the middle of a message"
        try:
            message = json.loads(line.decode("utf-8"))
        except ValueError:
            message = None
        if not isinstance(message, dict) or "type" not in message:
            text = line[:80].decode("utf-8", "replace").strip()
            return "it wrote \"%s\" instead of a protocol message" % text
        kind, size = message.get("type"), message.get("payload", 0)
        payload = None
        if kind == "result":
            e = self.expected or {}
            want = e.get("width", 0) * e.get("height", 0) * e.get("channels", 0) * \
                SAMPLE_BYTES.get(e.get("format"), 0)
            same = e and all(message.get(k) == e[k]
                             for k in ("width", "height", "channels", "format"))
            if not same or size != want:
                return "its result does not match the request (%s)" % (
                    line[:200].decode("utf-8", "replace").strip())
            payload = self._read(size)
            if payload is None:
                return "its output ended in the middle of the result"
        elif size:
            return "a %r message carries an unexpected payload" % kind
        self.queue.put(("message", message, payload))
        return None

    def _read(self, size):
        chunks, left = [], size
        while left:
            chunk = self.stream.read(min(left, 1 << 22))
            if not chunk:
                return None
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
        except (IOError, OSError, ValueError) as e:  # the core stopped reading: it will say why
            self.error = e
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


def _exit_description(code):
    if code is None:
        return "did not exit"
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

    options: plug-in values (see DEFAULTS; size_mode "auto": the core picks the largest size up
    to the layer's own that takes at most AUTO_SECONDS); content: dict(width, height,
    channels, format ("u8", "u16", "f32"), data); mask: None or dict(width, height, format,
    data), one channel; on_progress(fraction, text) and should_cancel() are called from this
    (the calling) thread. Raises BridgeError."""
    command = find_core_command(config_dir)
    content_info, content_data = _image_bytes(content, "layer's pixel data")
    result_format = result_format or content_info["format"]
    if result_format not in SAMPLE_BYTES:
        raise BridgeError("bad_request", "Unknown result format %r." % (result_format,))
    mask_info, mask_data = None, b""
    if mask is not None:
        mask_info, mask_data = _image_bytes(mask, "selection mask", channels=1)
        mask_info.pop("channels")
        if (mask_info["width"], mask_info["height"]) != (content_info["width"],
                                                         content_info["height"]):
            raise BridgeError("bad_request", "The selection mask's size differs from the layer's.")
    styles, style_data = _read_styles(style_paths)
    opts = core_options(options)
    auto = (options or {}).get("size_mode") == "auto"
    _check_executable(command)

    request = {"type": "request", "protocol": PROTOCOL, "options": opts,
               "content": content_info, "styles": styles, "mask": mask_info,
               "result": {"format": result_format}}
    if auto:  # the core picks the largest size that takes at most a few minutes
        request["auto_seconds"] = AUTO_SECONDS
    request["payload"] = (len(content_data) + sum(len(d) for d in style_data)
                          + len(mask_data))
    parts = [_header(request), content_data] + style_data + ([mask_data] if mask_info else [])
    expected = dict(content_info, format=result_format)
    return _exchange(command, parts, expected, on_progress, should_cancel)


def estimate(options, width, height, config_dir=None, timeout=120.0):
    """How long runs on a width x height layer would take with the core's device and memory,
    from the core's measurement of this machine (a few seconds the first time, cached then).
    Returns the core's answer: dict(device, table={preset: [[long side, seconds], ...]},
    auto_size={preset: long side}, auto_seconds). Raises BridgeError."""
    command = find_core_command(config_dir)
    _check_executable(command)
    opts = core_options(options)
    message = {"type": "estimate", "protocol": PROTOCOL, "options": opts,
               "content": {"width": int(width), "height": int(height)},
               "auto_seconds": AUTO_SECONDS}
    deadline = _monotonic() + timeout
    return _exchange(command, [_header(message)], None, None,
                     lambda: _monotonic() > deadline)


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
            f = (math.log(size) - math.log(s0)) / (math.log(s1) - math.log(s0))
            return math.exp(math.log(t0) + f * (math.log(t1) - math.log(t0)))
    return None  # past the largest size that fits


def format_duration(seconds):
    """E.g. "about 40 s", "about 4 min", "about 1 h 20 min"."""
    if seconds < 60:
        return "about %d s" % max(1, int(round(seconds / 5.0) * 5 or seconds))
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return "about %d min" % minutes
    return "about %d h %02d min" % (minutes // 60, minutes % 60)


def _exchange(command, parts, expected, on_progress, should_cancel):
    """Start the core, send `parts`, and return its result (a "result" or "estimate")."""
    log_fd, log_path = _new_log()
    try:
        os.write(log_fd, ("%s bridge: starting %s\n" % (
            time.strftime("%Y-%m-%d %H:%M:%S"), command)).encode("utf-8", "replace"))
        proc = _popen(command, log_fd)
    except (IOError, OSError) as e:
        _log_note(log_path, "could not start the core: %s" % e)
        raise BridgeError("core_missing", "The neural style core (%s) could not be started: %s. "
                          "%s." % (command[0], getattr(e, "strerror", None) or e, REPAIR),
                          log_path)
    finally:
        os.close(log_fd)

    reader = _Reader(proc.stdout, expected)
    writer = _Writer(proc.stdin, parts)
    parts = None
    try:
        reader.start()
        writer.start()
        return _talk(proc, reader, writer, log_path, on_progress, should_cancel)
    finally:
        _stop(proc)
        writer.join(1.0)
        _close(proc.stdin)
        reader.join(1.0)
        _close(proc.stdout)
        _log_note(log_path, "core %s" % _exit_description(proc.returncode))


def _talk(proc, reader, writer, log_path, on_progress, should_cancel):
    result, error = None, None
    while True:
        if should_cancel is not None and should_cancel():
            _cancel(proc, writer, log_path)
            raise BridgeError("cancelled", "Cancelled.", log_path)
        try:
            item = reader.queue.get(timeout=0.05)
        except queue.Empty:
            continue
        if item[0] == "eof":
            break
        if item[0] == "garbage":
            _stop(proc)
            raise BridgeError("core_crashed", "The neural style core broke the protocol: %s. "
                              "%s." % (item[1], REPAIR), log_path)
        message, payload = item[1], item[2]
        kind = message.get("type")
        if kind == "progress":
            if on_progress is not None:
                fraction = float(_number(message.get("fraction")) or 0.0)
                on_progress(max(0.0, min(1.0, fraction)), progress_text(message))
        elif kind == "result":
            result = dict(width=message["width"], height=message["height"],
                          channels=message["channels"], format=message["format"],
                          data=payload)
        elif kind == "estimate":
            result = message
        elif kind == "error":
            error = message
    code = _wait(proc, EXIT_WAIT_S)
    if error is not None:
        text = error.get("message") or "the core failed without saying why"
        raise BridgeError(str(error.get("kind") or "internal"), _sentence(text), log_path)
    if result is not None and code == 0:
        return result
    tail = _log_tail(log_path)
    raise BridgeError("core_crashed", "The neural style core stopped unexpectedly: it %s%s."
                      % (_exit_description(code), (". Last log lines: " + tail) if tail else ""),
                      log_path)


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
