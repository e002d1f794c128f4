"""The bridge's copy of the core's wire protocol (nst_core/protocol.py; GIMP's Python cannot
import it, and tests/test_bridge.py checks the copy): the request built from the plug-ins'
values, and every reply checked against what the protocol defines.

The policy for replies: the protocol's types are a contract. A message whose fields have the
wrong types or are missing (a string or a list where a number goes, a result that is not the one
asked for) means a broken core: one BridgeError, the core is stopped. Progress numbers are
measurements, which may be NaN, Infinity or absurd (Python's json reads NaN and Infinity): they
only feed the progress bar and text, so they are clamped or left out there, never an error.
Messages of an unknown type are ignored (a newer core may say more)."""
# Python 2.7 compatible on purpose: no f-strings, no `raise from`, IOError spelled out.
# ruff: noqa: UP003, UP010, UP024, UP025, UP031, B904

from __future__ import absolute_import, division, print_function

import json
import os
import stat

import nst_options
from nst_base import (
    TEXT_TYPES,
    BridgeError,
    brief,
    is_integer,
    is_real,
    printable,
    reason_of,
    to_text,
    within,
)

# The options sent to the core, with the plug-ins' defaults.
DEFAULTS = dict((o.name, o.default) for o in nst_options.OPTIONS if o.core)


# The plug-ins' own arguments that are not core options (the styles, their weights, the time
# limit for Automatic): run() sends them its own way.
NOT_OPTIONS = tuple(o.name for o in nst_options.OPTIONS if not o.core)
PROTOCOL = 1
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}


# The core's error kinds (nst_core/errors.py); an unknown one from a newer core reads as internal.
CORE_KINDS = ("bad_request", "bad_option", "bad_image", "weights", "device", "too_large",
              "cancelled", "internal")
PROGRESS_FIELDS = ("phase", "scale", "scales", "iteration", "iterations", "step", "steps",
                   "fraction", "loss", "eta_s", "elapsed_s")
MAX_HEADER = 1 << 20  # nst_core/protocol.py's limits, repeated: GIMP's Python cannot import it
MAX_STYLE_BYTES = 256 << 20
MAX_SIDE = 32768
MAX_CORE_TEXT = 1000  # characters of the core's own error text shown to the user


def core_options(options):
    """Plug-in values -> the core's options, converted by each option's kind. size_mode "auto"
    and "layer" send no size: the layer's own ("auto" lets run() ask the core to fit it). An
    option whose 0 means something (the layer's own size, an automatic memory limit) sends
    None for it, and a value between 0 and its smallest is refused here. Names the plug-ins do
    not know are passed through for the core to check."""
    values = dict(DEFAULTS, size_mode="custom")  # a script that gives only a size gets it
    values.update(options or {})
    if "preserve_colors" in values:  # the earlier option, still taken from scripts: the core
        values["preserve_colors"] = bool(values["preserve_colors"])  # knows it (a toggle: 0/1)
    if values["size_mode"] != "custom":
        values["size"] = 0
    out = {}
    for name, value in values.items():
        if name == "size_mode" or name in NOT_OPTIONS:
            continue
        option = nst_options.BY_NAME.get(name)
        kind = option.kind if option is not None else None
        try:
            if option is not None and option.zero is not None and not value:
                out[name] = None
            elif kind in _CONVERT:
                out[name] = _CONVERT[kind](value)
            else:
                out[name] = value
        except (TypeError, ValueError, OverflowError):  # the core checks ranges; types here
            raise BridgeError("bad_option", "The option %s=%s is not a %s." % (
                name, brief(value), "word" if kind == "choice" else "number"))
        if option is not None and option.zero is not None and out[name] is not None \
                and out[name] < option.least:
            raise BridgeError("bad_option", u"\"%s\" must be 0 (%s) or at least %g, not %g."
                              % (option.text, option.zero, option.least, out[name]))
    return out
_CONVERT = {"int": int, "float": float, "choice": str}


def auto_seconds(options):
    """The time limit for size_mode "auto", in seconds, from the option auto_minutes."""
    option = nst_options.BY_NAME["auto_minutes"]
    minutes = (options or {}).get("auto_minutes", option.default)
    if not within(minutes, option.low, option.high):
        raise BridgeError("bad_option", "The time limit for Automatic must be %g to %g "
                          "minutes, not %s." % (option.low, option.high, brief(minutes)))
    return 60.0 * minutes


