"""A real uvicorn serving the web app on a free 127.0.0.1 port, in a thread, for tests that
need real connections (a browser, a closed event stream)."""

from __future__ import annotations

import contextlib
import io
import threading
import time

import uvicorn
from PIL import Image

from nst_core.web import listen
from nst_core.web.app import create_app


@contextlib.contextmanager
def running_server(**app_options):
    """Yields (base URL, app); the server and its jobs stop on exit."""
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(**app_options)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
