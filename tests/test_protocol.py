"""The wire format and the worker's handling of bad requests: real worker processes that must
answer with one clear error (kind bad_request / bad_option / bad_image) and a non-zero exit,
quickly and without allocating what the request claims."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nst_core import images, pixels, protocol
from nst_core.errors import ImageError, NSTError, ProtocolError

from .worker_client import (
    ROOT,
    WORKER,
    Worker,
    gradient,
    pixel_style,
    request,
    run_worker,
    to_samples,
)

# -- protocol.py itself --------------------------------------------------------------------------


def test_message_round_trip():
    stream = io.BytesIO()
    protocol.write_message(stream, {"type": "result", "width": 2}, b"\x00\x01\x02")
    protocol.write_message(stream, {"type": "progress", "fraction": 0.5})
    stream.seek(0)
    first = protocol.read_header(stream)
    assert first == {"type": "result", "width": 2, "payload": 3}
    assert protocol.read_payload(stream, first) == b"\x00\x01\x02"
    second = protocol.read_header(stream)
    assert second["fraction"] == 0.5 and protocol.read_payload(stream, second) == b""
    assert protocol.read_header(stream) is None


@pytest.mark.parametrize("line, words", [
    (b"not json\n", "not valid JSON"),
    (b"[1, 2]\n", '"type"'),
    (b'{"type": "x", "payload": -1}\n', "non-negative"),
    (b'{"type": "x"', "one JSON line"),  # no newline: cut off
    (b'{"type": "request", "options": {' + b" " * 400, "ended 432 bytes into"),  # stdin closed
    ('{"type": "x"}\n'.encode("utf-32-le"), "NUL bytes"),
    (b'{"type": "x", "a": "\0"}\n', "NUL bytes"),
    (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
])
def test_bad_headers_are_named(line, words):
    with pytest.raises(ProtocolError, match=words):
        protocol.read_header(io.BytesIO(line))


def test_payload_limit_checked_before_reading():
    stream = io.BytesIO(b"")
    with pytest.raises(ProtocolError, match="over the limit"):
        protocol.read_payload(stream, {"type": "x", "payload": 10}, max_payload=5)


def test_truncated_payload_is_an_error():
    with pytest.raises(ProtocolError, match="ended 6 bytes before"):
        protocol.read_payload(io.BytesIO(b"abcd"), {"type": "x", "payload": 10})


# -- the worker's answers to bad requests --------------------------------------------------------

W, H = 20, 16
CONTENT = to_samples(gradient(W, H, 3, "u8"), "u8")


def assert_one_error(worker: Worker, kind: str, *words: str) -> str:
    """One error of `kind` whose text has `words` (after progress at most); non-zero exit."""
    types = worker.types()
    assert types and set(types[:-1]) <= {"progress"} and types[-1] == "error", worker.log_text()
    message = worker.final()
    assert message["kind"] == kind, message
    for word in words:
        assert word in message["message"], message
    assert worker.proc.returncode != 0
    # The log (stderr) says what happened, with timestamps.
    log = worker.log_text()
    assert message["message"] in log and "ERROR" in log
    return message["message"]


def test_malformed_json(tmp_path):
    w = run_worker(tmp_path, b"{this is not json\n")
    assert_one_error(w, "bad_request", "not valid JSON")
    assert w.proc.returncode == ProtocolError.exit_code


def test_no_request_at_all(tmp_path):
    w = run_worker(tmp_path, b"", timeout=120, close_stdin=True)
    assert_one_error(w, "bad_request", "no request")


def test_wrong_protocol_version(tmp_path):
    w = run_worker(tmp_path, request(CONTENT, W, H, 3, "u8", header={"protocol": 2}))
    assert_one_error(w, "bad_request", "version 1", "version 2")


def test_not_a_request(tmp_path):
    w = run_worker(tmp_path, b'{"type": "cancel"}\n')
    assert_one_error(w, "bad_request", '"request"')


@pytest.mark.parametrize("field, value, words", [
    ("channels", 5, "channels"),
    ("channels", 0, "channels"),
    ("format", "u32", "format"),
    ("width", 0, "width"),
    ("height", "16", "height"),
])
def test_bad_content_description(tmp_path, field, value, words):
    content = {"width": W, "height": H, "channels": 3, "format": "u8", field: value}
    w = run_worker(tmp_path, request(CONTENT, W, H, 3, "u8", header={"content": content}))
    assert_one_error(w, "bad_request", words)


def test_bad_result_format(tmp_path):
    w = run_worker(tmp_path, request(CONTENT, W, H, 3, "u8", header={"result": {"format": "png"}}))
    assert_one_error(w, "bad_request", "result", "png")


def test_no_style(tmp_path):
    w = run_worker(tmp_path, request(CONTENT, W, H, 3, "u8", styles=[]))
    assert_one_error(w, "bad_request", "at least one style")


def test_style_over_the_limit(tmp_path):
    """Declared, not sent: the size alone is refused before any payload is read."""
    data = request(CONTENT, W, H, 3, "u8",
                   styles=[("huge.jpg", b"x")])
    header = json.loads(data.split(b"\n", 1)[0])
    header["styles"] = [{"name": "huge.jpg", "size": protocol.MAX_STYLE_BYTES + 1}]
    header["payload"] = len(CONTENT) + protocol.MAX_STYLE_BYTES + 1
    w = run_worker(tmp_path, json.dumps(header).encode() + b"\n" + CONTENT)
    assert_one_error(w, "too_large", "huge.jpg", "over the limit")


def test_mask_size_must_match_content(tmp_path):
    mask = bytes(W * H)
    data = request(CONTENT, W, H, 3, "u8", mask=mask,
                   header={"mask": {"width": W + 1, "height": H, "format": "u8"}})
    w = run_worker(tmp_path, data)
    assert_one_error(w, "bad_request", "mask", f"{W + 1}x{H}", f"{W}x{H}")


def test_payload_size_must_match_the_description(tmp_path):
    data = request(CONTENT, W, H, 3, "u8")
    header, payload = data.split(b"\n", 1)
    header = json.loads(header)
    header["payload"] -= 1
    w = run_worker(tmp_path, json.dumps(header).encode() + b"\n" + payload[:-1])
    assert_one_error(w, "bad_request", "payload")


def test_unknown_option_is_bad_option(tmp_path):
    w = run_worker(tmp_path, request(CONTENT, W, H, 3, "u8", options={"sharpness": 3}))
    assert_one_error(w, "bad_option", "sharpness")
    assert w.proc.returncode == 2


def test_invalid_option_value_is_bad_option(tmp_path):
    w = run_worker(tmp_path, request(CONTENT, W, H, 3, "u8", options={"preset": "ultra"}))
    assert_one_error(w, "bad_option", "ultra")


def test_truncated_payload(tmp_path):
    """The plug-in dies while sending: the worker says the payload was cut short."""
    data = request(CONTENT, W, H, 3, "u8")
    w = run_worker(tmp_path, data[:-100], timeout=120, close_stdin=True)
    assert_one_error(w, "bad_request", "100 bytes before")


def test_corrupt_style_is_bad_image(tmp_path):
    styles = [("broken starry night.jpg", b"\xff\xd8\xff\xe0 this is no JPEG" * 20)]
    w = run_worker(tmp_path, request(CONTENT, W, H, 3, "u8", styles=styles))
    assert_one_error(w, "bad_image", "broken starry night.jpg")
    assert w.proc.returncode == 3


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 (POSIX)")
@pytest.mark.parametrize("content, kind, words", [
    ({"width": protocol.MAX_SIDE + 1, "height": 16, "channels": 3, "format": "u8"}, "too_large",
     "width"),
    ({"width": 30000, "height": 30000, "channels": 4, "format": "f32"}, "bad_request", "payload"),
])
def test_oversized_dimensions_fail_fast_without_allocating(tmp_path, content, kind, words):
    """A 14 GB image declared with a 100-byte payload is refused from the header alone; the
    worker's peak memory stays that of a bare interpreter: nothing the header claims is
    allocated before the header is known to be good."""
    header = {"type": "request", "protocol": 1, "options": {}, "content": content,
              "styles": [{"name": "s.png", "size": 50}], "mask": None,
              "result": {"format": "u8"}, "payload": 100}
    script = (
        "import os, subprocess, sys\n"
        "p = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE,"
        " stderr=subprocess.DEVNULL)\n"
        "data = sys.stdin.buffer.read()\n"
        "p.stdin.write(data); p.stdin.flush()\n"
        "out = p.stdout.read()\n"
        "_, status, usage = os.wait4(p.pid, 0)\n"
        "sys.stdout.write(str(usage.ru_maxrss) + '\\n')\n"
        "sys.stdout.buffer.write(out)\n")
    done = subprocess.run([sys.executable, "-c", script] + WORKER, cwd=ROOT, timeout=120,
                          input=json.dumps(header).encode() + b"\n" + bytes(100),
                          capture_output=True, check=True)
    first, rest = done.stdout.split(b"\n", 1)
    maxrss_kb = int(first)
    scale = 1 if sys.platform != "darwin" else 1024  # macOS reports bytes
    assert maxrss_kb / scale < 300_000, f"worker peaked at {maxrss_kb / scale / 1024:.0f} MB"
    message = json.loads(rest.splitlines()[0])
    assert message["type"] == "error" and message["kind"] == kind
    assert words in message["message"]


def test_internal_error_is_one_readable_message(tmp_path):
    """A bug (any exception that is no NSTError) becomes one error of kind "internal" naming
    the exception; the traceback goes to the log. The bug is planted in the worker's own pixel
    code, not in the engine."""
    script = ("import sys, nst_core.pixels as p, nst_core.worker as w\n"
              "def broken(request):\n"
              "    raise RuntimeError('simulated bug in the worker')\n"
              "p.split_content = broken\n"
              "sys.exit(w.main())\n")
    worker = Worker(tmp_path / "worker.log", command=[sys.executable, "-c", script])
    worker.send(request(CONTENT, W, H, 3, "u8"))
    worker.finish(120)
    assert_one_error(worker, "internal", "RuntimeError", "simulated bug in the worker")
    assert worker.proc.returncode == 1
    assert "Traceback" in worker.log_text()


def test_missing_weights_say_how_to_get_them(tmp_path):
    env = dict(os.environ, NST_HOME=str(tmp_path / "empty-home"))
    worker = Worker(tmp_path / "worker.log", env=env)
    worker.send(request(CONTENT, W, H, 3, "u8"))
    worker.finish(120)
    assert_one_error(worker, "weights", "nst weights fetch")


@pytest.mark.parametrize("level", ["LOUD", "", "12"])
def test_a_bad_log_level_in_the_environment_does_not_silence_the_core(tmp_path, level):
    """NST_LOG_LEVEL is the user's environment, not the plug-in's request: a bad value is
    reported in the log and the core still answers."""
    env = dict(os.environ, NST_LOG_LEVEL=level)
    worker = Worker(tmp_path / "worker.log", env=env)
    worker.send(b'{"type": "request", "protocol": 99}\n')
    worker.finish(60)
    assert_one_error(worker, "bad_request", "protocol version")
    if level:
        assert f"NST_LOG_LEVEL={level!r}" in worker.log_text()


def _header_with(**changes) -> bytes:
    data = request(CONTENT, W, H, 3, "u8")
    header, payload = data.split(b"\n", 1)
    header = json.loads(header)
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = header
        for key in parents:
            target = target[key]
        target[last] = value
    return json.dumps(header).encode() + b"\n" + payload


@pytest.mark.parametrize("changes, kind, words", [
    ({"styles": "starry.jpg"}, "bad_request", "list of at least one style"),
    ({"content__width": [40]}, "bad_request", "width"),
    ({"content__format": ["u8"]}, "bad_request", "format"),
    ({"content__height": 2**70}, "too_large", "height"),
    ({"content__channels": 3.0}, "bad_request", "channels"),
    ({"mask": [1, 2]}, "bad_request", "mask"),
    ({"result": "u8"}, "bad_request", "result"),
    ({"auto_seconds": float("nan")}, "bad_request", "auto_seconds"),
    ({"auto_seconds": "180"}, "bad_request", "auto_seconds"),
    ({"options": [["size", 64]]}, "bad_request", "options"),
    ({"options": {"size": "512"}}, "bad_option", "size"),
    ({"options": {"seed": 2**64}}, "bad_option", "seed"),
    ({"options": {"style_layers": "relu1_1"}}, "bad_option", "style_layers"),
    ({"options": {"strength": float("inf")}}, "bad_option", "strength"),
    ({"options": {"style_blend": [[1.0]]}}, "bad_option", "style_blend"),
    ({"colour": "red"}, "bad_request", "'colour'"),
    ({"content__depth": 8}, "bad_request", "'depth'"),
    ({"protocol": True}, "bad_request", "protocol version"),
])
def test_every_field_of_the_wrong_type_is_one_typed_error(changes, kind, words):
    with pytest.raises(NSTError) as caught:
        protocol.read_request(io.BytesIO(_header_with(**changes)))
    assert caught.value.kind == kind, caught.value.message
    assert words in caught.value.message


@pytest.mark.parametrize("line", [
    b'{"type": "request", "options": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    b'{"type": "request", "protocol": 1' + b"9" * 5000 + b"}\n",
    b'{"type": "request", "protocol": 1, "content": {"width": 1e999}}\n',
    b'{"type": "request", "name": "\xff\xfe"}\n',
])
def test_deep_nesting_huge_numbers_and_bad_bytes_are_bad_requests(line):
    with pytest.raises(ProtocolError):
        protocol.read_request(io.BytesIO(line))


def test_the_worker_answers_a_list_for_a_string_with_bad_request(tmp_path):
    w = run_worker(tmp_path, _header_with(content__format=["u8"]))
    assert_one_error(w, "bad_request", "format")


# -- styles sent as pixels -----------------------------------------------------------------------


def _pixel_request(*styles, preview=None) -> bytes:
    return request(CONTENT, W, H, 3, "u8", styles=list(styles), preview=preview)


@pytest.mark.parametrize("channels, fmt", [(1, "u8"), (2, "u16"), (3, "f32"), (4, "u16")])
def test_a_style_as_pixels_is_read_with_its_samples(channels, fmt):
    """A layer sent as samples, beside a style file: each gets its own bytes of the payload."""
    layer = pixel_style("Layer 1", gradient(24, 18, channels, fmt), fmt)
    parsed = protocol.read_request(io.BytesIO(_pixel_request(("starry.png", b"png bytes"),
                                                             layer)))
    file_style, pixel = parsed.styles
    assert not file_style.is_pixels and parsed.style_data[0] == b"png bytes"
    assert pixel.is_pixels and (pixel.width, pixel.height, pixel.channels, pixel.format) == (
        24, 18, channels, fmt)
    assert parsed.style_data[1] == layer[1]
    assert "'Layer 1' (24x18" in parsed.summary()


def test_a_tiny_style_layer_is_one_bad_image_error_naming_it():
    layer = pixel_style("Thumbnail", gradient(4, 4, 3, "u8"), "u8")
    with pytest.raises(ImageError, match="'Thumbnail' is 4x4 pixels; it needs at least 16x16"):
        protocol.read_request(io.BytesIO(_pixel_request(layer)))
    assert protocol.MIN_STYLE_SIDE == images.MIN_SIDE


@pytest.mark.parametrize("change, kind, words", [
    ({"size": 1}, "bad_request", "declares a size of 1"),
    ({"size": True}, "bad_request", "declares a size of True"),
    ({"format": "u32"}, "bad_request", '"format"'),
    ({"channels": 5}, "bad_request", '"channels"'),
    ({"width": 0}, "bad_request", '"width"'),
    ({"width": protocol.MAX_SIDE + 1}, "too_large", '"width"'),
    ({"width": 20000, "height": 20000, "channels": 4, "format": "f32"}, "too_large",
     "over the limit"),
    ({"depth": 8}, "bad_request", "'depth'"),
])
def test_a_bad_pixel_style_description_is_one_error_naming_the_style(change, kind, words):
    entry, data = pixel_style("Layer 1", gradient(20, 20, 3, "u8"), "u8")
    with pytest.raises(NSTError) as caught:
        protocol.read_request(io.BytesIO(_pixel_request((dict(entry, **change), data))))
    assert caught.value.kind == kind, caught.value.message
    assert words in caught.value.message and "Layer 1" in caught.value.message


def test_a_pixel_style_lacking_a_field_names_the_field():
    entry, data = pixel_style("Layer 1", gradient(20, 20, 3, "u8"), "u8")
    del entry["format"]
    with pytest.raises(ProtocolError, match="'Layer 1' lacks \"format\""):
        protocol.read_request(io.BytesIO(_pixel_request((entry, data))))


def test_a_pixel_style_whose_bytes_do_not_add_up_is_a_bad_request(tmp_path):
    """The payload is one byte short of what the samples need: named before any work."""
    entry, data = pixel_style("Layer 1", gradient(20, 20, 4, "u16"), "u16")
    w = run_worker(tmp_path, _pixel_request((entry, data[:-1])))
    assert_one_error(w, "bad_request", "payload", str(len(CONTENT) + len(data)))


def test_the_worker_refuses_a_tiny_style_layer_before_any_work(tmp_path):
    w = run_worker(tmp_path, _pixel_request(pixel_style("Layer 7", gradient(4, 4, 4, "f32"),
                                                        "f32")))
    assert_one_error(w, "bad_image", "'Layer 7'", "4x4")
    assert w.proc.returncode == ImageError.exit_code
    assert "stylizing" not in w.log_text()


@pytest.mark.parametrize("fmt", ["u8", "u16", "f32"])
def test_pixel_styles_convert_like_the_content_with_alpha_over_white(fmt):
    """Grey becomes RGB, 16 bits keep their levels, transparent pixels become white (as a style
    file's), half-transparent ones half way to white."""
    values = gradient(20, 16, 2, fmt)
    values[0, 0, 1], values[0, 1, 1], values[0, 2, 1] = 0.0, 0.5, 1.0
    parsed = protocol.read_request(io.BytesIO(_pixel_request(pixel_style("grey", values, fmt))))
    rgb = pixels.style_rgb(parsed.styles[0], parsed.style_data[0])
    assert rgb.shape == (16, 20, 3) and rgb.dtype == np.float32
    assert (rgb[..., 0] == rgb[..., 2]).all()
    grey = values[..., 0]
    tolerance = {"u8": 1 / 255, "u16": 1 / 65535, "f32": 1e-6}[fmt]
    assert rgb[0, 0, 0] == 1.0
    assert abs(rgb[0, 1, 0] - (grey[0, 1] * 0.5 + 0.5)) <= tolerance
    assert abs(rgb[0, 2, 0] - grey[0, 2]) <= tolerance
    if fmt == "u16":
        assert len(np.unique(rgb)) > 256  # not through 8 bits


# -- previews ------------------------------------------------------------------------------------


@pytest.mark.parametrize("preview, size", [(None, None), ({}, protocol.PREVIEW_SIZE),
                                           ({"size": 64}, 64), ({"size": 512}, 512)])
def test_a_preview_is_read_with_its_size(preview, size):
    data = _pixel_request(("starry.png", b"png"), preview=preview)
    parsed = protocol.read_request(io.BytesIO(data))
    assert parsed.preview == size
    assert ("preview of" in parsed.summary()) == (size is not None)


@pytest.mark.parametrize("preview, words", [
    ({"size": 32}, '"size" must be a whole number from 64 to 512'),
    ({"size": 2048}, "over the limit of 512"),
    ({"size": "256"}, '"size"'),
    ({"width": 256}, "'width'"),
    (256, '"preview" must be a JSON object'),
])
def test_a_bad_preview_is_one_bad_request_naming_it(preview, words):
    with pytest.raises(ProtocolError) as caught:
        protocol.read_request(io.BytesIO(_pixel_request(("s.png", b"png"), preview=preview)))
    assert words in caught.value.message and "preview" in caught.value.message
