"""The worker end to end: real `python -m nst_core.worker` processes, the real engine and weights,
small images (about a second of engine time each)."""

from __future__ import annotations

import ctypes.util
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from nst_core import protocol

from .worker_client import (
    FAST,
    LONG,
    ROOT,
    WORKER,
    Worker,
    engine_run,
    from_samples,
    gradient,
    pixel_style,
    request,
    run_worker,
    style_png,
    style_values,
    to_samples,
)

pytestmark = engine_run
STOP_WITHIN_S = 5.0  # generous: the worker promises one second


def result_of(worker: Worker, width: int, height: int, channels: int, fmt: str) -> np.ndarray:
    """Checks the whole conversation of a successful run; returns the result's samples."""
    assert worker.proc.returncode == 0, worker.log_text()
    types = worker.types()
    assert types[-1] == "result", worker.log_text()
    assert set(types[:-1]) == {"progress"}
    progress = [m for m, _ in worker.messages[:-1]]
    fractions = [m["fraction"] for m in progress]
    assert fractions == sorted(fractions), "progress went backwards"
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    phases = [m["phase"] for m in progress]
    assert phases[0] == "loading" and "stylizing" in phases and phases[-1] == "finishing"
    for m in progress:
        assert {"scale", "scales", "iteration", "iterations", "loss", "eta_s",
                "elapsed_s"} <= set(m)
    header, payload = worker.messages[-1]
    assert (header["width"], header["height"], header["channels"], header["format"]) == (
        width, height, channels, fmt)
    assert len(payload) == width * height * channels * protocol.SAMPLE_BYTES[fmt]
    return from_samples(payload, fmt, height, width, channels)


def test_u8_rgb_is_stylised_at_the_layer_size(tmp_path):
    """48 px engine size, a 40x32 layer: the result comes back at 40x32, visibly changed."""
    w, h = 40, 32
    content = gradient(w, h, 3, "u8")
    options = dict(FAST, iterations=10)  # enough for a visible change
    worker = run_worker(tmp_path, request(to_samples(content, "u8"), w, h, 3, "u8",
                                          options=options))
    out = result_of(worker, w, h, 3, "u8").astype(np.float64) / 255
    assert np.abs(out - content).mean() > 0.04, "the result looks like the content"
    assert out.std() > 0.02
    log = worker.log_text()
    assert "request: 40x32 RGB u8" in log and "stylizing on cpu" in log
    assert "resizing the engine's 48x38 result to 40x32" in log


def test_u16_rgba_keeps_alpha_and_16_bit_precision(tmp_path):
    w, h = 36, 30
    content = gradient(w, h, 4, "u16")
    data = to_samples(content, "u16")
    worker = run_worker(tmp_path, request(data, w, h, 4, "u16"))
    out = result_of(worker, w, h, 4, "u16")
    original = from_samples(data, "u16", h, w, 4)
    assert np.array_equal(out[..., 3], original[..., 3]), "alpha changed"
    colour = out[..., :3]
    # Through 8 bits every sample would be a multiple of 257 with at most 256 levels.
    assert np.mean(colour % 257 != 0) > 0.5
    assert len(np.unique(colour)) > 256


def test_f32_grey_out_of_range_samples(tmp_path):
    """Grey f32 with samples below 0, above 1 and a NaN: stylised as RGB, returned as one
    channel of luminance, all in 0..1."""
    w, h = 32, 32
    content = gradient(w, h, 1, "f32") * 2.0 - 0.5
    content[0, 0, 0] = np.nan
    worker = run_worker(tmp_path, request(to_samples(content, "f32"), w, h, 1, "f32"))
    out = result_of(worker, w, h, 1, "f32")
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.std() > 0.02


