"""The core worker: serves ONE request from a GIMP plug-in over stdin/stdout (see protocol.py).

    python -m nst_core.worker          (also `nst worker`)

stdin carries the request (and later, optionally, {"type": "cancel"}); stdout carries progress
messages (and a preview's images) and then exactly one result or one error; stderr is the log.
The worker stops by itself within a second when it is cancelled, when its stdin closes or when
its parent process dies, whatever its stdout is doing, so a plug-in that GIMP kills never leaves
a busy core behind.

The request is parsed and checked in protocol.py, the pixels converted in pixels.py; this module
is the session: output, stop requests and the watchers.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import threading
import time
from typing import NoReturn

import numpy as np

from . import logs, pixels, protocol, weights
from .device import check_present
from .errors import Cancelled, NSTError, ProtocolError, TooLargeError

log = logging.getLogger("nst_core.worker")

GRACE_S = 0.7  # after a stop request the engine gets this long, then the process exits hard
# (with the 0.2 s the watchdog may wait to send its message, the core is gone within a second)
PARENT_POLL_S = 0.2
PROGRESS_INTERVAL_S = 0.1  # at most ~10 progress messages a second (plus every phase/scale change)
IMAGE_INTERVAL_S = 0.33  # a preview's images: at most ~3 a second (plus one after each scale)
IMAGE_EVERY = 5  # a full run's images ("images"): looked at every this many iterations
STOP_REASONS = {
    "cancel": "the plug-in asked the core to stop",
    "stdin": "the plug-in closed its connection to the core",
    "parent": "the plug-in (the core's parent process) has gone",
    "interrupt": "the core was interrupted",
    "garbage": "the plug-in sent something that is not a protocol message",
    "output": "the plug-in stopped reading the core's output",
}


# -- the estimate --------------------------------------------------------------------------------


def answer_estimate(request: protocol.EstimateRequest) -> dict:
    """Estimated run times on this machine for a dialog: a table per preset (long side ->
    seconds), the automatic size for the time limit, and the device they were measured on."""
    from .estimate import for_dialog

    return {"type": "estimate", **for_dialog(request.options, request.width, request.height,
                                             request.styles, request.auto_seconds),
            "auto_seconds": request.auto_seconds}


# -- the session: output, stop requests, watchers ------------------------------------------------


class FdReader:
    """Lines and bytes from a file descriptor through os.read only: a daemon thread may block
    in it at interpreter exit without the 'could not acquire lock for stdin' fatal error."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = bytearray()

    def _fill(self) -> bool:
        chunk = os.read(self.fd, 1 << 16)
        self.buf += chunk
        return bool(chunk)

    def readline(self, limit: int = -1) -> bytes:
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0 and (limit < 0 or i < limit):
                end = i + 1
                break
            if limit >= 0 and len(self.buf) >= limit:
                end = limit
                break
            start = len(self.buf)
            if not self._fill():
                end = len(self.buf)
                break
        line = bytes(self.buf[:end])
        del self.buf[:end]
        return line

    def read(self, n: int) -> bytes:
        if self.buf:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        return os.read(self.fd, min(n, 1 << 20))


class FdWriter:
    def __init__(self, fd: int):
        self.fd = fd

    def write(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(self.fd, view[:1 << 20]):]

    def flush(self) -> None:
        pass


