"""Test helpers for the worker and the bridge: requests, a real `python -m nst_core.worker`
process, and its replies. No mocks: every helper talks to a real subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_core import protocol

ROOT = Path(__file__).resolve().parents[1]
WORKER = [sys.executable, "-m", "nst_core.worker"]
# Small and quick: one scale of 48 px, a few iterations (about a second of engine time each).
FAST = {"size": 48, "iterations": 2, "precision": "fp32"}
# Long enough to be cancelled in the middle.
LONG = {"size": 48, "iterations": 5000, "precision": "fp32"}
DTYPES = {"u8": "<u1", "u16": "<u2", "f32": "<f4"}
FULL = {"u8": 255, "u16": 65535, "f32": 1.0}


# The weights are part of the test set-up (`make test` fetches them): missing ones fail loudly.
needs_weights = pytest.mark.usefixtures("real_weights")
engine_run = [pytest.mark.slow, needs_weights]


def style_png(size: int = 64, seed: int = 1) -> bytes:
    """A small colourful style image (diagonal stripes plus noise) as PNG bytes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    stripes = ((x + y) // 6 % 2)[..., None] * np.array([220, 60, 30])
    img = np.clip(stripes + rng.integers(0, 60, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def gradient(width: int, height: int, channels: int, fmt: str) -> np.ndarray:
    """Smooth float content in 0..1 (HxWxC); alpha (if any) is a ramp too."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = [x / max(width - 1, 1), y / max(height - 1, 1), (x + y) / (width + height - 2),
              0.25 + 0.5 * x / max(width - 1, 1)]
    return np.stack(planes[:channels], axis=-1)


def to_samples(values: np.ndarray, fmt: str) -> bytes:
    if fmt == "f32":
        return values.astype("<f4").tobytes()
    return np.round(np.clip(values, 0, 1) * FULL[fmt]).astype(DTYPES[fmt]).tobytes()


def pixel_style(name: str, values: np.ndarray, fmt: str) -> tuple[dict, bytes]:
    """A style sent as samples (HxWxC floats in 0..1): its "styles" entry and its bytes."""
    h, w, c = values.shape
    return {"name": name, "width": w, "height": h, "channels": c, "format": fmt}, \
        to_samples(values, fmt)


def style_values(size: int = 64, seed: int = 1) -> np.ndarray:
    """style_png()'s pixels as floats in 0..1 (HxWx3)."""
    return np.asarray(Image.open(io.BytesIO(style_png(size, seed))), dtype=np.float64) / 255


def from_samples(data: bytes, fmt: str, height: int, width: int, channels: int) -> np.ndarray:
    return np.frombuffer(data, dtype=DTYPES[fmt]).reshape(height, width, channels)


def request(content: bytes, width: int, height: int, channels: int, fmt: str, *,
            styles=None, mask: bytes | None = None, mask_format: str = "u8",
            options=None, result_format: str | None = None, preview=None,
            header=None) -> bytes:
    """A whole request (header line + payload) as bytes; `header` replaces header fields.
    styles: (file name, file bytes) or (a "styles" entry, its bytes), e.g. pixel_style()'s.
    preview: the request's "preview" object (e.g. {"size": 64})."""
    styles = [("style.png", style_png())] if styles is None else styles
    overrides = header or {}
    header = {"type": "request", "protocol": protocol.VERSION,
              "options": dict(FAST if options is None else options),
              "content": {"width": width, "height": height, "channels": channels, "format": fmt},
              "styles": [entry if isinstance(entry, dict) else {"name": entry, "size": len(data)}
                         for entry, data in styles],
              "mask": None if mask is None else {"width": width, "height": height,
                                                 "format": mask_format},
              "result": {"format": result_format or fmt}}
    if preview is not None:
        header["preview"] = preview
    payload = content + b"".join(data for _, data in styles) + (mask or b"")
    header["payload"] = len(payload)
    header.update(overrides)
    return json.dumps(header).encode() + b"\n" + payload


class Worker:
    """A real worker process; stderr goes to `log` (a file)."""

    def __init__(self, log: Path, command=None, env=None, **popen):
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(command or WORKER, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, cwd=ROOT,
                                         env=env, **popen)
        self.messages: list[tuple[dict, bytes]] = []

    def send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:  # the worker rejected the request and exited: fine
            pass

    def cancel(self) -> None:
        self.send(b'{"type": "cancel"}\n')

    def next(self) -> dict | None:
        header = protocol.read_header(self.proc.stdout)
        if header is None:
            return None
        payload = protocol.read_payload(self.proc.stdout, header)
        self.messages.append((header, payload))
        return header

    def until(self, predicate) -> dict | None:
        """Read messages until one satisfies predicate (returned) or the end (None)."""
        while (m := self.next()) is not None:
            if predicate(m):
                return m
        return None

    def finish(self, timeout: float = 300) -> int:
        """Read everything to the end, then close stdin and reap. Kills on timeout (a test
        failure, never a hang)."""
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            while self.next() is not None:
                pass
        finally:
            timer.cancel()
            if not self.proc.stdin.closed:
                self.proc.stdin.close()
        return self.proc.wait(timeout=30)

    def wait_exit(self, timeout: float) -> float | None:
        """Seconds until the process exited (its stdout reached EOF and it was reaped), or
        None if it was still running after `timeout` (then it is killed)."""
        t0 = time.monotonic()
        done = threading.Event()

        def drain():
            try:
                while self.next() is not None:
                    pass
            except protocol.ProtocolError:
                pass
            done.set()

        threading.Thread(target=drain, daemon=True).start()
        ok = done.wait(timeout)
        try:
            self.proc.wait(max(0.1, timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            ok = False
        elapsed = time.monotonic() - t0
        if not ok:
            self.proc.kill()
            self.proc.wait()
            return None
        return elapsed

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def types(self) -> list[str]:
        return [m["type"] for m, _ in self.messages]

    def final(self) -> dict:
        assert self.messages, "the worker sent nothing; log:\n" + self.log_text()
        return self.messages[-1][0]


def run_worker(tmp_path: Path, data: bytes, timeout: float = 180, name="worker",
               close_stdin: bool = False) -> Worker:
    """Send one request and read every reply; returns the finished Worker (.proc.returncode
    is set). close_stdin: close stdin right after sending, as a plug-in that dies does."""
    w = Worker(tmp_path / f"{name}.log")
    w.send(data)
    if close_stdin:
        w.proc.stdin.close()
    w.finish(timeout)
    return w
