"""`nst serve`: a local web page (and JSON API) to paint pictures without GIMP.

Safe by default: it listens on 127.0.0.1; on any other address every API call needs a token
(printed at start, or read from --token-file). Jobs run one at a time, each in its own core
process; see jobs.py for the files it keeps and when a closed page cancels its job. Needs the
[web] extra (starlette, uvicorn, python-multipart), imported only here and below.
"""

from __future__ import annotations

import signal
import socket
import sys

EXTRA_HINT = "pip install neural-style-gimp[web]"


def _missing() -> str | None:
    for module in ("starlette", "uvicorn", "multipart"):
        try:
            __import__(module)
        except ImportError:
            return module
    return None


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket (OSError says why not): bound here, so a busy port is one
    clear message, and a port of 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(host: str = "127.0.0.1", port: int = 8765, token_file: str | None = None) -> int:
    """Run the web server until interrupted; returns the exit code."""
    missing = _missing()
    if missing:
        print(f"nst serve needs the web extra ({missing} is not installed): {EXTRA_HINT}",
              file=sys.stderr)
        return 2
    import uvicorn

    from ..errors import OptionError
    from . import auth

    try:
        token = auth.read_token_file(token_file) if token_file else None
    except OptionError as e:
        print(f"nst: error: {e.message}", file=sys.stderr)
        return 2
    local = auth.is_local(host)
    if token is None and not local:
        token = auth.new_token()
    try:
        sock = listen(host, port)
    except OSError as e:
        print(f"nst: error: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 1
    # uvicorn shuts down in order on SIGINT and SIGTERM, then raises the signal again with the
    # handler that was there before: for SIGTERM that would end the process before the "stopped"
    # line, so ours turns it into an exception (also while torch loads, before uvicorn runs),
    # and the exit status still says SIGTERM (143).
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run(uvicorn, sock, host, local, token, token_file)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(uvicorn, sock, host, local, token, token_file) -> int:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if local:
        print(f"nst serve: open http://{shown}:{port}/ in a browser (this machine only)")
    else:
        print(f"nst serve: listening on {shown}:{port}, reachable from other machines; every "
              "request needs the access token")
        if token_file:
            print(f"  token: the one in {token_file}")
        else:
            print(f"  token: {token}")
            print(f"  open:  http://{'THIS-MACHINE' if host in ('0.0.0.0', '::') else shown}"
                  f":{port}/#token={token}")
    print("  (Ctrl+C stops the server, its jobs and removes their files)", flush=True)
    status = 0
    try:
        from .app import create_app  # torch comes with it: after the quick checks above

        app = create_app(host=host, token=token)
        if _terminated.seen:  # a SIGTERM some import swallowed while torch loaded
            raise _Terminated
        config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=3)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after its orderly shutdown
        pass
    except _Terminated:
        status = 128 + signal.SIGTERM
    print("nst serve: stopped; its jobs were cancelled and their files removed", flush=True)
    return status


class _Terminated(BaseException):  # not Exception: library code's `except Exception` lets it by
    """SIGTERM, raised again by uvicorn after its orderly shutdown."""


def _terminated(signum, frame):
    _terminated.seen = True
    raise _Terminated


_terminated.seen = False
