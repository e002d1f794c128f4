"""The web application: the page and its JSON API (Starlette).

    GET  /                          the page (static/index.html, app.js, style.css)
    GET  /api/options               the options, their defaults, limits and help (Options)
    GET  /api/styles/ID             a built-in style picture (PNG)
    POST /api/session               Authorization: Bearer TOKEN -> the page's cookie
    POST /api/jobs                  multipart: content (file), style (files), builtin (ids),
                                    options (JSON object), live (px; 0: no live picture)
                                    -> 201 {"id", "status", "position", ..., "urls"}
    GET  /api/jobs/ID               the job's state (as each event below)
    GET  /api/jobs/ID/events        the state as server-sent events ("state"), on each change,
                                    until the job ends
    POST /api/jobs/ID/cancel        cancel (queued or running)
    GET  /api/jobs/ID/image         the latest live picture (PNG)
    GET  /api/jobs/ID/result        the result (PNG; 16-bit when the content was)

Errors are {"error": {"kind", "message", "field"}}: 400 bad input, 401 no token, 403 wrong
token, 404 no such job, 409 no result yet, 413 too large.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import protocol
from ..options import INITS, PRESETS, Options, option_fields
from . import auth, builtin
from .jobs import TERMINAL, Job, JobQueue
from .uploads import LIVE_SIZES, Rejected, check_submission

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD = 100 << 20  # bytes per submission, all files together
MAIN_OPTIONS = ("preset", "size", "strength", "colors", "seed")
LIVE_SIZE = 256
SSE_POLL_S = 0.15
SSE_PING_S = 2.0
BROWSER_INT = 2**53 - 1  # the largest whole number a browser's numbers hold exactly
# Submissions read and checked at once; the others wait their turn unread. One can take up to
# about 1 GB (a 100 MB body and its parts, a 100 MP picture decoded and kept at its own size):
# this bounds the server's memory however many arrive together (README, "What happens when
# things go wrong"). Checks take about a second; a job's run is not counted (its own process).
# They run in one thread of their own: memory freed by a check in one of the server's many
# threads stayed with that thread's allocator, and three checks in a row held 1.8 GB, not 1.
CHECKS_AT_ONCE = 1


def limits(meta) -> dict:
    """An option's limits for the form, from its Options field (which validate() enforces)."""
    out = {"min": meta.get("minimum"), "max": meta.get("maximum"), "step": meta.get("step"),
           "exclusive": meta.get("exclusive")}
    if isinstance(out["max"], int):
        out["max"] = min(out["max"], BROWSER_INT)
    return {k: v for k, v in out.items() if v is not None}


def option_schema() -> dict:
    """The form, from Options: name, type, default, help, choices and limits of each option."""
    types = {f.name: f.type for f in dataclasses.fields(Options)}
    out = []
    for name, default, meta in option_fields():
        base = types[name].removesuffix(" | None")
        entry = {"name": name, "type": "list" if base.startswith("tuple[") else base,
                 "nullable": types[name].endswith(" | None"),
                 "default": list(default) if isinstance(default, tuple) else default,
                 "help": meta.get("help", ""), "metavar": meta.get("metavar"),
                 "choices": list(meta["choices"]) if "choices" in meta else None,
                 "main": name in MAIN_OPTIONS, **limits(meta)}
        if base.startswith("tuple["):
            entry["item"] = base[len("tuple["):-len(", ...]")]
        if name == "init":  # on the web: no server-side files
            entry["choices"], entry["metavar"] = list(INITS), None
        if "keep" in (meta.get("metavar") or ""):
            entry["null_word"] = "keep"
        out.append(entry)
    return {"options": out, "main": list(MAIN_OPTIONS),
            "presets": {k: p.description for k, p in PRESETS.items()},
            "styles": builtin.listing(), "max_styles": protocol.MAX_STYLES,
            "live": {"size": LIVE_SIZE, "min": LIVE_SIZES[0], "max": LIVE_SIZES[1]}}


