"""What every module of the plug-ins' bridge to the core shares: BridgeError (one readable
failure), text on Python 2 and 3, and checks of numbers and text that come from outside (the
core, a script). Python 2.7 AND 3, standard library only, like every gimp_plugin/ module."""
# Python 2.7 compatible on purpose: no f-strings, no `raise from`, IOError spelled out.
# ruff: noqa: UP003, UP010, UP024, UP025, UP031, B904

from __future__ import absolute_import, division, print_function

import numbers
import sys
import time
import unicodedata

monotonic = getattr(time, "monotonic", time.time)
PY2 = sys.version_info[0] == 2
TEXT_TYPES = (str, type(u""))
REPAIR = ("Run installer/install.py from the Neural Style for GIMP download again "
          "(`python3 installer/install.py`) to repair it")


class BridgeError(Exception):
    """One readable failure. kind: core_missing, core_crashed, cancelled, or a core error kind
    (bad_request, bad_option, bad_image, weights, device, too_large, internal). .message is text
    (unicode on Python 2) and ends with the log file's path when there is a log."""

    def __init__(self, kind, message, log_path=None):
        message = to_text(message)
        if log_path:  # on its own line: the path is what a bug report needs, whole
            message = u"%s\nLog: %s" % (message.rstrip(), to_text(log_path))
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.log_path = log_path

    def __str__(self):
        if PY2:  # Python 2: str() must be bytes
            return self.message.encode("utf-8")
        return self.message

    def __unicode__(self):
        return self.message


def to_text(value):
    """Python 2: bytes (paths in the file system's encoding) -> unicode, so that messages that
    mix a path and the core's (unicode) text can be joined. Python 3: unchanged."""
    if PY2 and isinstance(value, str):
        return value.decode(sys.getfilesystemencoding() or "utf-8", "replace")
    return value


def is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def within(value, low, high):
    """True for a number in [low, high]; never for NaN, Infinity or a non-number."""
    return is_real(value) and low <= value <= high


def is_integer(value, low, high):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) \
        and low <= value <= high


def clamp(value, low, high, default):
    """A finite number clamped to [low, high]; default for NaN, Infinity and non-numbers."""
    if not within(value, -1e300, 1e300):
        return default
    return float(min(high, max(low, value)))


def printable(text, limit=200):
    """The core's text, safe to show: control and format characters (escape sequences, NULs,
    direction overrides) become spaces; at most `limit` characters."""
    text = u"".join(u" " if unicodedata.category(c)[0] == "C" else c for c in text[:limit + 1])
    return text if len(text) <= limit else text[:limit - 3] + u"..."


def brief(value):
    """A value the core (or a script) sent, in a few readable characters."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, TEXT_TYPES):
        return u'"%s"' % printable(to_text(value), 40)
    return printable(to_text(str(value)), 40)


def reason_of(error):
    """An OSError's reason in words (its strerror), else the error itself."""
    return getattr(error, "strerror", None) or error
