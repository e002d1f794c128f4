"""The plug-in <-> core wire format (version 1), core side.

Transport: the core's stdin/stdout; stderr is the log. Every message is one line of UTF-8 JSON
(an object with a "type"). A message with "payload": N is followed by exactly N raw bytes.

plug-in -> core
  {"type": "request", "protocol": 1,
   "options": {...},                      # nst_core.options.Options fields, by name
   "content": {"width": W, "height": H, "channels": C, "format": F},
   "styles": [{"name": "starry.jpg", "size": N}, ...],
   "mask": null | {"width": W, "height": H, "format": F},   # selection, 1 channel
   "result": {"format": F},               # sample format of the answer
   "payload": TOTAL}
      C: 1 (grey), 2 (grey+alpha), 3 (RGB), 4 (RGBA); alpha is always the last channel.
      F: "u8", "u16" or "f32"; samples interleaved, rows top to bottom, little-endian.
      payload = content pixels (W*H*C samples), then each style file's bytes in order,
      then the mask's W*H samples when there is a mask.
  {"type": "cancel"}                      # any time after the request; closing stdin also cancels

core -> plug-in
  {"type": "progress", "phase": P, "scale": S, "scales": N, "iteration": I, "iterations": T,
   "step": K, "steps": M, "fraction": 0..1, "loss": L, "eta_s": E, "elapsed_s": X}
      P: "loading", "stylizing" or "finishing"; fraction covers the whole job.
  {"type": "result", "width": W, "height": H, "channels": C, "format": F, "payload": N}
      the content's size and channels; alpha is the content's alpha (times the mask, if any).
  {"type": "error", "kind": K, "message": M}
      K: one of the NSTError kinds (bad_request, bad_option, bad_image, weights, device,
      too_large, cancelled, internal).
"""

from __future__ import annotations

import json
from typing import BinaryIO

from .errors import ProtocolError

VERSION = 1
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}
MAX_SIDE = 32768  # GIMP's own limit is 524288, but nothing past this fits a VGG pass anyway
MAX_HEADER = 1 << 20  # one JSON line
MAX_STYLE_BYTES = 256 << 20
MAX_PAYLOAD = 4 << 30


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
    if len(line) > MAX_HEADER or not line.endswith(b"\n"):
        raise ProtocolError("a message header must be one JSON line of at most 1 MiB")
    try:
        message = json.loads(line)
    except ValueError as e:
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
