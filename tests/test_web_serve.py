"""`nst serve` itself: what it prints, the token rule off this machine, its errors, and the
message when the [web] extra is missing. A real server process; no engine runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.worker_client import ROOT

pytest.importorskip("uvicorn")
NST = [sys.executable, "-m", "nst_core"]


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(NST + ["serve", "--port", "0", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def first_lines(proc: subprocess.Popen, until: str, timeout=30) -> str:
    text, deadline = "", time.monotonic() + timeout
    while until not in text:
        assert time.monotonic() < deadline, text
        line = proc.stdout.readline()
        assert line, f"nst serve exited: {proc.wait()} {proc.stderr.read()}"
        text += line
    return text


def status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()


def port_of(text: str) -> int:
    import re

    return int(re.search(r":(\d+)/?", text.split("\n")[0]).group(1))


def test_local_by_default_no_token(tmp_path):
    proc = start()
    try:
        text = first_lines(proc, "Ctrl+C")
        assert "http://127.0.0.1:" in text and "this machine only" in text
        port = port_of(text)
        assert status(f"http://127.0.0.1:{port}/api/jobs/nope") == 404  # no token asked
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/options") as r:
            assert json.load(r)["main"][0] == "preset"
    finally:
        assert stop(proc) == 0


def test_other_address_needs_the_token_from_the_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-for-the-studio\n")
    os.chmod(token_file, 0o600)
    proc = start("--host", "0.0.0.0", "--token-file", str(token_file))
    try:
        text = first_lines(proc, "Ctrl+C")
        assert "every request needs the access token" in text and str(token_file) in text
        assert "s3cret" not in text  # a token from a file is not printed
        port = port_of(text)
        url = f"http://127.0.0.1:{port}/api/jobs/nope"
        assert status(url) == 401
        assert status(url, "wrong-token-wrong-token") == 403
        assert status(url, "s3cret-token-for-the-studio") == 404
    finally:
        assert stop(proc) == 0


def test_made_up_token_is_printed():
    proc = start("--host", "0.0.0.0")
    try:
        text = first_lines(proc, "Ctrl+C")
        token = text.split("token: ", 1)[1].split()[0]
        assert len(token) >= 24 and f"#token={token}" in text
        assert status(f"http://127.0.0.1:{port_of(text)}/api/jobs/x", token) == 404
    finally:
        stop(proc)


def test_errors_are_one_line(tmp_path):
    short = tmp_path / "short"
    short.write_text("abc\n")
    r = subprocess.run(NST + ["serve", "--token-file", str(short)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "at least 16 characters" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run(NST + ["serve", "--port", str(port)], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in r.stderr


def test_missing_web_extra_says_what_to_install():
    code = ("import sys; sys.modules['uvicorn'] = None; from nst_core.cli import main; "
            "sys.exit(main(['serve']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "pip install neural-style-gimp[web]" in r.stderr


def bomb_png(width: int, height: int, pixels: bool = True) -> bytes:
    """A black RGB PNG declaring width x height: zero rows compress ~1000:1, so 100 MP is a
    300 KB file. pixels=False: the header alone (nothing decodes; the size must refuse it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)
    rows = b"".join(z.compress(row) for _ in range(height if pixels else 1)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def post_form(url: str, parts: list) -> tuple[int, dict]:
    """parts: (name, file name or None, bytes)."""
    boundary = "nst-test-boundary"
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename
                                                     else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data
                 + b"\r\n")
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's VmHWM")
def test_decompression_bombs_at_once_stay_under_the_stated_memory():
    """README: whatever arrives at once, checking uploads keeps `nst serve` under 1.5 GB. Six
    bombs at once: 100 MP contents kept at their own size (decoded in full, then refused for a
    broken second style, so no job runs) and 361 MP styles (refused from the header)."""
    from concurrent.futures import ThreadPoolExecutor

    content, huge = bomb_png(10_000, 10_000), bomb_png(19_000, 19_000, pixels=False)
    proc = start()
    try:
        url = f"http://127.0.0.1:{port_of(first_lines(proc, 'Ctrl+C'))}/api/jobs"
        keep = ("options", None, b'{"size": null}')
        forms = [[("content", "bomb.png", content), ("style", "s.png", huge), keep],
                 [("content", "bomb.png", content), ("style", "s.png", b"not a picture"), keep]]
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda i: post_form(url, forms[i % 2]), range(6)))
        for (code, body), form in zip(answers, [0, 1] * 3):
            assert code == (413 if form == 0 else 400), body
            assert body["error"]["field"] == "style"
        assert "style image s.png declares 19000x19000" in answers[0][1]["error"]["message"]
        with open(f"/proc/{proc.pid}/status") as f:
            peak_kb = int(f.read().split("VmHWM:")[1].split()[0])
        assert peak_kb < 1.5 * 1024 * 1024, f"peak {peak_kb / 1024:.0f} MB"
    finally:
        assert stop(proc) == 0


def test_sigterm_stops_in_order_with_its_line_and_status_143():
    """A service manager's SIGTERM gets the same orderly stop as Ctrl+C, and says so."""
    proc = start()
    try:
        first_lines(proc, "Ctrl+C")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 143
        assert "nst serve: stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
