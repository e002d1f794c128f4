"""The web API (`nst serve`) through Starlette's TestClient: uploads checked before any work,
the token rule, and real jobs in real core processes (tiny and quick: 48-64 px, fp32, a few
iterations)."""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
import time
import warnings

import numpy as np
import psutil
import pytest
from PIL import Image

from tests.conftest import picture, stripes
from tests.web.server import png_bytes, running_server
from tests.worker_client import FAST, LONG, needs_weights

pytest.importorskip("starlette")
with warnings.catch_warnings():  # Starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from nst_core.web.app import create_app  # noqa: E402

LOCAL = "http://127.0.0.1"
QUICK = dict(FAST, preset="draft")
SLOW = dict(LONG, preset="draft")


def files(content: bytes | None = None, styles=None, name="photo.png"):
    content = png_bytes(picture(64, 48)) if content is None else content
    styles = [png_bytes(stripes())] if styles is None else styles
    out = [("content", (name, content, "image/png"))]
    out += [("style", (f"style{i}.png", s, "image/png")) for i, s in enumerate(styles)]
    return out


def submit(client, options=None, live=0, **kw):
    data = {"options": json.dumps(QUICK if options is None else options), "live": str(live)}
    return client.post("/api/jobs", files=files(**kw), data=data)


def follow(client, job: dict) -> list[dict]:
    """Every state the job's event stream sends, to its end."""
    states = []
    with client.stream("GET", job["urls"]["events"]) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line[len("data: "):]))
    return states


def wait_for(client, job: dict, predicate, timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(job["urls"]["self"]).json()
        if predicate(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"timed out; last state {state}")


@pytest.fixture
def client():
    with TestClient(create_app(), base_url=LOCAL) as c:
        yield c


def error_of(response) -> dict:
    return response.json()["error"]


# -- no engine: the form, checks before any work, the token ------------------------------------


def test_options_come_from_options_py(client):
    schema = client.get("/api/options").json()
    by_name = {o["name"]: o for o in schema["options"]}
    from nst_core.options import PRESETS, option_fields

    assert list(by_name) == [name for name, _, _ in option_fields()]
    assert by_name["preset"]["choices"] == list(PRESETS) and by_name["preset"]["main"]
    assert by_name["size"]["default"] == 512 and by_name["size"]["null_word"] == "keep"
    assert by_name["style_layers"]["type"] == "list" and by_name["style_layers"]["item"] == "str"
    assert by_name["init"]["choices"] == ["content", "noise", "style"]  # no server files
    assert schema["main"] == ["preset", "size", "strength", "colors", "seed"]
    assert {s["id"] for s in schema["styles"]} >= {"swirls-night"}
    img = Image.open(io.BytesIO(client.get("/api/styles/swirls-night").content))
    assert img.size == (512, 512)
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "/api/options" in client.get("/static/app.js").text


@pytest.mark.parametrize("kw, status, kind, field", [
    (dict(content=b"not an image at all"), 400, "bad_image", "content"),
    (dict(styles=[b"GIF89a broken"]), 400, "bad_image", "style"),
    (dict(content=png_bytes(picture(12, 12))), 400, "bad_image", "content"),
    (dict(options={"strength": "strong"}), 400, "bad_option", "strength"),
    (dict(options={"size": 8}), 400, "bad_option", "size"),
    (dict(options={"seed": -1}), 400, "bad_option", "seed"),
    (dict(options={"preset": "best"}), 400, "bad_option", "preset"),
    (dict(options={"size": 48, "colour": "x"}), 400, "bad_option", None),
    (dict(options={"init": "/etc/passwd"}), 400, "bad_option", "init"),
    (dict(options={"style_blend": [1, 2]}), 400, "bad_option", "style_blend"),
    (dict(options=["size", 48]), 400, "bad_request", "options"),
    (dict(styles=[]), 400, "bad_request", "style"),
    (dict(live=9999), 400, "bad_request", "live"),
])
def test_bad_submissions_are_one_clear_error(client, kw, status, kind, field):
    r = submit(client, **kw)
    assert r.status_code == status, r.text
    error = error_of(r)
    assert (error["kind"], error["field"]) == (kind, field)
    assert error["message"] and "\n" not in error["message"]
    assert not client.app.state.queue.jobs  # nothing was queued


def test_deeply_nested_options_are_a_400_naming_options(client):
    nested = "[" * 100_000 + "]" * 100_000
    r = client.post("/api/jobs", files=files(), data={"options": nested, "live": "0"})
    assert r.status_code == 400, r.text
    assert error_of(r)["field"] == "options" and not client.app.state.queue.jobs


def test_a_client_leaving_mid_upload_is_one_log_line(caplog):
    """The body stops half-way and the client is gone: one line in the log, no traceback."""
    import asyncio
    import logging

    app = create_app()
    part = b'--x\r\nContent-Disposition: form-data; name="content"; filename="a.png"\r\n\r\n'
    messages = [{"type": "http.request", "body": part + b"\0" * 4096, "more_body": True}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/jobs", "raw_path": b"/api/jobs",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 80),
             "headers": [(b"host", b"127.0.0.1"), (b"content-length", b"1000000"),
                         (b"content-type", b"multipart/form-data; boundary=x")]}
    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))  # raises nothing
    lines = [r for r in caplog.records if "left during its upload" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert not any(r.exc_info for r in caplog.records)


def test_too_large_uploads_are_413():
    with TestClient(create_app(max_upload=50_000), base_url=LOCAL) as c:
        noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
        r = submit(c, content=png_bytes(Image.fromarray(noise)))
        assert r.status_code == 413 and error_of(r)["kind"] == "too_large"
        assert "MB" in error_of(r)["message"]
    with TestClient(create_app(), base_url=LOCAL) as c:  # a small file declaring huge pixels
        bomb = png_bytes(Image.new("L", (12000, 12000)))
        r = submit(c, content=bomb)
        assert r.status_code == 413 and error_of(r)["field"] == "content", r.text


def test_big_parts_are_read_in_memory_and_a_form_is_needed(client, monkeypatch):
    import tempfile

    def no_temporary_files(*a, **kw):  # uploads stay in memory (and the job's folder)
        raise AssertionError("an upload went to a temporary file")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_temporary_files)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_temporary_files)
    noise = np.random.default_rng(0).integers(0, 255, (800, 800, 3), dtype=np.uint8)
    big = png_bytes(Image.fromarray(noise))
    assert len(big) > 1 << 20
    r = submit(client, content=big, options={"strength": -1})
    assert r.status_code == 400 and error_of(r)["field"] == "strength", r.text
    r = client.post("/api/jobs", json={"content": "x"})
    assert r.status_code == 400 and "multipart/form-data" in error_of(r)["message"]


