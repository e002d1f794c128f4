"""The plug-in <-> core wire format (version 1), core side.

Transport: the core's stdin/stdout; stderr is the log. Every message is one line of UTF-8 JSON
(an object with a "type"). A message with "payload": N is followed by exactly N raw bytes.

plug-in -> core
  {"type": "request", "protocol": 1,
   "options": {...},                      # nst_core.options.Options fields, by name
   "content": {"width": W, "height": H, "channels": C, "format": F},
   "styles": [STYLE, ...],
   "mask": null | {"width": W, "height": H, "format": F},   # selection, 1 channel
   "result": {"format": F},               # sample format of the answer
   "preview": null | {"size": S},         # optional: a quick streamed draft, see below
   "images": null | {"size": S},          # optional: a full run that also streams its images
   "payload": TOTAL}
      C: 1 (grey), 2 (grey+alpha), 3 (RGB), 4 (RGBA); alpha is always the last channel.
      F: "u8", "u16" or "f32"; samples interleaved, rows top to bottom, little-endian.
      STYLE: an image file's bytes   {"name": "starry.jpg", "size": N}
             or raw samples          {"name": "Layer 1", "width": W, "height": H,
                                      "channels": C, "format": F}
                 (C and F as for the content; W*H*C*sample bytes, at most MAX_STYLE_BYTES; an
                 optional "size" must equal that). Alpha is composited over white, as for a
                 file; each side needs at least MIN_STYLE_SIDE pixels.
      payload = content pixels (W*H*C samples), then each style's bytes in order,
      then the mask's W*H samples when there is a mask.
  {"type": "cancel"}                      # any time after the request; closing stdin also cancels

  A preview ("preview": {"size": S}, S the long side, PREVIEW_SIZES, default 256) paints what
  the run paints first: the same options (preset, strength, colors, model, styles, seed,
  device, ...) with size S, i.e. the preset's scales from its smallest (about 128 px) up to S.
  The mask, "result" and "auto_seconds" are ignored (the mask's bytes are still sent). The
  content may be any size: the core reduces it to S. The first "image" is the finished first
  scale, sent before the next scale starts; then the images being painted stream, and the
  result comes at the preview's size as RGB u8.
  "images" ({"size": S}, the same limits) asks a full run to stream its images too, as "image"
  messages no larger than S (a web page shows the picture being painted); a preview ignores it.

core -> plug-in
  {"type": "progress", "phase": P, "scale": S, "scales": N, "iteration": I, "iterations": T,
   "step": K, "steps": M, "fraction": 0..1, "loss": L, "eta_s": E, "elapsed_s": X}
      P: "loading", "stylizing" or "finishing"; fraction covers the whole job.
  {"type": "image", "width": W, "height": H, "channels": 3, "format": "u8", "step": K,
   "steps": M, "payload": W*H*3}
      previews (and runs that asked for "images"): the image after step K of M (RGB u8 at the
      preview's or the images' size), after each scale and every few iterations, at most about
      3 a second, between progress messages.
  {"type": "result", "width": W, "height": H, "channels": C, "format": F, "payload": N}
      the content's size and channels; alpha is the content's alpha (times the mask, if any).
      A preview's result: its own size, channels 3, format "u8".
  {"type": "error", "kind": K, "message": M, "field": F}
      K: one of the NSTError kinds (bad_request, bad_option, bad_image, weights, device,
      too_large, cancelled, internal). F: for bad_option, the option the message is about
      (an Options field name), else null; front ends point at their own field with it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import ImageError, ProtocolError, TooLargeError
from .options import Options

VERSION = 1
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}
CHANNELS = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}
MAX_SIDE = 32768  # GIMP's own limit is 524288, but nothing past this fits a VGG pass anyway
MAX_HEADER = 1 << 20  # one JSON line
MAX_STYLES = 16
AUTO_SECONDS = 600  # an estimate's time limit for an automatic size, unless it names one
MAX_STYLE_BYTES = 256 << 20
MIN_STYLE_SIDE = 16  # images.MIN_SIDE (VGG's four poolings); checked here from the header alone
PREVIEW_SIZES = (64, 512)  # the preview's long side: least, most
PREVIEW_SIZE = 256
MAX_PAYLOAD = 4 << 30
MAX_SECONDS = 1e7
# The fields of a "progress" message, in the order the docstring gives them.
PROGRESS_FIELDS = ("phase", "scale", "scales", "iteration", "iterations", "step", "steps",
                   "fraction", "loss", "eta_s", "elapsed_s")

log = logging.getLogger("nst_core.protocol")


def write_message(stream: BinaryIO, message: dict, payload: bytes | None = None) -> None:
    if payload is not None:
        message = dict(message, payload=len(payload))
    stream.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    if payload is not None:
        stream.write(payload)
    stream.flush()


def read_header(stream: BinaryIO) -> dict | None:
    """The next message's JSON header, or None at end of stream. Its payload is still unread."""
    line = stream.readline(MAX_HEADER + 1)
    if not line:
        return None
    if len(line) > MAX_HEADER:
        raise ProtocolError("a message header must be one JSON line of at most 1 MiB")
    if not line.endswith(b"\n"):  # stdin closed mid-header: not a size problem
        raise ProtocolError(f"the stream ended {len(line)} bytes into a message header, before "
                            "its end of line (a header is one JSON line)")
    if b"\0" in line:  # else json guesses UTF-32 and says so
        raise ProtocolError("a message header holds NUL bytes; it must be UTF-8 JSON text")
    try:
        message = json.loads(line)
    except RecursionError:
        raise ProtocolError("message header is nested too deeply") from None
    except ValueError as e:  # also bad UTF-8 and integers of more than 4300 digits
        raise ProtocolError(f"message header is not valid JSON: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a "type"')
    size = message.get("payload", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ProtocolError('"payload" must be a non-negative integer')
    return message


def read_payload(stream: BinaryIO, message: dict, max_payload: int = MAX_PAYLOAD) -> bytes:
    """The bytes that follow `message`; checks the declared size before reading any."""
    size = message.get("payload", 0)
    if size > max_payload:
        raise ProtocolError(f"payload of {size} bytes is over the limit of {max_payload} bytes")
    return _read_exactly(stream, size)


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(min(left, 1 << 24))
        if not chunk:
            raise ProtocolError(f"stream ended {left} bytes before the declared payload")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# -- the request, checked completely before any work ---------------------------------------------
#
# A small hand-written schema: each field is read by one helper that checks its type and range
# and names the field in its error. Unknown fields are errors too: a typo must not be ignored.

_REQUIRED = object()


def _object(value, where: str, known: tuple) -> dict:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be a JSON object, not {_kind(value)}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ProtocolError(f"{where} has unknown field(s): {', '.join(map(repr, unknown))}")
    return value


def _kind(value) -> str:
    """What a JSON value is, for messages (never the whole value: it may be huge)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false",
             type(None): "null", int: "a whole number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _get(d: dict, key: str, where: str, default=_REQUIRED):
    if key in d:
        return d[key]
    if default is _REQUIRED:
        raise ProtocolError(f'{where} lacks "{key}"')
    return default


def _whole(d: dict, key: str, where: str, lo: int, hi: int, default=_REQUIRED,
           over=ProtocolError) -> int:
    """A whole number in lo..hi. `over`: the error for a value above hi (too_large for sizes)."""
    v = _get(d, key, where, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ProtocolError(f'{where} "{key}" must be a whole number from {lo} to {hi}, '
                            f"not {_short(v)}")
    if v > hi:
        raise over(f'{where} "{key}" of {v} is over the limit of {hi}')
    return v


def _side(d: dict, key: str, where: str) -> int:
    """A width or height in pixels: over MAX_SIDE is too_large, whatever carries it."""
    return _whole(d, key, where, 1, MAX_SIDE, over=TooLargeError)


def _seconds(d: dict, key: str, where: str, default=_REQUIRED) -> float | None:
    v = _get(d, key, where, default)
    if v is None and default is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
            math.isfinite(v) and 0 < v < MAX_SECONDS):
        raise ProtocolError(f'{where} "{key}" must be a positive number of seconds, '
                            f"not {_short(v)}")
    return float(v)


def _format(d: dict, key: str, where: str, default=_REQUIRED) -> str:
    v = _get(d, key, where, default)
    if not isinstance(v, str) or v not in SAMPLE_BYTES:
        raise ProtocolError(f'{where} "{key}" must be one of {", ".join(SAMPLE_BYTES)}, '
                            f"not {_short(v)}")
    return v


def _short(value) -> str:
    text = repr(value) if isinstance(value, (str, int, float, type(None))) else _kind(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _options(header: dict, where: str) -> Options:
    values = _get(header, "options", where, {})
    if not isinstance(values, dict):
        raise ProtocolError(f'{where} "options" must be a JSON object, not {_kind(values)}')
    return Options.from_dict(values)  # its own checks: bad_option errors naming the option


def _version(header: dict) -> None:
    version = header.get("protocol")
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError(
            f"this core speaks protocol version {VERSION}, the plug-in sent version "
            f"{_short(version)}: install the plug-in and the core from the same release")


@dataclass(frozen=True)
class Style:
    """One style image as the request describes it: an image file's bytes, or raw samples."""

    name: str
    size: int  # its bytes in the payload
    width: int | None = None  # the rest: raw samples only
    height: int | None = None
    channels: int | None = None
    format: str | None = None

    @property
    def is_pixels(self) -> bool:
        return self.format is not None

    def describe(self) -> str:
        if self.is_pixels:
            return (f"{self.name!r} ({self.width}x{self.height} {CHANNELS[self.channels]} "
                    f"{self.format})")
        return f"{self.name!r} ({self.size} bytes)"


@dataclass
class Request:
    """A stylisation request whose header has been checked; the payload is filled in later."""

    options: Options
    width: int
    height: int
    channels: int
    format: str
    result_format: str
    styles: list  # [Style]
    mask_format: str | None
    auto_seconds: float | None = None  # size None: the largest size that takes at most this
    preview: int | None = None  # a streamed draft of this long side instead of the full run
    images: int | None = None  # a full run that streams its images at most this long side
    content: bytes = b""
    style_data: list = field(default_factory=list)
    mask: bytes | None = None

    @property
    def content_bytes(self) -> int:
        return self.width * self.height * self.channels * SAMPLE_BYTES[self.format]

    @property
    def mask_bytes(self) -> int:
        if self.mask_format is None:
            return 0
        return self.width * self.height * SAMPLE_BYTES[self.mask_format]

    @property
    def payload_bytes(self) -> int:
        return self.content_bytes + sum(s.size for s in self.styles) + self.mask_bytes

    def summary(self) -> str:
        styles = ", ".join(s.describe() for s in self.styles)
        defaults = Options()
        changed = {k: v for k, v in self.options.to_dict().items()
                   if v != getattr(defaults, k)}
        return (f"{self.width}x{self.height} {CHANNELS[self.channels]} {self.format} -> "
                f"{self.result_format}; style(s): {styles}; mask: {self.mask_format or 'none'}; "
                f"options (non-default): {changed or 'none'}"
                + (f"; preview of {self.preview} px" if self.preview else ""))

    def split_payload(self, payload: bytes) -> None:
        view, at = memoryview(payload), self.content_bytes
        self.content = view[:at]
        self.style_data = []
        for style in self.styles:
            self.style_data.append(bytes(view[at:at + style.size]))
            at += style.size
        self.mask = view[at:] if self.mask_format else None


REQUEST_FIELDS = ("type", "protocol", "options", "content", "styles", "mask", "result",
                  "auto_seconds", "preview", "images", "payload")
PIXEL_FIELDS = ("width", "height", "channels", "format")


def _style(value, i: int) -> Style:
    """One entry of "styles": a file ("size") or raw samples (the PIXEL_FIELDS)."""
    if not isinstance(value, dict):
        raise ProtocolError(f"style {i} must be a JSON object, not {_kind(value)}")
    name = value.get("name", f"style {i}")
    if not isinstance(name, str) or len(name) > 4096:
        raise ProtocolError(f'style {i} "name" must be a string (a file or layer name)')
    where = f"style image {name!r}"
    s = _object(value, where, ("name", "size") + PIXEL_FIELDS)
    if not any(k in s for k in PIXEL_FIELDS):
        size = _get(s, "size", where)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ProtocolError(f"style image {name!r} is empty or has no valid size")
        if size > MAX_STYLE_BYTES:
            raise TooLargeError(f"style image {name!r} is {size} bytes, over the limit of "
                                f"{MAX_STYLE_BYTES} bytes")
        return Style(name, size)
    width = _side(s, "width", where)
    height = _side(s, "height", where)
    channels = _whole(s, "channels", where, 1, 4)
    fmt = _format(s, "format", where)
    size = width * height * channels * SAMPLE_BYTES[fmt]
    declared = s.get("size", size)
    if type(declared) is not int or declared != size:  # true is no size, though true == 1
        raise ProtocolError(f"{where} is {width}x{height}x{channels} {fmt} samples, "
                            f"{size} bytes, but declares a size of {_short(declared)}")
    if size > MAX_STYLE_BYTES:
        raise TooLargeError(f"{where} is {size} bytes of samples, over the limit of "
                            f"{MAX_STYLE_BYTES} bytes")
    if min(width, height) < MIN_STYLE_SIDE:
        raise ImageError(f"{where} is {width}x{height} pixels; it needs at least "
                         f"{MIN_STYLE_SIDE}x{MIN_STYLE_SIDE}")
    return Style(name, size, width, height, channels, fmt)


def _stream_size(header: dict, name: str, where: str) -> int | None:
    """The long side of a preview ("preview") or of a full run's images ("images"), or None."""
    value = _get(header, name, where, None)
    if value is None:
        return None
    value = _object(value, f'the request\'s "{name}"', ("size",))
    return _whole(value, "size", name, *PREVIEW_SIZES, default=PREVIEW_SIZE)


def parse_request(header: dict) -> Request:
    """Check a request header completely (everything but the payload's contents) and say what is
    wrong in one sentence. Nothing large is allocated here."""
    where = "the request"
    _object(header, where, REQUEST_FIELDS)
    if header.get("type") != "request":
        raise ProtocolError(f'expected a "request" message, got {_short(header.get("type"))}')
    _version(header)
    content = _object(_get(header, "content", where), "content",
                      ("width", "height", "channels", "format"))
    width = _side(content, "width", "content")
    height = _side(content, "height", "content")
    channels = _whole(content, "channels", "content", 1, 4)
    fmt = _format(content, "format", "content")

    result = _get(header, "result", where, None)
    result = _object({} if result is None else result, "the request's \"result\"", ("format",))
    result_format = _format(result, "format", "result", fmt)

    styles = _get(header, "styles", where)
    if not isinstance(styles, list) or not styles:
        raise ProtocolError("the request needs a list of at least one style image")
    if len(styles) > MAX_STYLES:
        raise ProtocolError(f"the request has {len(styles)} style images; at most "
                            f"{MAX_STYLES} can be blended")
    parsed_styles = [_style(s, i) for i, s in enumerate(styles, 1)]

    mask = _get(header, "mask", where, None)
    mask_format = None
    if mask is not None:
        mask = _object(mask, 'the request\'s "mask"', ("width", "height", "channels", "format"))
        mw = _side(mask, "width", "mask")
        mh = _side(mask, "height", "mask")
        if (mw, mh) != (width, height):
            raise ProtocolError(f"the mask is {mw}x{mh} but the content is {width}x{height}")
        _whole(mask, "channels", "mask", 1, 1, default=1)
        mask_format = _format(mask, "format", "mask")

    auto_seconds = _seconds(header, "auto_seconds", where, None)
    request = Request(_options(header, where), width, height, channels, fmt, result_format,
                      parsed_styles, mask_format, auto_seconds,
                      _stream_size(header, "preview", where), _stream_size(header, "images", where))

    declared = _get(header, "payload", where, 0)
    if declared != request.payload_bytes:
        raise ProtocolError(
            f"the request declares a payload of {_short(declared)} bytes but its content "
            f"({width}x{height}x{channels} {fmt}), style image(s) and mask need "
            f"{request.payload_bytes}")
    if request.payload_bytes > MAX_PAYLOAD:
        raise TooLargeError(f"the request's {request.payload_bytes} bytes are over the core's "
                            f"limit of {MAX_PAYLOAD} bytes")
    return request


@dataclass
class EstimateRequest:
    """An "estimate" message: how long runs on a width x height layer would take."""

    options: Options
    width: int
    height: int
    styles: list  # [(width, height)] of the style images, where known
    auto_seconds: float


def parse_estimate(header: dict) -> EstimateRequest:
    where = "the estimate request"
    _object(header, where, ("type", "protocol", "options", "content", "styles", "auto_seconds",
                            "payload"))
    if "protocol" in header:  # older plug-ins of this version did not send it
        _version(header)
    if _get(header, "payload", where, 0) != 0:
        raise ProtocolError("an estimate request carries no payload")
    content = _object(_get(header, "content", where), "content", ("width", "height"))
    width = _side(content, "width", "content")
    height = _side(content, "height", "content")
    styles = _get(header, "styles", where, [])
    if not isinstance(styles, list) or len(styles) > MAX_STYLES:
        raise ProtocolError(f'{where}\'s "styles" must be a list of at most {MAX_STYLES} sizes')
    sizes = []
    for i, s in enumerate(styles, 1):
        s = _object(s, f"style {i}", ("width", "height"))
        sizes.append((_side(s, "width", f"style {i}"),
                      _side(s, "height", f"style {i}")))
    limit = _seconds(header, "auto_seconds", where, AUTO_SECONDS)
    return EstimateRequest(_options(header, where), width, height, sizes, limit)


def read_request(reader) -> Request | EstimateRequest:
    """The next message from the plug-in, checked completely: a Request with its payload read,
    or an EstimateRequest."""
    header = read_header(reader)
    if header is None:
        raise ProtocolError("no request: stdin closed before a request arrived")
    if header.get("type") == "estimate":
        return parse_estimate(header)
    request = parse_request(header)
    log.info("request: %s", request.summary())
    request.split_payload(read_payload(reader, header))
    return request