class Session:
    """Owns stdout and the stop flag. Exactly one final message (result or error) is sent.

    Two locks: `state` guards the flags and is only ever held briefly; `out` is held while
    writing, which blocks when the plug-in is not reading. A stop request needs only `state`,
    so cancel, the end of stdin and the parent's death work whatever stdout is doing."""

    def __init__(self, writer):
        self.writer = writer
        self.state = threading.Lock()
        self.out = threading.Lock()
        self.stop = threading.Event()  # passed to the engine as should_stop
        self.done = threading.Event()  # the main thread has finished
        self.stop_reason: str | None = None
        self.final_sent = False
        self.output_broken = False
        self.last_progress: dict = {k: None for k in protocol.PROGRESS_FIELDS}
        self.last_progress_sent = 0.0

    # output

    def _write(self, message: dict, payload: bytes | None = None) -> bool:
        with self.out:
            try:
                protocol.write_message(self.writer, message, payload)
                return True
            except OSError as e:  # the plug-in has gone: nobody to tell
                log.warning("could not send %s message: %s", message.get("type"), e)
                self.output_broken = True
                return False

    def _stream(self, message: dict, payload: bytes | None = None) -> None:
        """Send a message that comes before the final one (progress, image), if still wanted."""
        with self.state:
            if self.final_sent or self.stop.is_set():
                return
        self._write(message, payload)
        if self.output_broken:
            self.request_stop("output")

    def progress(self, force: bool = False, **fields) -> None:
        p = dict(self.last_progress)
        p.update(fields)
        previous = self.last_progress
        # The whole job's fraction never goes back, whatever the engine reports.
        p["fraction"] = min(1.0, max(previous["fraction"] or 0.0, float(p["fraction"] or 0.0)))
        self.last_progress = p
        now = time.monotonic()
        if not force and p["phase"] == previous["phase"] and p["scale"] == previous["scale"] \
                and now - self.last_progress_sent < PROGRESS_INTERVAL_S:
            return
        self.last_progress_sent = now
        self._stream({"type": "progress", **p})

    def send_image(self, rgb: np.ndarray, step: int, steps: int) -> None:
        """A preview's image being painted (HxWx3 float in 0..1), sent as RGB u8."""
        h, w = rgb.shape[:2]
        self._stream({"type": "image", "width": w, "height": h, "channels": 3, "format": "u8",
                      "step": step, "steps": steps}, pixels.encode(rgb, "u8").tobytes())

    def _final(self, message: dict, payload: bytes | None = None) -> bool:
        """Send the one final message unless one was sent or a stop was requested."""
        with self.state:
            if self.final_sent or self.stop.is_set():
                return False
            self.final_sent = True
        return self._write(message, payload)

    def send_result(self, message: dict, payload: bytes) -> bool:
        """Send the result unless a stop was requested (then the caller reports cancelled)."""
        return self._final(message, payload)

    def send_error(self, kind: str, message: str, field: str | None = None) -> None:
        with self.state:
            if self.final_sent:
                return
            self.final_sent = True
        self._write({"type": "error", "kind": kind, "message": message, "field": field})

    # stopping

    def cancelled(self) -> Cancelled:
        reason = STOP_REASONS.get(self.stop_reason or "cancel", self.stop_reason)
        return Cancelled(f"Cancelled: {reason}.")

    def request_stop(self, reason: str) -> None:
        with self.state:
            if self.stop.is_set() or self.done.is_set():
                return
            self.stop_reason = reason
            self.stop.set()
        log.warning("stop requested: %s", STOP_REASONS.get(reason, reason))
        threading.Thread(target=self._watchdog, name="nst-watchdog", daemon=True).start()

    def _watchdog(self) -> None:
        if self.done.wait(GRACE_S):
            return
        log.error("the core did not stop within %.1f s; exiting now", GRACE_S)
        # Tell the plug-in why, unless stdout is blocked or the answer is already on its way.
        if self.out.acquire(timeout=0.2):  # never released: the process ends here
            with self.state:
                send, self.final_sent = not self.final_sent, True
            if send:
                try:
                    protocol.write_message(self.writer, {"type": "error", "kind": Cancelled.kind,
                                                         "message": self.cancelled().message})
                except OSError:
                    pass
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(Cancelled.exit_code)

    def watch_input(self, reader) -> None:
        """After the request: a cancel message or the end of stdin stops the run."""
        threading.Thread(target=self._watch_input, args=(reader,), name="nst-stdin",
                         daemon=True).start()

    def _watch_input(self, reader) -> None:
        try:
            while not self.done.is_set():
                message = protocol.read_header(reader)
                if message is None:
                    self.request_stop("stdin")
                    return
                if message["type"] == "cancel":
                    self.request_stop("cancel")
                    return
                log.warning("ignoring unexpected %r message", message["type"])
                protocol.read_payload(reader, message, max_payload=protocol.MAX_HEADER)
        except ProtocolError as e:
            log.error("bad message after the request: %s", e.message)
            self.request_stop("garbage")
        except OSError as e:
            log.error("reading stdin failed: %s", e)
            self.request_stop("stdin")

    def watch_parent(self) -> None:
        """POSIX: the parent's death re-parents us (getppid changes). On Windows the end of
        stdin (the pipe closes with the parent) does this job."""
        if os.name != "posix":
            return
        parent = os.getppid()
        threading.Thread(target=self._watch_parent, args=(parent,), name="nst-parent",
                         daemon=True).start()

    def _watch_parent(self, parent: int) -> None:
        while not self.done.wait(PARENT_POLL_S):
            if os.getppid() != parent:
                self.request_stop("parent")
                return


# -- serving -------------------------------------------------------------------------------------