def test_token_off_this_machine():
    with pytest.raises(ValueError):
        create_app(host="0.0.0.0")  # another address without a token: refused
    token = "t" * 24
    with TestClient(create_app(host="0.0.0.0", token=token), base_url="http://10.1.2.3") as c:
        assert c.get("/").status_code == 200  # the page holds no data
        assert c.get("/api/options").json()["token"] == {"required": True, "accepted": False}
        r = submit(c, content=b"x")
        assert r.status_code == 401 and error_of(r)["kind"] == "unauthorized"
        assert c.get("/api/jobs/whatever").status_code == 401
        r = c.post("/api/jobs/whatever/cancel", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 403
        bearer = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/jobs/whatever", headers=bearer).status_code == 404
        # The page trades the token for an HttpOnly cookie (EventSource sends no headers).
        r = c.post("/api/session", headers=bearer)
        assert r.status_code == 200 and "httponly" in r.headers["set-cookie"].lower()
        assert c.get("/api/jobs/whatever").status_code == 404
        assert c.get("/api/options").json()["token"]["accepted"]


def test_local_server_refuses_other_host_names_and_sites(client):
    # A web site whose name resolves to 127.0.0.1 (DNS rebinding) does not reach the API.
    assert client.get("/api/options", headers={"Host": "evil.example"}).status_code == 400
    r = client.post("/api/jobs", headers={"Origin": "http://evil.example"}, data={})
    assert r.status_code == 403


def test_unknown_job_is_404(client):
    for path in ("", "/events", "/image", "/result"):
        assert client.get(f"/api/jobs/nope{path}").status_code == 404
    assert client.post("/api/jobs/nope/cancel").status_code == 404


# -- real jobs -----------------------------------------------------------------------------------


@pytest.mark.slow
@needs_weights
def test_job_progress_live_picture_result_and_expiry():
    with TestClient(create_app(queue_options={"keep_s": 2.0}), base_url=LOCAL) as c:
        r = submit(c, dict(QUICK, iterations=12), live=64)  # images come every 5 iterations
        assert r.status_code == 201, r.text
        job = r.json()
        assert len(job["id"]) >= 24 and job["position"] == 0
        states = follow(c, job)
        assert states[-1]["status"] == "done", states[-1]
        fractions = [s["fraction"] for s in states]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        assert any(0 < f < 1 for f in fractions)
        assert "stylizing" in {s["progress"].get("phase") for s in states}
        assert any(s["progress"].get("eta_s") is not None for s in states)
        assert any(s["pid"] for s in states) and states[-1]["pid"] is None
        assert states[-1]["images"] >= 1  # the picture as it was being painted
        live = Image.open(io.BytesIO(c.get(job["urls"]["image"]).content))
        assert live.size == (48, 36) and live.mode == "RGB"  # no larger than the result

        r = c.get(job["urls"]["result"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert 'filename="photo-styled.png"' in r.headers["content-disposition"]
        result = Image.open(io.BytesIO(r.content))
        assert result.size == (48, 36) and result.mode == "RGB"  # the size option, 8-bit in
        assert states[-1]["result"]["width"] == 48 and states[-1]["result"]["bits"] == 8

        queue = c.app.state.queue
        kept = queue.get(job["id"])
        assert not kept.folder.exists()  # the uploads went with the job's end
        assert stat.S_IMODE(os.stat(queue.results).st_mode) == 0o700
        assert kept.result_path.exists()
        time.sleep(2.0 + 1.0)  # kept for keep_s, then removed (the janitor looks every 0.5 s)
        assert c.get(job["urls"]["result"]).status_code == 404
        assert not kept.result_path.exists()
    assert not queue.results.exists()  # and the server's folder goes when it stops


@pytest.mark.slow
@needs_weights
def test_queue_of_two_then_a_queued_one_cancelled_and_16_bit_result(client):
    grey16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    first = submit(client).json()
    second = submit(client, content=png_bytes(Image.fromarray(grey16))).json()
    third = submit(client).json()
    assert second["status"] == "queued" and second["position"] == 1
    assert third["position"] == 2
    r = client.post(third["urls"]["cancel"])
    assert r.json()["status"] == "cancelled"  # a queued job: at once, no core started
    assert client.get(third["urls"]["result"]).status_code == 409
    states = follow(client, second)
    positions = [s["position"] for s in states if s["status"] == "queued"]
    assert positions and positions[0] == 1
    assert [s["status"] for s in states][-1] == "done", states[-1]
    assert client.get(first["urls"]["self"]).json()["status"] == "done"
    result = Image.open(io.BytesIO(client.get(second["urls"]["result"]).content))
    assert result.mode.startswith("I;16") and result.size == (48, 36)  # 16-bit in, 16-bit out
    assert np.asarray(result).max() > 255


@pytest.mark.slow
@needs_weights
def test_cancel_stops_the_core_within_a_second(client):
    job = submit(client, options=SLOW).json()
    state = wait_for(client, job, lambda s: s["progress"].get("phase") == "stylizing")
    pid = state["pid"]
    folder = client.app.state.queue.get(job["id"]).folder
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700  # private while it runs
    t0 = time.monotonic()
    assert client.post(job["urls"]["cancel"]).status_code == 200
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() - t0 < 1.0, "the core still runs a second after cancel"
        time.sleep(0.02)
    state = wait_for(client, job, lambda s: s["status"] != "running", timeout=5)
    assert state["status"] == "cancelled" and state["error"]["kind"] == "cancelled"
    assert not folder.exists()


@pytest.mark.slow
@needs_weights
def test_a_closed_page_cancels_its_job():
    httpx = pytest.importorskip("httpx")
    with running_server(queue_options={"abandon_s": 1.0}) as (url, app):
        with httpx.Client(base_url=url, timeout=30) as c:
            job = submit(c, options=SLOW).json()
            job2 = submit(c, options=SLOW).json()  # a script's job: never watched, never dropped
            with c.stream("GET", job["urls"]["events"]) as stream:
                for line in stream.iter_lines():
                    if '"phase": "stylizing"' in line:
                        break  # the tab closes
            time.sleep(0.5)  # a reload within abandon_s would keep it
            assert c.get(job["urls"]["self"]).json()["status"] == "running"
            state = wait_for(c, job, lambda s: s["status"] != "running", timeout=10)
            assert state["status"] == "cancelled"
            assert "page was closed" in state["error"]["message"]
            state = wait_for(c, job2, lambda s: s["status"] == "running", timeout=20)
            time.sleep(1.5)
            assert c.get(job2["urls"]["self"]).json()["status"] == "running"
            c.post(job2["urls"]["cancel"])


# -- pictures: 16-bit in, 16-bit out -------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_sixteen_bit_png_writer(channels):
    from nst_core.web.pictures import Samples, to_png

    rng = np.random.default_rng(channels)
    a = rng.integers(0, 65536, (20, 30, channels), dtype=np.uint16)
    data = to_png(Samples(30, 20, channels, "u16", a.astype("<u2").tobytes()))
    with Image.open(io.BytesIO(data)) as img:  # PIL checks the chunks and the zlib stream
        img.load()
        assert img.size == (30, 20)
    png = pytest.importorskip("png")
    w, h, rows, info = png.Reader(bytes=data).asDirect()
    assert info["bitdepth"] == 16 and info["planes"] == channels
    back = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, channels)
    assert np.array_equal(back, a)


@pytest.mark.parametrize("kind", ["png", "tif"])
def test_sixteen_bit_colour_content_is_read_at_16_bits(kind):
    import png  # PIL reads 16-bit colour PNG and TIFF as 8-bit; nst_core.depth does not
    import tifffile

    from nst_core.web.pictures import decode_content

    y, x = np.mgrid[0:48, 0:64]
    a = np.stack([x * 1000, y * 1300, (x + y) * 500], axis=-1).astype(np.uint16)
    buf = io.BytesIO()
    if kind == "png":
        png.Writer(64, 48, greyscale=False, bitdepth=16).write(buf, a.reshape(48, -1))
    else:
        tifffile.imwrite(buf, a, photometric="rgb")
    samples = decode_content(buf.getvalue(), f"deep.{kind}", None)
    assert (samples.format, samples.channels, samples.width) == ("u16", 3, 64)
    got = np.frombuffer(samples.data, "<u2").reshape(48, 64, 3)
    assert np.array_equal(got, a)
    half = decode_content(buf.getvalue(), f"deep.{kind}", 32)  # scaled to the run's size
    assert (half.width, half.height, half.format) == (32, 24, "u16")


def test_a_full_queue_refuses_new_jobs_and_keeps_no_uploads(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where job folders would go
    with TestClient(create_app(queue_options={"max_waiting": 0}), base_url=LOCAL) as c:
        r = submit(c)
        assert r.status_code == 429 and error_of(r)["kind"] == "busy"
        assert "try again later" in error_of(r)["message"]
    assert not list(tmp_path.glob("nst-web-job-*"))


def test_any_local_address_is_served_under_its_own_name():
    with TestClient(create_app(host="127.0.0.2"), base_url="http://127.0.0.2") as c:
        assert c.get("/api/options").status_code == 200


def test_a_cut_off_form_is_refused_and_header_case_is_ignored():
    token = "t" * 24
    body = (b'--b\r\nContent-Disposition: form-data; name="options"\r\n\r\n{"size": 32}\r\n'
            b'--b\r\nContent-Disposition: form-data; name="live"\r\n\r\n0')  # no closing --b--
    with TestClient(create_app(host="0.0.0.0", token=token), base_url="http://10.1.2.3") as c:
        auth = {"Authorization": f"bearer {token}"}  # the scheme's case does not matter
        r = c.post("/api/jobs", content=body,
                   headers={**auth, "Content-Type": "MULTIPART/FORM-DATA; boundary=b"})
        assert r.status_code == 400 and "cut off" in error_of(r)["message"]
        whole = body + b"\r\n--b--\r\n"  # complete, upper case: read (and refused for no content)
        r = c.post("/api/jobs", content=whole,
                   headers={**auth, "Content-Type": "MULTIPART/FORM-DATA; boundary=b"})
        assert r.status_code == 400 and error_of(r)["field"] == "content"