def style_blend(weights, count):
    """The core's style_blend for `count` styles from the plug-ins' style weights: text such as
    "2, 1" (commas or spaces) or a list of numbers; None when none are given (all the same)."""
    if isinstance(weights, TEXT_TYPES):
        weights = weights.replace(",", " ").replace(";", " ").split()
    if not weights:
        return None
    shown = ", ".join(to_text(w) if isinstance(w, TEXT_TYPES) else repr(w) for w in weights)
    try:
        blend = [float(w) for w in weights]
    except (TypeError, ValueError, OverflowError):
        blend = None
    if blend is None or not all(0 <= w < float("inf") for w in blend):
        raise BridgeError("bad_option", u"The style weights \"%s\" are not all numbers of 0 or "
                          u"more: give one per style, e.g. \"2, 1\"." % printable(shown, 80))
    if len(blend) != count:
        raise BridgeError("bad_option", u"The style weights \"%s\" are %d weight(s) for %d "
                          u"style(s): give one per style, in order (style image, 2, 3, then the "
                          u"open layer), or none for all the same."
                          % (printable(shown, 80), len(blend), count))
    if not sum(blend) > 0:
        raise BridgeError("bad_option", "The style weights are all zero: give at least one style "
                          "a weight above 0.")
    return blend


def image_bytes(image, what, channels=None):
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
    if not (isinstance(fmt, TEXT_TYPES) and fmt in SAMPLE_BYTES and 1 <= channels <= 4
            and 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise BridgeError("bad_request", "The %s has an unsupported size or format (%dx%d, %d "
                          "channel(s), %s)." % (what, width, height, channels, brief(fmt)))
    expected = width * height * channels * SAMPLE_BYTES[fmt]
    if size != expected:
        raise BridgeError("bad_request", "The %s holds %d bytes; %dx%d, %d channel(s) of %s need "
                          "%d." % (what, size, width, height, channels, fmt, expected))
    return dict(width=width, height=height, channels=channels, format=fmt), data


def read_styles(style_paths):
    """The request's "styles" entries and their bytes. A style is a file's path (its bytes are
    sent) or pixels like the content's, dict(width, height, channels, format, data, name)."""
    if isinstance(style_paths, TEXT_TYPES) or isinstance(style_paths, dict):
        style_paths = [style_paths]
    style_paths = [p for p in (style_paths or []) if p]
    if not style_paths:
        raise BridgeError("bad_image", "Choose a style image (a painting or a photo whose look "
                                       "the layer should take).")
    styles, blobs = [], []
    for style in style_paths:
        if isinstance(style, dict):
            entry, data = image_bytes(style, "style layer's pixel data")
            name = style.get("name") or u"style layer"
        else:
            data = _read_style(style)
            entry, name = {"size": len(data)}, os.path.basename(style)
        # The name only labels the core's messages: text that any JSON reader can take.
        entry["name"] = to_text(name).encode("utf-8", "replace").decode("utf-8")
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
        raise _style_error(path, "cannot be read: %s" % reason_of(e))
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
        raise _style_error(path, "cannot be read: %s" % reason_of(e))
    finally:
        os.close(fd)
    if not size:
        raise _style_error(path, "is empty")
    return b"".join(chunks)


def _style_error(path, problem):
    return BridgeError("bad_image", "The style image %s %s." % (to_text(path), problem))



def header_line(message):
    try:
        text = json.dumps(message, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as e:  # a script's own option that JSON cannot carry
        raise BridgeError("bad_option", "The options cannot be sent to the core (%s)." % e)
    return text.encode("ascii") + b"\n"


def check_options(options):
    if options is not None and not isinstance(options, dict):
        raise BridgeError("bad_option", "The options must be a dict of plug-in values, not %s."
                          % brief(options))


def build_request(options, content_info, content_data, style_paths):
    """The request's header fields and payload parts common to runs and previews."""
    styles, style_data = read_styles(style_paths)
    opts = core_options(options)
    blend = style_blend((options or {}).get("style_weights"), len(styles))
    if blend is not None:
        opts["style_blend"] = blend
    request = {"type": "request", "protocol": PROTOCOL, "options": opts,
               "content": content_info, "styles": styles}
    return request, [content_data] + style_data


class Broken(Exception):
    """The core broke the protocol; args[0] says how, for the user."""


def check_reply(message, answer, expected):
    """The core's `message` (a dict with a text "type") as the protocol defines it; raises
    Broken saying how it is not. answer: the kind of answer this exchange waits for, "result"
    (then `expected` is dict(width, height, channels, format)) or "estimate"."""
    kind = message["type"]
    if kind == answer == "result":
        return _check_result(message, expected)
    if answer == "preview" and kind in ("image", "result"):
        return _check_picture(message, expected["size"])
    if "payload" in message and not is_integer(message["payload"], 0, 0):
        raise Broken("its %s message carries an unexpected payload" % brief(kind))
    if kind in ("result", "estimate") and kind != answer:
        raise Broken("it sent a %s where a %s was due" % (kind, answer))
    if kind == "progress":
        for name in PROGRESS_FIELDS:
            value = message.get(name)
            if value is not None and not (isinstance(value, TEXT_TYPES) if name == "phase"
                                          else is_real(value)):
                raise Broken("its progress message's %s is %s" % (name, brief(value)))
    elif kind == "error":
        text = message.get("message")
        if not isinstance(message.get("kind"), TEXT_TYPES) or not isinstance(text, TEXT_TYPES):
            raise Broken('its error message lacks a text "kind" or "message"')
        kind = message["kind"] if message["kind"] in CORE_KINDS else "internal"
        text = printable(text, MAX_CORE_TEXT).strip() or "the core failed without saying why"
        field = message.get("field")
        return dict(type="error", kind=kind, message=text,
                    field=field if field in nst_options.BY_NAME else None)
    elif kind == "estimate":
        return _check_estimate(message)
    return message


def _check_result(message, expected):
    names = ("width", "height", "channels", "format")
    got = [message.get(k) for k in names]
    size = message.get("payload")
    want = (expected["width"] * expected["height"] * expected["channels"]
            * SAMPLE_BYTES[expected["format"]])
    typed = all(is_integer(v, 1, MAX_SIDE) for v in got[:3]) and isinstance(got[3], TEXT_TYPES) \
        and is_integer(size, want, want)
    if not typed or got != [expected[k] for k in names]:
        raise Broken("its result is not the image asked for (%s instead of %dx%d, %d channel(s), "
                      "%s, %d bytes)" % (", ".join("%s %s" % (k, brief(v)) for k, v in zip(
                          names + ("payload",), got + [size])), expected["width"],
                          expected["height"], expected["channels"], expected["format"], want))
    return message


def _check_picture(message, limit):
    """A preview's picture (each "image" and its "result"): RGB u8, at most `limit` px a side."""
    w, h = message.get("width"), message.get("height")
    if not (is_integer(w, 1, limit) and is_integer(h, 1, limit) and message.get("channels") == 3
            and message.get("format") == "u8"
            and is_integer(message.get("payload"), w * h * 3, w * h * 3)):
        raise Broken("its preview picture is not RGB u8 of at most %d px a side" % limit)
    return message


def _check_estimate(message):
    """The estimate's fields as the plug-ins use them (estimated_seconds takes logarithms)."""
    device, table = message.get("device"), message.get("table")
    auto, limit = message.get("auto_size"), message.get("auto_seconds")
    busy = message.get("busy")  # why a run may take longer now (a newer core's field)

    def row_ok(row):
        return isinstance(row, list) and len(row) == 2 and within(row[0], 1, MAX_SIDE) \
            and within(row[1], 0, 1e9)

    if not (isinstance(device, TEXT_TYPES) and isinstance(table, dict) and isinstance(auto, dict)
            and all(isinstance(rows, list) and all(row_ok(r) for r in rows)
                    for rows in table.values())
            and all(is_integer(size, 1, MAX_SIDE) for size in auto.values())
            and within(limit, 0, 1e9)):
        raise Broken("its time estimate is not the table the protocol defines")
    return dict(type="estimate", device=printable(device, 100), table=table, auto_size=auto,
                auto_seconds=limit,
                busy=printable(busy, 200) if isinstance(busy, TEXT_TYPES) and busy else None)