# A preview's iterations over its scales (about 128, 181 and 256 px), shared out as the preset
# shares a run's: the preset's own (30 + 37 + 45 for standard) took ~25 s on 2 CPU cores.
PREVIEW_ITERATIONS = 40


def preview_options(options, size: int):
    """A preview's options: the same settings at this long side, so the preview is what the run
    paints first: the same objective, start and preset, the preset's scales up to `size` (from
    its smallest, about 128 px, whose finished picture is the preview's first), with at most
    PREVIEW_ITERATIONS iterations so that it is there in seconds."""
    return options.replace(size=size, iterations=min(options.iterations or PREVIEW_ITERATIONS,
                                                     PREVIEW_ITERATIONS))


def decode_styles(request: protocol.Request) -> list:
    """The style images as RGB float arrays, no larger than the run needs."""
    from .images import MIN_SIDE, fit_size, load_image, resize_array, to_array

    side = request.options.style_side(max(request.width, request.height))
    styles = []
    for style, data in zip(request.styles, request.style_data):
        if not style.is_pixels:
            styles.append(to_array(load_image(data, what="style image", name=style.name,
                                              max_side=side)))
            continue
        rgb = pixels.style_rgb(style, data)
        # As load_image does for files: keep twice what the run needs (short side 2 x MIN_SIDE).
        h, w = rgb.shape[:2]
        keep = max(2 * side, round(2 * MIN_SIDE * max(w, h) / min(w, h)))
        styles.append(rgb if keep >= max(w, h) else resize_array(rgb, fit_size(w, h, keep)))
    request.style_data = []
    return styles


class ImageStream:
    """A preview's (or a full run's "images") on_image: sends the image being painted at its
    size, as the result will look, after each scale and at most every IMAGE_INTERVAL_S between
    (the result follows the last step, so that one is not sent). With `from_first_scale` (a
    preview) nothing is sent before the first scale has finished: the first picture is a
    painting, not the photo after a step or two, and comes before the next scale starts."""

    def __init__(self, session: Session, size: tuple[int, int], from_first_scale: bool = False):
        self.session, self.size, self.last_sent = session, size, -np.inf
        self.waiting = from_first_scale

    def __call__(self, rgb: np.ndarray, step: int) -> None:
        from .images import resize_array

        p = self.session.last_progress
        scale_done = p["iteration"] == p["iterations"]
        now = time.monotonic()
        if self.waiting and not scale_done:
            return
        self.waiting = False
        if step >= p["steps"] or not scale_done and now - self.last_sent < IMAGE_INTERVAL_S:
            return
        self.last_sent = now
        rgb = resize_array(rgb, self.size)  # in the result's colours already (stylize)
        self.session.send_image(rgb, step, p["steps"])


def run_job(request: protocol.Request, session: Session) -> tuple[dict, bytes]:
    """Stylise; returns the result message and samples. Raises Cancelled when a stop was
    requested."""
    session.progress(force=True, phase="loading", fraction=0.0, elapsed_s=0.0)
    t0 = time.monotonic()
    from .images import fit_size, resize_array

    if request.preview:
        request.options = preview_options(request.options, request.preview)
    # What needs no network is checked before torch loads (seconds, more on a busy machine):
    # a corrupt style, an absent device or missing weights come back at once.
    # Styles are decoded no larger than the run needs (automatic sizes stay within the layer).
    styles = decode_styles(request)
    check_present(request.options.device)
    weights.check_installed(request.options.model)
    from .engine import stylize  # torch loads here, after the request is known to be good

    rgb, alpha = pixels.split_content(request)
    size = (request.width, request.height)  # of the result
    if request.preview:
        size = fit_size(request.width, request.height, request.preview)
        if max(request.width, request.height) > request.preview:
            rgb = resize_array(rgb, size)  # the preview needs no more
    if request.auto_seconds is not None and request.options.size is None:
        from .estimate import largest_within

        long_side = largest_within(request.options, request.width, request.height,
                                   request.auto_seconds, [s.shape[1::-1] for s in styles])
        log.info("automatic size: %d px (long side) for a run of at most %.0f s", long_side,
                 request.auto_seconds)
        request.options = request.options.replace(size=long_side)
    log.info("imported the engine and decoded the images in %.2f s; device option %r",
             time.monotonic() - t0, request.options.device)
    if session.stop.is_set():
        raise session.cancelled()

    def on_progress(p) -> None:
        session.progress(**dataclasses.asdict(p))

    stream, every = None, 0
    if request.preview:
        stream = ImageStream(session, size, from_first_scale=True)
        every = 1
    elif request.images:  # a full run's images: every few steps (each costs a copy at full size)
        shown = fit_size(*size, min(request.images, max(size)))
        stream = ImageStream(session, shown)
        every = IMAGE_EVERY
    t1 = time.monotonic()
    out = stylize(rgb, styles, request.options, progress=on_progress,
                  should_stop=session.stop.is_set, on_image=stream, image_every=every)
    log.info("engine finished in %.2f s", time.monotonic() - t1)
    if session.stop.is_set():
        raise session.cancelled()
    out = np.asarray(out, dtype=np.float32)
    if out.ndim != 3 or out.shape[2] != 3:
        raise RuntimeError(f"the engine returned an array of shape {out.shape}, not HxWx3")
    if out.shape[1::-1] != size:
        log.info("resizing the engine's %dx%d result to %dx%d", out.shape[1], out.shape[0],
                 *size)
    out = resize_array(out, size)  # in float: no 8-bit step
    if request.preview:
        message = {"type": "result", "width": size[0], "height": size[1], "channels": 3,
                   "format": "u8"}
        data = pixels.encode(out, "u8").tobytes()
    else:
        message = {"type": "result", "width": request.width, "height": request.height,
                   "channels": request.channels, "format": request.result_format}
        data = pixels.assemble(request, out, rgb, alpha)
    if session.last_progress["phase"] != "finishing":
        session.progress(force=True, phase="finishing", fraction=1.0, eta_s=0.0,
                         elapsed_s=time.monotonic() - t0)
    return message, data


