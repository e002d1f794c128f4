"""The core worker: serves ONE request from a GIMP plug-in over stdin/stdout (see protocol.py).

    python -m nst_core.worker          (also `nst worker`)

stdin carries the request (and later, optionally, {"type": "cancel"}); stdout carries progress
messages and then exactly one result or one error; stderr is the log. The worker stops by itself
within a second when it is cancelled, when its stdin closes or when its parent process dies, so
a plug-in that GIMP kills never leaves a busy core behind.

Pixels: the layer's own sample format (u8, u16, f32; 1-4 channels, alpha last) is converted to
float32 without passing through 8 bits; f32 samples are clamped to 0..1 for the engine. Grey
layers are stylised as RGB and returned as luminance. Alpha passes through unchanged, multiplied
by the selection mask when there is one; a layer without alpha is blended with its original
pixels by the mask instead (it has no transparency to give).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from . import protocol
from .errors import Cancelled, NSTError, ProtocolError, TooLargeError
from .options import Options

log = logging.getLogger("nst_core.worker")

GRACE_S = 1.0  # after a stop request the engine gets this long, then the process exits hard
PARENT_POLL_S = 0.2
PROGRESS_INTERVAL_S = 0.1  # at most ~10 progress messages a second (plus every phase/scale change)
DTYPES = {"u8": np.dtype("<u1"), "u16": np.dtype("<u2"), "f32": np.dtype("<f4")}
FULL_SCALE = {"u8": 255.0, "u16": 65535.0, "f32": 1.0}
LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # Rec. 709, as GIMP's luminance
PROGRESS_FIELDS = ("phase", "scale", "scales", "iteration", "iterations", "step", "steps",
                   "fraction", "loss", "eta_s", "elapsed_s")
STOP_REASONS = {
    "cancel": "the plug-in asked the core to stop",
    "stdin": "the plug-in closed its connection to the core",
    "parent": "the plug-in (the core's parent process) has gone",
    "interrupt": "the core was interrupted",
    "garbage": "the plug-in sent something that is not a protocol message",
    "output": "the plug-in stopped reading the core's output",
}


# -- the request ---------------------------------------------------------------------------------


@dataclass
class Job:
    options: Options
    width: int
    height: int
    channels: int
    format: str
    result_format: str
    styles: list  # [(name, size)]
    mask_format: str | None
    auto_seconds: float | None = None  # size None: the largest size that takes at most this
    content: bytes = b""
    style_data: list = field(default_factory=list)
    mask: bytes | None = None

    @property
    def content_bytes(self) -> int:
        return self.width * self.height * self.channels * protocol.SAMPLE_BYTES[self.format]

    @property
    def mask_bytes(self) -> int:
        if self.mask_format is None:
            return 0
        return self.width * self.height * protocol.SAMPLE_BYTES[self.mask_format]

    def summary(self) -> str:
        kind = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}[self.channels]
        styles = ", ".join(f"{name} ({size} bytes)" for name, size in self.styles)
        defaults = Options()
        changed = {k: v for k, v in self.options.to_dict().items()
                   if v != getattr(defaults, k)}
        return (f"{self.width}x{self.height} {kind} {self.format} -> {self.result_format}; "
                f"style(s): {styles}; mask: {self.mask_format or 'none'}; "
                f"options (non-default): {changed or 'none'}")


def _get(d: dict, key: str, where: str):
    if key not in d:
        raise ProtocolError(f'{where} lacks "{key}"')
    return d[key]


def _int(d: dict, key: str, where: str, lo: int, hi: int) -> int:
    v = _get(d, key, where)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ProtocolError(f'{where} "{key}" must be a whole number from {lo} to {hi}, '
                            f"not {v!r}")
    return v


def _format(d: dict, where: str) -> str:
    v = _get(d, "format", where)
    if v not in protocol.SAMPLE_BYTES:
        raise ProtocolError(f'{where} "format" must be one of '
                            f"{', '.join(protocol.SAMPLE_BYTES)}, not {v!r}")
    return v


def _dict(d: dict, key: str, where: str) -> dict:
    v = _get(d, key, where)
    if not isinstance(v, dict):
        raise ProtocolError(f'{where} "{key}" must be a JSON object')
    return v


def parse_request(header: dict) -> Job:
    """Check a request header completely (everything but the payload's contents) and say what is
    wrong in one sentence. Nothing large is allocated here."""
    if header.get("type") != "request":
        raise ProtocolError(f'expected a "request" message, got {header.get("type")!r}')
    version = header.get("protocol")
    if version != protocol.VERSION:
        raise ProtocolError(
            f"this core speaks protocol version {protocol.VERSION}, the plug-in sent version "
            f"{version!r}: install the plug-in and the core from the same release")
    content = _dict(header, "content", "the request")
    width = _int(content, "width", "content", 1, protocol.MAX_SIDE)
    height = _int(content, "height", "content", 1, protocol.MAX_SIDE)
    channels = _int(content, "channels", "content", 1, 4)
    fmt = _format(content, "content")

    result = header.get("result") or {}
    if not isinstance(result, dict):
        raise ProtocolError('the request\'s "result" must be a JSON object')
    result_format = _format(result, "result") if "format" in result else fmt

    styles = _get(header, "styles", "the request")
    if not isinstance(styles, list) or not styles:
        raise ProtocolError("the request needs at least one style image")
    parsed_styles = []
    for i, s in enumerate(styles, 1):
        if not isinstance(s, dict):
            raise ProtocolError(f"style {i} must be a JSON object")
        name = s.get("name", f"style {i}")
        if not isinstance(name, str):
            raise ProtocolError(f'style {i} "name" must be a string')
        size = _get(s, "size", f"style {i}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ProtocolError(f"style image {name!r} is empty or has no valid size")
        if size > protocol.MAX_STYLE_BYTES:
            raise ProtocolError(f"style image {name!r} is {size} bytes, over the limit of "
                                f"{protocol.MAX_STYLE_BYTES} bytes")
        parsed_styles.append((name, size))

    mask = header.get("mask")
    mask_format = None
    if mask is not None:
        if not isinstance(mask, dict):
            raise ProtocolError('the request\'s "mask" must be null or a JSON object')
        mw = _int(mask, "width", "mask", 1, protocol.MAX_SIDE)
        mh = _int(mask, "height", "mask", 1, protocol.MAX_SIDE)
        if (mw, mh) != (width, height):
            raise ProtocolError(f"the mask is {mw}x{mh} but the content is {width}x{height}")
        if mask.get("channels", 1) != 1:
            raise ProtocolError("the mask must have exactly one channel")
        mask_format = _format(mask, "mask")

    options = header.get("options", {})
    if not isinstance(options, dict):
        raise ProtocolError('the request\'s "options" must be a JSON object')
    auto_seconds = header.get("auto_seconds")
    if auto_seconds is not None and (isinstance(auto_seconds, bool) or not isinstance(
            auto_seconds, (int, float)) or not 0 < auto_seconds < 1e7):
        raise ProtocolError(f'the request\'s "auto_seconds" must be a positive number of seconds, '
                            f"not {auto_seconds!r}")
    job = Job(Options.from_dict(options), width, height, channels, fmt, result_format,
              parsed_styles, mask_format, auto_seconds)

    expected = job.content_bytes + sum(size for _, size in parsed_styles) + job.mask_bytes
    declared = header.get("payload", 0)
    if declared != expected:
        raise ProtocolError(
            f"the request declares a payload of {declared} bytes but its content "
            f"({width}x{height}x{channels} {fmt}), style image(s) and mask need {expected}")
    if expected > protocol.MAX_PAYLOAD:
        raise TooLargeError(f"the request's {expected} bytes are over the core's limit of "
                            f"{protocol.MAX_PAYLOAD} bytes")
    return job


def parse_estimate(header: dict) -> tuple[Options, int, int, list, float]:
    """An "estimate" message: (options, width, height, style sizes, time limit in seconds)."""
    content = _dict(header, "content", "the estimate request")
    width = _int(content, "width", "content", 1, protocol.MAX_SIDE)
    height = _int(content, "height", "content", 1, protocol.MAX_SIDE)
    styles = header.get("styles", [])
    if not isinstance(styles, list) or len(styles) > 16:
        raise ProtocolError('the estimate request\'s "styles" must be a list of sizes')
    sizes = []
    for i, s in enumerate(styles, 1):
        if not isinstance(s, dict):
            raise ProtocolError(f"style {i} must be a JSON object")
        sizes.append((_int(s, "width", f"style {i}", 1, protocol.MAX_SIDE),
                      _int(s, "height", f"style {i}", 1, protocol.MAX_SIDE)))
    limit = header.get("auto_seconds", 180)
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 < limit < 1e7:
        raise ProtocolError(f'"auto_seconds" must be a positive number of seconds, not {limit!r}')
    options = header.get("options", {})
    if not isinstance(options, dict):
        raise ProtocolError('the request\'s "options" must be a JSON object')
    return Options.from_dict(options), width, height, sizes, float(limit)


def answer_estimate(header: dict) -> dict:
    """Estimated run times on this machine for a dialog: a table per preset (long side ->
    seconds), the automatic size for the time limit, and the device they were measured on."""
    from .estimate import for_dialog

    options, width, height, styles, limit = parse_estimate(header)
    return {"type": "estimate", **for_dialog(options, width, height, styles, limit),
            "auto_seconds": limit}


def read_request(reader) -> Job | dict:
    """The request (a Job), or an "estimate" message's header."""
    header = protocol.read_header(reader)
    if header is None:
        raise ProtocolError("no request: stdin closed before a request arrived")
    if header.get("type") == "estimate":
        return header
    job = parse_request(header)
    log.info("request: %s", job.summary())
    payload = memoryview(protocol.read_payload(reader, header))
    at = job.content_bytes
    job.content = payload[:at]
    for _, size in job.styles:
        job.style_data.append(bytes(payload[at:at + size]))
        at += size
    job.mask = payload[at:] if job.mask_format else None
    return job


# -- pixels --------------------------------------------------------------------------------------


def samples(data, fmt: str, shape: tuple) -> np.ndarray:
    return np.frombuffer(data, dtype=DTYPES[fmt]).reshape(shape)


def to_float(a: np.ndarray, fmt: str) -> np.ndarray:
    """Samples -> float32 (u8/u16 scaled to 0..1, no 8-bit step; f32 as is, NaN -> 0)."""
    if fmt == "f32":
        return np.nan_to_num(a.astype(np.float32), nan=0.0)
    return a.astype(np.float32) / np.float32(FULL_SCALE[fmt])


def encode(x: np.ndarray, fmt: str) -> np.ndarray:
    """float array -> samples of `fmt` (u8/u16 clamped to 0..1 and rounded)."""
    if fmt == "f32":
        return x.astype(DTYPES[fmt])
    return np.round(np.clip(x, 0.0, 1.0) * FULL_SCALE[fmt]).astype(DTYPES[fmt])


def split_content(job: Job):
    """(RGB float32 HxWx3 in 0..1 for the engine, raw alpha samples or None)."""
    c = job.channels
    pixels = samples(job.content, job.format, (job.height, job.width, c))
    colour_channels = 1 if c <= 2 else 3
    colour = to_float(pixels[..., :colour_channels], job.format)
    np.clip(colour, 0.0, 1.0, out=colour)
    if colour_channels == 1:
        colour = np.repeat(colour, 3, axis=2)
    alpha = pixels[..., c - 1].copy() if c in (2, 4) else None
    return np.ascontiguousarray(colour), alpha


def assemble(job: Job, rgb: np.ndarray, original_rgb: np.ndarray, alpha_raw) -> bytes:
    """The result samples: the content's size and channels in the requested format."""
    fmt, c = job.result_format, job.channels
    mask = None
    if job.mask is not None:
        mask = samples(job.mask, job.mask_format, (job.height, job.width, 1))
        mask = np.clip(to_float(mask, job.mask_format), 0.0, 1.0)
    if alpha_raw is None and mask is not None:
        # No alpha to make transparent: outside the selection keep the original pixels.
        rgb = rgb * mask + original_rgb * (1.0 - mask)
    colour = rgb @ LUMA if c <= 2 else rgb
    colour = colour.reshape(job.height, job.width, -1)
    out = np.empty((job.height, job.width, c), dtype=DTYPES[fmt])
    out[..., :colour.shape[2]] = encode(colour, fmt)
    if alpha_raw is not None:
        if mask is None and fmt == job.format:
            out[..., c - 1] = alpha_raw  # bit for bit
        else:
            alpha = to_float(alpha_raw, job.format)
            if mask is not None:
                alpha = alpha * mask[..., 0]
            out[..., c - 1] = encode(alpha, fmt)
    return out.tobytes()


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
    """Owns stdout and the stop flag. Exactly one final message (result or error) is sent."""

    def __init__(self, writer):
        self.writer = writer
        self.lock = threading.Lock()
        self.stop = threading.Event()  # passed to the engine as should_stop
        self.done = threading.Event()  # the main thread has finished
        self.stop_reason: str | None = None
        self.final_sent = False
        self.output_broken = False
        self.last_progress: dict = {k: None for k in PROGRESS_FIELDS}
        self.last_progress_sent = 0.0

    # output

    def _write(self, message: dict, payload: bytes | None = None) -> bool:
        try:
            protocol.write_message(self.writer, message, payload)
            return True
        except OSError as e:  # the plug-in has gone: nobody to tell
            log.warning("could not send %s message: %s", message.get("type"), e)
            self.output_broken = True
            return False

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
        with self.lock:
            if self.final_sent or self.stop.is_set():
                return
            self.last_progress_sent = now
            self._write({"type": "progress", **p})
        if self.output_broken:
            self.request_stop("output")

    def send_result(self, message: dict, payload: bytes) -> bool:
        """Send the result unless a stop was requested (then the caller reports cancelled)."""
        with self.lock:
            if self.final_sent or self.stop.is_set():
                return False
            self.final_sent = True
            return self._write(message, payload)

    def send_error(self, kind: str, message: str) -> None:
        with self.lock:
            if self.final_sent:
                return
            self.final_sent = True
            self._write({"type": "error", "kind": kind, "message": message})

    # stopping

    def cancelled(self) -> Cancelled:
        reason = STOP_REASONS.get(self.stop_reason or "cancel", self.stop_reason)
        return Cancelled(f"Cancelled: {reason}.")

    def request_stop(self, reason: str) -> None:
        with self.lock:
            if self.stop.is_set() or self.final_sent:  # after the answer there is nothing to stop
                return
            self.stop_reason = reason
            self.stop.set()
        log.warning("stop requested: %s", STOP_REASONS.get(reason, reason))
        threading.Thread(target=self._watchdog, name="nst-watchdog", daemon=True).start()

    def _watchdog(self) -> None:
        if self.done.wait(GRACE_S):
            return
        log.error("the engine did not stop within %.0f s; exiting now", GRACE_S)
        if self.lock.acquire(timeout=0.2):  # never released: the process ends here
            if not self.final_sent:
                self.final_sent = True
                self._write({"type": "error", "kind": Cancelled.kind,
                             "message": self.cancelled().message})
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


def run_job(job: Job, session: Session) -> bytes:
    """Stylise; returns the result samples. Raises Cancelled when a stop was requested."""
    session.progress(force=True, phase="loading", fraction=0.0, elapsed_s=0.0)
    t0 = time.monotonic()
    from .engine import stylize  # torch loads here, after the request is known to be good
    from .images import load_image, resize_array

    rgb, alpha = split_content(job)
    styles = [load_image(data, what="style image", name=name)
              for (name, _), data in zip(job.styles, job.style_data)]
    job.style_data = []
    if job.auto_seconds is not None and job.options.size is None:
        from .estimate import largest_within

        size = largest_within(job.options, job.width, job.height, job.auto_seconds,
                              [s.size for s in styles])
        log.info("automatic size: %d px (long side) for a run of at most %.0f s", size,
                 job.auto_seconds)
        job.options = job.options.replace(size=size)
    log.info("imported the engine and decoded the images in %.2f s; device option %r",
             time.monotonic() - t0, job.options.device)
    if session.stop.is_set():
        raise session.cancelled()

    def on_progress(p) -> None:
        session.progress(**dataclasses.asdict(p))

    t1 = time.monotonic()
    out = stylize(rgb, styles, job.options, progress=on_progress, should_stop=session.stop.is_set)
    log.info("engine finished in %.2f s", time.monotonic() - t1)
    if session.stop.is_set():
        raise session.cancelled()
    out = np.asarray(out, dtype=np.float32)
    if out.ndim != 3 or out.shape[2] != 3:
        raise RuntimeError(f"the engine returned an array of shape {out.shape}, not HxWx3")
    if out.shape[:2] != (job.height, job.width):
        log.info("resizing the engine's %dx%d result to %dx%d", out.shape[1], out.shape[0],
                 job.width, job.height)
    out = resize_array(out, (job.width, job.height))  # in float: no 8-bit step
    data = assemble(job, out, rgb, alpha)
    if session.last_progress["phase"] != "finishing":
        session.progress(force=True, phase="finishing", fraction=1.0, eta_s=0.0,
                         elapsed_s=time.monotonic() - t0)
    return data


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
        job = read_request(reader)
        if isinstance(job, dict):  # an estimate: answered at once, no pixels
            answer = answer_estimate(job)
            with session.lock:
                session.final_sent = True
                session._write(answer)
            return 0
        session.watch_input(reader)
        data = run_job(job, session)
        message = {"type": "result", "width": job.width, "height": job.height,
                   "channels": job.channels, "format": job.result_format}
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
    session.send_error(error.kind, error.message)
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
    parser.add_argument("--log-level", default=os.environ.get("NST_LOG_LEVEL", "INFO"),
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper)
    args = parser.parse_args(argv)

    # The protocol owns the real stdout; anything printed (by us, torch or C code) goes to the log.
    sys.stdout.flush()
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        msvcrt.setmode(0, os.O_BINARY)
        msvcrt.setmode(1, os.O_BINARY)
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _setup_logging(args.log_level)
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
