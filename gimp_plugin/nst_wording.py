"""What the plug-ins say: the progress bar's text, the dialog's time estimate and Automatic
size, and the core's messages in the dialog's words (its labels for option names, the installed
core's full command for `nst ...`)."""
# Python 2.7 compatible on purpose: no f-strings, no `raise from`, IOError spelled out.
# ruff: noqa: UP003, UP010, UP024, UP025, UP031, B904

from __future__ import absolute_import, division, print_function

import re

import nst_options
from nst_base import TEXT_TYPES, clamp, to_text, within
from nst_protocol import DEFAULTS, auto_seconds

MAX_ETA_S = 1e6  # an estimate of more than 11 days left is not shown


def format_eta(seconds):
    seconds = int(round(max(0, seconds)))
    return "%d:%02d" % (seconds // 60, seconds % 60)


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
    if within(scales, 2, 1000) and within(scale, 1, scales):
        parts.append("scale %d/%d" % (scale, scales))
    parts.append("%d%%" % int(100 * clamp(message.get("fraction"), 0.0, 1.0, 0.0)))
    eta = message.get("eta_s")
    if within(eta, 0, MAX_ETA_S):
        parts.append("about %s left" % format_eta(eta))
    return "Neural style: " + ", ".join(parts)


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
    if isinstance(answer, TEXT_TYPES):
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


# The core's advice names its command-line flags; a GIMP user has the dialog's fields instead.
_DIALOG_WORDS = (
    (u"Use --device cpu or auto", u"Choose Device: CPU or Automatic in the dialog"),
    (u"--device cpu", u"Device: CPU in the dialog"),
    (u"the --max-memory budget", u"the Memory limit"),
    (u"raise --max-memory", u"raise the Memory limit in the dialog"),
)


def plugin_wording(text, command=None, field=None):
    """The core's message in the dialog's words: its command-line advice and the option it is
    about (`field`, which the core names) become the dialog's fields, and `nst ...` the full
    command of the installed core (`command`, the core's own command line), which a GIMP user
    can paste into a terminal."""
    for flag, words in _DIALOG_WORDS:
        text = text.replace(flag, words)
    option = nst_options.BY_NAME.get(field)
    if option is not None and 3 in option.gimp:
        label = u"\"%s\"" % option.text
        text = re.sub(u"(?<![\\w-])(?:--%s|%s)(?![\\w-])" % (re.escape(option.arg),
                                                             re.escape(option.name)),
                      label.replace(u"\\", u"\\\\"), text, count=1)
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
    return u" ".join(quoted(to_text(p)) for p in parts)


def quoted(part):
    if part and not any(c in part for c in u" \t\"'$`\\;&|<>()*?"):
        return part
    return u"\"%s\"" % part.replace(u"\\", u"\\\\").replace(u"\"", u"\\\"")


def sentence(text):
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