def serve(reader, writer) -> int:
    """Serve one request; returns the process exit code."""
    session = Session(writer)
    session.watch_parent()
    try:
        return _serve(reader, session)
    finally:
        session.done.set()


def _serve(reader, session: Session) -> int:
    t0 = time.monotonic()
    try:
        request = protocol.read_request(reader)
        if isinstance(request, protocol.EstimateRequest):  # answered at once, no pixels
            session._final(answer_estimate(request))
            return 0
        session.watch_input(reader)
        message, data = run_job(request, session)
        if not session.send_result(message, data):
            if session.stop.is_set():
                raise session.cancelled()
            return 1  # stdout is gone: already logged
        log.info("sent the result (%d bytes); total %.2f s", len(data), time.monotonic() - t0)
        return 0
    except KeyboardInterrupt:
        session.stop_reason = session.stop_reason or "interrupt"
        error: NSTError = session.cancelled()
    except NSTError as e:
        error = e
    except MemoryError:
        log.exception("out of memory")
        error = TooLargeError("the core ran out of memory: choose a smaller size or a lower "
                              "quality preset")
    except Exception as e:  # noqa: BLE001 - one readable error message, whatever happened
        if session.stop.is_set():
            log.exception("the engine failed while stopping")
            error = session.cancelled()
        else:
            log.exception("internal error")
            error = NSTError(f"internal error in the core: {type(e).__name__}: {e}")
    if session.stop.is_set() and not isinstance(error, Cancelled):
        log.info("(%s: %s) after a stop request", error.kind, error.message)
        error = session.cancelled()
    log.error("%s: %s", error.kind, error.message)
    session.send_error(error.kind, error.message, getattr(error, "field", None))
    return error.exit_code


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="nst worker",
        description="Serve one stylisation request from a GIMP plug-in on stdin/stdout "
                    "(the wire format is in nst_core/protocol.py); stderr is the log.")
    parser.add_argument("--log-level", choices=logs.LEVELS, type=str.upper,
                        help="default: $NST_LOG_LEVEL, else INFO")
    args = parser.parse_args(argv)
    env_level, warning = logs.env_level("INFO")

    # The protocol owns the real stdout; anything printed (by us, torch or C code) goes to the log.
    sys.stdout.flush()
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        msvcrt.setmode(0, os.O_BINARY)
        msvcrt.setmode(1, os.O_BINARY)
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _setup_logging(args.log_level or env_level)
    if warning and not args.log_level:
        log.warning("%s", warning)
    from . import __version__

    log.info("nst_core %s worker, Python %s, pid %d", __version__, sys.version.split()[0],
             os.getpid())
    try:
        code = serve(FdReader(0), FdWriter(out_fd))
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
    # One request per process: skip the interpreter's teardown (torch's threads took ~2 s),
    # which the plug-in would otherwise wait for before it can add the layer.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
