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

The parts, each in its own module beside this one: nst_process (the core as a process),
nst_protocol (the request and the checks of every reply), nst_logs, nst_wording (what the
plug-ins say) and nst_base (BridgeError, text).
"""
# Python 2.7 compatible on purpose: no f-strings, no `raise from`, IOError spelled out.
# ruff: noqa: UP003, UP010, UP024, UP025, UP031, B904

from __future__ import absolute_import, division, print_function

import os

try:
    import queue  # novm
except ImportError:  # Python 2
    import Queue as queue  # novm

from nst_base import REPAIR, TEXT_TYPES, BridgeError, brief, clamp, is_integer, monotonic, to_text
from nst_logs import log_note, log_tail, new_log, note_line
from nst_process import (
    ENV_COMMAND,
    EXIT_WAIT_S,
    Reader,
    Writer,
    cancel,
    check_executable,
    close_stream,
    exit_description,
    find_core_command,
    popen,
    ssh_host,
    stop_process,
    wait_exit,
)
from nst_protocol import (
    MAX_SIDE,
    PROTOCOL,
    SAMPLE_BYTES,
    auto_seconds,
    build_request,
    check_options,
    core_options,
    header_line,
    image_bytes,
    style_blend,
)
from nst_wording import plugin_wording, progress_text, quoted, sentence

PREVIEW_SIZE = 256  # the live preview's long side (the core takes 64..512)

# What the plug-ins use; style_blend checks a dialog's style weights before any work.
__all__ = ["BridgeError", "PREVIEW_SIZE", "estimate", "preview", "run", "style_blend"]


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
    check_options(options)
    content_info, content_data = image_bytes(content, "layer's pixel data")
    result_format = result_format or content_info["format"]
    if not (isinstance(result_format, TEXT_TYPES) and result_format in SAMPLE_BYTES):
        raise BridgeError("bad_request", "Unknown result format %s." % brief(result_format))
    mask_info, mask_data = None, b""
    if mask is not None:
        mask_info, mask_data = image_bytes(mask, "selection mask", channels=1)
        mask_info.pop("channels")
        if (mask_info["width"], mask_info["height"]) != (content_info["width"],
                                                         content_info["height"]):
            raise BridgeError("bad_request", "The selection mask's size differs from the layer's.")
    request, parts = build_request(options, content_info, content_data, style_paths)
    request.update(mask=mask_info, result={"format": result_format})
    if (options or {}).get("size_mode") == "auto":  # the core picks the size for the limit
        request["auto_seconds"] = auto_seconds(options)
    if mask_info:
        parts.append(mask_data)
    request["payload"] = sum(len(p) for p in parts)
    check_executable(command)
    expected = dict(content_info, format=result_format)
    return _exchange(command, [header_line(request)] + parts, "result", expected, on_progress,
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
    check_options(options)
    content_info, content_data = image_bytes(content, "layer's thumbnail")
    request, parts = build_request(options, content_info, content_data, style_paths)
    request.update(preview={"size": int(size)}, payload=sum(len(p) for p in parts))
    check_executable(command)
    result = _exchange(command, [header_line(request)] + parts, "preview", dict(size=int(size)),
                       on_progress, should_cancel, on_image)
    on_image(result["width"], result["height"], result["data"])
    return result


def estimate(options, width, height, config_dir=None, timeout=120.0):
    """How long runs on a width x height layer would take with the core's device and memory,
    from the core's record of its runs here (the first time, a measurement of a few seconds).
    Returns the core's answer: dict(device, table={preset: [[long side, seconds], ...]},
    auto_size={preset: long side} for the options' auto_minutes, auto_seconds, busy=None or why
    a run may take longer now). Raises BridgeError."""
    command = find_core_command(config_dir)
    check_executable(command)
    opts = core_options(options)
    limit = auto_seconds(options)
    if not (is_integer(width, 1, MAX_SIDE) and is_integer(height, 1, MAX_SIDE)):
        raise BridgeError("bad_request", "Cannot estimate a %sx%s layer." % (
            brief(width), brief(height)))
    message = {"type": "estimate", "protocol": PROTOCOL, "options": opts,
               "content": {"width": int(width), "height": int(height)},
               "auto_seconds": limit}
    deadline = monotonic() + timeout
    try:
        answer = _exchange(command, [header_line(message)], "estimate", None, None,
                           lambda: monotonic() > deadline)
    except BridgeError as e:
        if e.kind != "cancelled":
            raise
        raise BridgeError("core_crashed", "The neural style core gave no time estimate within "
                          "%.0f s." % timeout, e.log_path)
    answer.pop("type")
    return answer


def _exchange(command, parts, answer, expected, on_progress, should_cancel, on_image=None):
    """Start the core, send `parts`, and return its answer: a "result" (then `expected` is its
    dict(width, height, channels, format)), a "preview" (expected: dict(size); on_image gets
    each streamed picture) or an "estimate"."""
    log_fd, log_path = new_log()
    try:
        os.write(log_fd, note_line("starting %s" % (command,)))
        proc = popen(command, log_fd)
    except (IOError, OSError) as e:
        log_note(log_path, "could not start the core: %s" % e)
        raise BridgeError("core_missing", "The neural style core (%s) could not be started: %s. "
                          "%s." % (command[0], getattr(e, "strerror", None) or e, REPAIR),
                          log_path)
    finally:
        os.close(log_fd)

    reader = Reader(proc.stdout, answer, expected)
    writer = Writer(proc.stdin, parts)
    parts = None
    try:
        reader.start()
        writer.start()
        return _talk(proc, reader, writer, log_path, on_progress, should_cancel, on_image,
                     command)
    finally:
        stop_process(proc)
        writer.join(1.0)
        close_stream(proc.stdin)
        reader.join(1.0)
        close_stream(proc.stdout)
        log_note(log_path, "core %s" % exit_description(proc.returncode))


def _talk(proc, reader, writer, log_path, on_progress, should_cancel, on_image, command=None):
    answer, payload, deadline, fraction = None, None, None, 0.0
    while deadline is None or monotonic() < deadline:
        if should_cancel is not None and should_cancel():
            cancel(proc, writer, log_path)
            raise BridgeError("cancelled", "Cancelled.", log_path)
        try:
            item = reader.queue.get(timeout=0.05)
        except queue.Empty:
            continue
        if item[0] == "eof":
            break
        if item[0] == "broken":
            stop_process(proc)
            log_note(log_path, "protocol broken: %s" % item[1])
            raise BridgeError("core_crashed", "The neural style core broke the protocol: %s. "
                              "%s." % (item[1], REPAIR), log_path)
        message = item[1]
        if message["type"] == "progress":
            if on_progress is not None:  # a NaN fraction keeps the bar where it was
                fraction = clamp(message.get("fraction"), 0.0, 1.0, fraction)
                on_progress(fraction, progress_text(message))
        elif message["type"] == "image" and on_image is not None:
            on_image(message["width"], message["height"], item[2])
        elif message["type"] in ("result", "estimate", "error"):
            answer, payload = message, item[2]
            deadline = monotonic() + EXIT_WAIT_S  # to close its output; then it is stopped
    code = wait_exit(proc, EXIT_WAIT_S)
    if answer is not None and answer["type"] == "error":
        raise BridgeError(answer["kind"], sentence(plugin_wording(
            answer["message"], command, answer.get("field"))), log_path)
    if answer is not None and code == 0:
        if answer["type"] == "estimate":
            return answer
        return dict(width=answer["width"], height=answer["height"],
                    channels=answer["channels"], format=answer["format"], data=payload)
    tail = log_tail(log_path)
    host = ssh_host(command)
    if host is not None and code == 255 and answer is None:  # ssh's own failure, not the core's
        raise BridgeError("core_missing", u"The neural style core on %s could not be reached "
                          u"over ssh%s. Check the host and the key in %s (or nst-core.json): "
                          u"`%s` must work in a terminal without asking anything." % (
                              host, (": " + tail.rstrip(".")) if tail else "", ENV_COMMAND,
                              u" ".join(quoted(to_text(p)) for p in command)), log_path)
    raise BridgeError("core_crashed", "The neural style core %s %s%s." % (
        "answered, but then" if answer is not None else "gave no answer: it",
        exit_description(code), (". Last log lines: " + tail) if tail else ""), log_path)