def _error(status: int, message: str, kind: str = "bad_request", field: str | None = None):
    return JSONResponse({"error": {"kind": kind, "message": message, "field": field}},
                        status_code=status)


def create_app(host: str = "127.0.0.1", token: str | None = None,
               max_upload: int = MAX_UPLOAD, queue_options: dict | None = None) -> Starlette:
    """The application. A token is required when one is given or `host` is not local."""
    if token is None and not auth.is_local(host):
        raise ValueError(f"listening on {host} needs a token")
    state: dict = {}
    checking = asyncio.Semaphore(CHECKS_AT_ONCE)
    checker = ThreadPoolExecutor(CHECKS_AT_ONCE, thread_name_prefix="nst-web-check")

    def queue() -> JobQueue:
        return state["queue"]

    def credentials(request: Request) -> int:
        """200 when the request may use the API, else 401 (no token) or 403 (a wrong one)."""
        if token is None:
            return 200
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        given = given.strip() if scheme.lower() == "bearer" else None  # schemes ignore case
        given = given or request.cookies.get(auth.COOKIE)
        if given is None:
            return 401
        return 200 if auth.token_matches(given, token) else 403

    def guard(handler, need_token: bool = True):
        async def guarded(request: Request):
            verdict = credentials(request) if need_token else 200
            if verdict == 401:
                return _error(401, "this server needs its access token (printed when it "
                              "started): Authorization: Bearer TOKEN", "unauthorized")
            if verdict == 403:
                return _error(403, "wrong access token", "forbidden")
            if request.method == "POST" and not _same_origin(request):
                return _error(403, "requests from other web sites are refused", "forbidden")
            try:
                return await handler(request)
            except Rejected as e:
                return JSONResponse(e.to_json(), status_code=e.status)
        return guarded

    def job_of(request: Request) -> Job:
        job = queue().get(request.path_params["job_id"])
        if job is None:
            raise Rejected("no such job (it may have expired)", "not_found", 404)
        return job

    async def page(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def options(request: Request):
        schema = await run_in_threadpool(option_schema)
        schema["token"] = {"required": token is not None,
                           "accepted": credentials(request) == 200}
        return JSONResponse(schema)

    async def style(request: Request):
        style_id = request.path_params["style_id"]
        if style_id not in builtin.STYLES:
            raise Rejected("no such built-in style", "not_found", 404)
        data = await run_in_threadpool(builtin.png, style_id)
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "max-age=86400"})

    async def session(request: Request):
        response = JSONResponse({"ok": True, "token_required": token is not None})
        if token is not None:
            response.set_cookie(auth.COOKIE, token, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
        return response

    async def submit(request: Request):
        async with checking:
            submission = await _read_and_check(request)
        job = await run_in_threadpool(queue().submit, submission)
        return JSONResponse(_state(job), status_code=201)

    async def _read_and_check(request: Request):
        form = await _read_form(request, max_upload)
        try:
            content = form.get("content")
            content_file = (content.filename or "content", await content.read()) \
                if hasattr(content, "read") else None
            styles = [(f.filename or f"style {i}", await f.read())
                      for i, f in enumerate(form.getlist("style"), 1) if hasattr(f, "read")]
            builtins = [str(b) for b in form.getlist("builtin") if isinstance(b, str) and b]
            options_text = form.get("options")
            live = form.get("live")
        finally:
            await form.close()
        if not isinstance(options_text, (str, type(None))) or not isinstance(live,
                                                                               (str, type(None))):
            raise Rejected('"options" and "live" are text fields, not files')
        return await asyncio.get_running_loop().run_in_executor(
            checker, check_submission, content_file, styles, builtins, options_text, live)

    def _state(job: Job) -> dict:
        snap = queue().snapshot(job)
        base = f"/api/jobs/{job.id}"
        snap["urls"] = {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel",
                        "image": f"{base}/image", "result": f"{base}/result"}
        return snap

    async def status(request: Request):
        return JSONResponse(_state(job_of(request)))

    async def cancel(request: Request):
        job = job_of(request)
        await run_in_threadpool(queue().cancel, job)
        return JSONResponse(_state(job))

    async def image(request: Request):
        job = job_of(request)
        if job.image is None:
            raise Rejected("no live picture yet", "not_ready", 404)
        return Response(job.image, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def result(request: Request):
        job = job_of(request)
        if job.status != "done" or job.result_path is None:
            raise Rejected(f"the job is {job.status}: no result" + (
                "" if job.status in TERMINAL else " yet"), "not_ready", 409)
        if not job.result_path.exists():
            raise Rejected("the result has expired", "not_found", 404)
        return FileResponse(job.result_path, media_type="image/png",
                            filename=job.result_info["filename"],
                            headers={"Cache-Control": "no-store"})

    async def events(request: Request):
        job = job_of(request)
        q = queue()

        async def stream():
            q.watch(job)  # here, not before: a client gone before the stream starts never counts
            try:
                yield "retry: 1000\n\n"
                last, pinged = None, time.monotonic()
                while True:
                    snap = q.snapshot(job)
                    if snap != last:
                        last = snap
                        yield f"event: state\ndata: {json.dumps(_state(job))}\n\n"
                        pinged = time.monotonic()
                    if snap["status"] in TERMINAL:
                        return
                    if time.monotonic() - pinged > SSE_PING_S:  # finds closed connections
                        yield ": ping\n\n"
                        pinged = time.monotonic()
                    await asyncio.sleep(SSE_POLL_S)
            finally:
                q.unwatch(job)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state["queue"] = JobQueue(**(queue_options or {}))
        app.state.queue = state["queue"]
        try:
            yield
        finally:
            await run_in_threadpool(state["queue"].close)
            checker.shutdown(wait=False)

    routes = [
        Route("/", page),
        Route("/api/options", guard(options, need_token=False)),
        Route("/api/styles/{style_id}", guard(style, need_token=False)),
        Route("/api/session", guard(session), methods=["POST"]),
        Route("/api/jobs", guard(submit), methods=["POST"]),
        Route("/api/jobs/{job_id}", guard(status)),
        Route("/api/jobs/{job_id}/events", guard(events)),
        Route("/api/jobs/{job_id}/cancel", guard(cancel), methods=["POST"]),
        Route("/api/jobs/{job_id}/image", guard(image)),
        Route("/api/jobs/{job_id}/result", guard(result)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    hosts = auth.allowed_hosts(host)
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts)] if hosts else []
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _same_origin(request: Request) -> bool:
    """A browser's POST from another site carries its Origin: refuse it (scripts send none)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin.split("://", 1)[-1].rstrip("/") == request.headers.get("host", "")


async def _read_form(request: Request, limit: int):
    """The multipart form, parsed in memory: nothing uploaded goes to a temporary file (Starlette
    would spool parts over 1 MB to the system's temporary folder)."""
    kind = request.headers.get("content-type", "")
    if not kind.lower().startswith("multipart/form-data"):  # media types ignore case
        raise Rejected("send a job as multipart/form-data (content, style, options, live)")
    body = await _read_limited(request, limit)
    boundary = re.search(r'boundary="?([^";]+)', kind, re.IGNORECASE)
    # A body cut short would parse without its last field (a 32 px draft run at the defaults).
    if boundary and f"--{boundary.group(1)}--".encode() not in body:
        raise Rejected("the form is cut off: it has no closing boundary")

    class InMemory(MultiPartParser):
        spool_max_size = limit + 1

    async def chunks():
        yield body

    try:
        return await InMemory(request.headers, chunks(), max_files=protocol.MAX_STYLES + 1,
                              max_fields=64).parse()
    except MultiPartException as e:
        raise Rejected(f"the form could not be read: {e.message}") from None


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes."""
    too_large = Rejected(f"the upload is over the limit of {limit / (1 << 20):.3g} MB",
                         "too_large", 413)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:  # one line, not the ASGI server's traceback for each
        log.info("a client left during its upload (after %d bytes); nothing was queued", size)
        raise Rejected("the upload was cut off (the client left)") from None
    return b"".join(chunks)