def test_mask_confines_alpha_with_feathering(tmp_path):
    """Selection: left half unselected, right half selected, a half-selected (feathered)
    column between. Outside the selection the result is transparent. u8 in, u16 out."""
    w, h = 40, 32
    content = gradient(w, h, 4, "u8")
    content[..., 3] = 1.0
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:, w // 2:] = 255
    mask[:, w // 2] = 128
    data = request(to_samples(content, "u8"), w, h, 4, "u8", mask=mask.tobytes(),
                   result_format="u16")
    out = result_of(run_worker(tmp_path, data), w, h, 4, "u16")
    alpha = out[..., 3]
    assert (alpha[:, :w // 2] == 0).all()
    assert (alpha[:, w // 2 + 1:] == 65535).all()
    assert (alpha[:, w // 2] == round(128 / 255 * 65535)).all()


def test_mask_on_a_layer_without_alpha_keeps_unselected_pixels(tmp_path):
    w, h = 40, 32
    data = to_samples(gradient(w, h, 3, "u8"), "u8")
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:, w // 2:] = 255
    out = result_of(run_worker(tmp_path, request(data, w, h, 3, "u8", mask=mask.tobytes())),
                    w, h, 3, "u8")
    original = from_samples(data, "u8", h, w, 3)
    assert np.array_equal(out[:, :w // 2], original[:, :w // 2])
    assert not np.array_equal(out[:, w // 2:], original[:, w // 2:])


# -- stopping ------------------------------------------------------------------------------------


def start_long_run(tmp_path, wait_for="stylizing") -> Worker:
    worker = Worker(tmp_path / "worker.log")
    worker.send(request(to_samples(gradient(40, 32, 3, "u8"), "u8"), 40, 32, 3, "u8",
                        options=LONG))
    started = worker.until(lambda m: m["type"] == "progress" and m["phase"] == wait_for)
    assert started, worker.log_text()
    return worker


def assert_stopped_cancelled(worker: Worker, elapsed) -> None:
    assert elapsed is not None and elapsed < STOP_WITHIN_S, (
        f"the worker did not stop within {STOP_WITHIN_S} s; log:\n{worker.log_text()}")
    assert "result" not in worker.types()
    assert worker.proc.returncode != 0


def test_cancel_message_stops_the_run(tmp_path):
    worker = start_long_run(tmp_path)
    worker.cancel()
    assert_stopped_cancelled(worker, worker.wait_exit(30))
    final = worker.final()
    assert final["type"] == "error" and final["kind"] == "cancelled"
    assert "asked the core to stop" in final["message"]


def test_cancel_while_loading_stops_too(tmp_path):
    """Cancelled before the engine's loop polls should_stop: the one-second guard ends it."""
    worker = start_long_run(tmp_path, wait_for="loading")
    worker.cancel()
    assert_stopped_cancelled(worker, worker.wait_exit(30))
    assert worker.final()["kind"] == "cancelled"


def test_stdin_closed_mid_run_stops_the_worker(tmp_path):
    worker = start_long_run(tmp_path)
    worker.proc.stdin.close()
    assert_stopped_cancelled(worker, worker.wait_exit(30))
    assert worker.final()["kind"] == "cancelled"
    assert "closed its connection" in worker.log_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="shrinks a pipe (Linux fcntl)")
@pytest.mark.parametrize("how", ["cancel", "close stdin"])
def test_stop_works_while_the_plug_in_is_not_reading(tmp_path, how):
    """A plug-in busy elsewhere stops reading: the core's stdout pipe fills and its progress
    write blocks. A cancel or the end of stdin must still end the core within a second."""
    import fcntl
    import termios

    worker = Worker(tmp_path / "worker.log")
    fcntl.fcntl(worker.proc.stdout.fileno(), 1031, 4096)  # F_SETPIPE_SZ: fills in ~2 s
    worker.send(request(to_samples(gradient(40, 32, 3, "u8"), "u8"), 40, 32, 3, "u8",
                        options=LONG))

    def queued() -> int:
        n = bytearray(4)
        fcntl.ioctl(worker.proc.stdout.fileno(), termios.FIONREAD, n)
        return int.from_bytes(n, sys.byteorder)

    deadline = time.monotonic() + 120
    while queued() < 3500 and worker.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queued() >= 3500 and worker.proc.poll() is None, worker.log_text()
    time.sleep(0.5)  # the core is now blocked writing progress
    t0 = time.monotonic()
    if how == "cancel":
        worker.cancel()
    else:
        worker.proc.stdin.close()
    try:
        worker.proc.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        pytest.fail(f"the worker ignored the {how} while its output was full; log:\n"
                    + worker.log_text())
    assert time.monotonic() - t0 < STOP_WITHIN_S
    assert worker.proc.returncode != 0
    assert "stop requested" in worker.log_text()


@pytest.mark.skipif(os.name != "posix", reason="parent polling is the POSIX mechanism")
def test_parent_killed_mid_run_stops_the_worker(tmp_path):
    """GIMP kills the plug-in: the worker's parent dies while the worker's stdin stays open
    (here the test holds it), so only the parent watch can notice."""
    pid_file = tmp_path / "worker.pid"
    script = ("import subprocess, sys\n"
              "p = subprocess.Popen(sys.argv[2:])\n"
              "open(sys.argv[1], 'w').write(str(p.pid))\n"
              "p.wait()\n")
    log = tmp_path / "worker.log"
    with open(log, "wb") as err:
        parent = subprocess.Popen([sys.executable, "-c", script, str(pid_file)] + WORKER,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                  cwd=ROOT)
    try:
        request_bytes = request(to_samples(gradient(40, 32, 3, "u8"), "u8"), 40, 32, 3, "u8",
                                options=LONG)
        parent.stdin.write(request_bytes)
        parent.stdin.flush()
        while True:  # the worker writes straight into the pipe we read
            m = protocol.read_header(parent.stdout)
            assert m is not None, log.read_text()
            protocol.read_payload(parent.stdout, m)
            if m["type"] == "progress" and m["phase"] == "stylizing":
                break
        worker_pid = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        t0 = time.monotonic()
        eof = threading.Event()
        seen = []

        def drain():
            while (m := protocol.read_header(parent.stdout)) is not None:
                seen.append(m["type"])
                protocol.read_payload(parent.stdout, m)
            eof.set()

        threading.Thread(target=drain, daemon=True).start()
        assert eof.wait(STOP_WITHIN_S), "the worker outlived its parent:\n" + log.read_text()
        while time.monotonic() - t0 < STOP_WITHIN_S:
            try:
                if psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the worker process still runs after its parent died")
        assert "result" not in seen
        assert "the core's parent process) has gone" in log.read_text()
    finally:
        parent.kill()
        parent.wait()
        parent.stdin.close()
        parent.stdout.close()
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def test_an_estimate_gives_times_per_preset_and_an_automatic_size(tmp_path):
    """What the GIMP dialog shows: seconds growing with the size, the layer's own size last,
    and the largest size that fits the time limit."""
    message = {"type": "estimate", "protocol": protocol.VERSION, "options": {"device": "cpu"},
               "content": {"width": 1200, "height": 800}, "auto_seconds": 60}
    w = run_worker(tmp_path, json.dumps(message).encode() + b"\n")
    assert w.proc.returncode == 0, w.log_text()
    (answer,) = [m for m, _ in w.messages]
    assert answer["type"] == "estimate" and "cpu" in answer["device"]
    for preset, rows in answer["table"].items():
        sizes, seconds = zip(*rows)
        assert sizes[-1] == 1200 and list(sizes) == sorted(sizes)
        assert list(seconds) == sorted(seconds) and seconds[0] > 0
        assert 16 <= answer["auto_size"][preset] <= 1200
    assert answer["auto_size"]["draft"] >= answer["auto_size"]["high"]


def test_automatic_size_fits_the_time_limit(tmp_path):
    """auto_seconds: the core picks the size; the result still covers the layer."""
    data = request(to_samples(gradient(40, 32, 3, "u8"), "u8"), 40, 32, 3, "u8",
                   options=dict(FAST, size=None), header={"auto_seconds": 1e6})
    w = run_worker(tmp_path, data)
    assert result_of(w, 40, 32, 3, "u8").shape == (32, 40, 3)
    assert "automatic size: 40 px" in w.log_text()  # the layer's own, never larger


def test_a_bad_estimate_request_is_one_clear_error(tmp_path):
    message = {"type": "estimate", "protocol": protocol.VERSION, "content": {"width": "big"}}
    w = run_worker(tmp_path, json.dumps(message).encode() + b"\n")
    assert w.final()["type"] == "error" and w.final()["kind"] == "bad_request"
    assert '"height"' in w.final()["message"] or '"width"' in w.final()["message"]


# -- styles sent as pixels -----------------------------------------------------------------------


def stylised(tmp_path, name: str, style) -> np.ndarray:
    """The result of a small run of the same content with this one style."""
    data = request(to_samples(gradient(40, 32, 3, "u8"), "u8"), 40, 32, 3, "u8", styles=[style])
    return result_of(run_worker(tmp_path, data, name=name), 40, 32, 3, "u8").astype(np.float64)


def png_of(values: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.round(values * 255).astype(np.uint8).squeeze(), mode).save(buf, "PNG")
    return buf.getvalue()


def test_a_style_sent_as_pixels_paints_like_the_same_picture_sent_as_a_file(tmp_path):
    """A layer of an open image sent as samples (u8 RGB, u16 RGBA) gives the file's result."""
    picture = style_values()
    from_file = stylised(tmp_path, "file", ("style.png", style_png()))
    opaque = np.concatenate([picture, np.ones_like(picture[..., :1])], axis=2)
    for name, values, fmt in [("u8", picture, "u8"), ("u16", opaque, "u16")]:
        out = stylised(tmp_path, name, pixel_style(f"Layer {name}", values, fmt))
        assert np.abs(out - from_file).max() <= 2, name  # 8-bit rounding at most


def test_a_transparent_grey_style_layer_is_composited_over_white_like_a_file(tmp_path):
    """f32 grey+alpha, half transparent: the same as a grey PNG with that transparency."""
    values = np.zeros((48, 48, 2))
    values[..., 0] = np.round(style_values(48)[..., 0] * 255) / 255
    values[..., 1] = np.where(np.arange(48) < 24, 1.0, 0.0)[None, :]
    from_file = stylised(tmp_path, "file", ("grey.png", png_of(values, "LA")))
    out = stylised(tmp_path, "f32", pixel_style("Grey layer", values, "f32"))
    assert np.abs(out - from_file).max() <= 2


# -- previews ------------------------------------------------------------------------------------


def images_of(worker: Worker) -> list[tuple[dict, np.ndarray]]:
    return [(m, from_samples(p, "u8", m["height"], m["width"], 3).astype(np.float64) / 255)
            for m, p in worker.messages if m["type"] == "image"]


# Three scales (48, 68 and 96 px), a few iterations each: a preview's shape in miniature. Adam:
# two processes' float sums differ in the last bits, which plain L-BFGS can blow up into
# different pictures at this size; Adam's bounded steps keep them alike.
PREVIEW = dict(FAST, iterations=24, min_size=48, optimizer="adam")


def test_a_preview_streams_the_painting_then_a_small_rgb_result(tmp_path):
    """A 192x128 RGBA u16 layer with a selection and an f32 result asked: the preview is a
    96 px RGB u8 painting of it (mask and result format are for the real run) with the run's
    own iterations, whose streamed images move away from the content as the steps grow."""
    w, h = 192, 128
    content = gradient(w, h, 4, "u16")
    mask = np.full((h, w), 255, dtype=np.uint8)
    mask[:, :10] = 0
    data = request(to_samples(content, "u16"), w, h, 4, "u16", mask=mask.tobytes(),
                   result_format="f32", options=PREVIEW, preview={"size": 96})
    worker = run_worker(tmp_path, data)
    assert worker.proc.returncode == 0, worker.log_text()
    assert set(worker.types()) == {"progress", "image", "result"}
    assert worker.types()[-1] == "result"
    streamed = images_of(worker)
    assert len(streamed) >= 2
    steps = [m["step"] for m, _ in streamed]
    assert steps == sorted(steps) and {m["steps"] for m, _ in streamed} == {24}  # the run's
    assert steps[-1] < 24  # the result is the last picture
    for m, _ in streamed:
        assert (m["width"], m["height"], m["channels"], m["format"]) == (96, 64, 3, "u8")
    elapsed = worker.messages[-2][0]["elapsed_s"]
    assert len(streamed) <= 3 * elapsed + 3, "more than ~3 images a second"
    final = result_of_preview(worker, 96, 64)
    small = np.asarray(Image.fromarray(to_8bit(content[..., :3])).resize((96, 64)),
                       dtype=np.float64) / 255
    distances = [np.abs(image - small).mean() for _, image in streamed] + [
        np.abs(final - small).mean()]
    assert distances[0] < distances[-1], distances
    assert np.abs(final - small).mean() > 0.03, "the preview looks like the content"
    assert "preview of 96 px" in worker.log_text()


def test_a_previews_first_picture_is_its_first_scale_painted_before_the_rest_starts(tmp_path):
    """The dialog shows a painting as soon as the smallest scale is done, before the larger
    scales start (and not the photo after a step), and the finished preview is what a run of
    the same settings paints at that size: the same objective, start and iterations."""
    w, h = 96, 64
    content = to_samples(gradient(w, h, 3, "u8"), "u8")
    worker = run_worker(tmp_path, request(content, w, h, 3, "u8", options=PREVIEW,
                                          preview={"size": 96}))
    assert worker.types()[-1] == "result", worker.log_text()
    headers = [m for m, _ in worker.messages]
    first = worker.types().index("image")
    before = [m for m in headers[:first] if m["type"] == "progress"]
    assert {m["scale"] for m in before} <= {None, 0, 1} and before[-1]["scale"] == 1
    scale_1 = before[-1]["iterations"]
    assert headers[first]["step"] == scale_1  # the first scale finished, nothing earlier
    later = [m["scale"] for m in headers[first:] if m["type"] == "progress"]
    assert 2 in later and 3 in later  # the larger scales come after it
    run = run_worker(tmp_path, request(content, w, h, 3, "u8", options=dict(PREVIEW, size=None)),
                     name="run")
    header, payload = run.messages[-1]
    assert (header["width"], header["height"]) == (w, h), run.log_text()
    painted = from_samples(payload, "u8", h, w, 3).astype(np.float64) / 255
    assert np.abs(result_of_preview(worker, w, h) - painted).mean() < 1 / 255


def test_a_full_run_asked_for_images_streams_them_small_and_answers_in_full(tmp_path):
    """"images": {"size": 64} on a 128x80 u16 run: images of at most 64 px while it paints (a
    web page's live picture), then the whole result at the layer's size and format."""
    w, h = 128, 80
    data = request(to_samples(gradient(w, h, 3, "u16"), "u16"), w, h, 3, "u16",
                   options=dict(FAST, size=None, iterations=12, min_size=128),
                   header={"images": {"size": 64}})
    worker = run_worker(tmp_path, data)
    assert worker.proc.returncode == 0, worker.log_text()
    streamed = images_of(worker)
    assert streamed and worker.types()[-1] == "result"
    assert {(m["width"], m["height"]) for m, _ in streamed} == {(64, 40)}
    header, payload = worker.messages[-1]
    assert (header["width"], header["height"], header["format"]) == (128, 80, "u16")
    assert len(payload) == 128 * 80 * 3 * 2


def result_of_preview(worker: Worker, width: int, height: int) -> np.ndarray:
    header, payload = worker.messages[-1]
    assert (header["width"], header["height"], header["channels"], header["format"]) == (
        width, height, 3, "u8")
    return from_samples(payload, "u8", height, width, 3).astype(np.float64) / 255


def to_8bit(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("how", ["cancel", "close stdin"])
def test_a_preview_stops_within_a_second_when_a_newer_one_replaces_it(tmp_path, how):
    """The dialog cancels a running preview (or closes, closing stdin) after its first image."""
    worker = Worker(tmp_path / "worker.log")
    worker.send(request(to_samples(gradient(256, 192, 3, "u8"), "u8"), 256, 192, 3, "u8",
                        preview={"size": 256}))
    first = worker.until(lambda m: m["type"] == "image")
    assert first, worker.log_text()
    if how == "cancel":
        worker.cancel()
    else:
        worker.proc.stdin.close()
    assert_stopped_cancelled(worker, worker.wait_exit(30))
    assert worker.final()["kind"] == "cancelled"


def test_a_preview_keeping_the_content_colours_streams_them_too(tmp_path):
    """colors=luminance: the engine paints luminance only; the streamed images, like the
    result, are in the content's colours, not grey."""
    content = gradient(48, 48, 3, "u8")
    data = request(to_samples(content, "u8"), 48, 48, 3, "u8",
                   options=dict(FAST, colors="luminance"), preview={"size": 64})
    worker = run_worker(tmp_path, data)
    assert worker.types()[-1] == "result", worker.log_text()
    streamed = images_of(worker) + [(None, result_of_preview(worker, 64, 64))]
    chroma = np.abs(content[..., 0] - content[..., 1]).mean()
    for _, image in streamed:
        assert np.abs(image[..., 0] - image[..., 1]).mean() > 0.5 * chroma


@pytest.mark.parametrize("case", ["corrupt style", "cuda", "vgg16 weights"])
def test_errors_that_need_no_network_come_back_before_torch_loads(tmp_path, case):
    """A corrupt style, a CUDA device where no NVIDIA driver is installed, and missing VGG16
    weights are answered without loading torch (seconds, half a minute on a busy machine): the
    worker runs here with a `torch` that cannot be imported, and still names the problem."""
    if case == "cuda" and (Path("/proc/driver/nvidia/version").exists()
                           or ctypes.util.find_library("cuda")):
        pytest.skip("an NVIDIA driver is installed here")
    blocked = tmp_path / "blocked"
    (blocked / "torch").mkdir(parents=True)
    (blocked / "torch" / "__init__.py").write_text("raise ImportError('torch was loaded')\n")
    env = dict(os.environ, PYTHONPATH=f"{blocked}{os.pathsep}{ROOT}",
               NST_HOME=str(tmp_path / "home"))  # no VGG16 weights there
    styles = [("bad.jpg", b"\xff\xd8\xff\xe0 not a jpeg")] if case == "corrupt style" else None
    options = dict(FAST, device="cuda" if case == "cuda" else "cpu",
                   model="vgg16" if case == "vgg16 weights" else "vgg19")
    w = Worker(tmp_path / "worker.log", env=env)
    w.send(request(to_samples(gradient(32, 24, 3, "u8"), "u8"), 32, 24, 3, "u8",
                   styles=styles, options=options))
    assert w.finish(60) != 0
    final = w.final()
    assert final["type"] == "error", final
    words = {"corrupt style": "bad.jpg", "cuda": "no NVIDIA GPU driver",
             "vgg16 weights": "VGG16 weights are not installed"}[case]
    assert words in final["message"] and "torch was loaded" not in w.log_text()
