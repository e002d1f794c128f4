"""The job queue: one job at a time, each run by its own core process (`python -m
nst_core.worker`, the GIMP plug-in's core and protocol).

A job is one run of the core; with a live picture asked for ("images" in the protocol), the
picture being painted streams as "image" messages every few iterations. The result is kept as
a PNG.

Files: each job's uploads and its core's log live in a private folder (mkdtemp, mode 0700)
removed when the job ends; results live in the server's private folder until they expire
(KEEP_S after the job ends) or the server stops.

Closed pages: a job whose last progress stream (the page's EventSource) closed and was not
reopened within `abandon_s` seconds is cancelled. Jobs never watched (scripts) are not.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import protocol
from .pictures import Samples, rgb_png, to_png
from .uploads import Rejected, Submission

log = logging.getLogger("nst_core.web")

WORKER = [sys.executable, "-m", "nst_core.worker"]
KEEP_S = 3600.0  # a finished job and its result are kept this long
ABANDON_S = 5.0  # a watched job with no watcher for this long is cancelled
MAX_WAITING = 32  # queued jobs; more are refused (429) rather than filling the disk with uploads
KILL_AFTER_S = 1.0  # a cancelled core that has not exited by then is killed (it exits in 0.7 s)
JANITOR_S = 0.5
TERMINAL = ("done", "failed", "cancelled")


@dataclass
class Job:
    id: str
    submission: Submission
    folder: Path  # private: uploads and the core's log
    created: float = field(default_factory=time.time)
    status: str = "queued"  # queued, running, done, failed, cancelled
    progress: dict = field(default_factory=dict)
    fraction: float = 0.0
    image: bytes | None = None  # the latest live picture (PNG)
    images: int = 0
    pid: int | None = None
    proc: subprocess.Popen | None = None
    error: dict | None = None
    result_path: Path | None = None
    result_info: dict | None = None
    finished: float | None = None
    cancel_reason: str | None = None
    watchers: int = 0
    watched: bool = False
    unwatched_since: float | None = None
    stdin_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def download_name(self) -> str:
        stem = Path(self.submission.content_name).stem or "picture"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80]
        return f"{safe}-styled.png"


class JobQueue:
    def __init__(self, keep_s: float = KEEP_S, abandon_s: float = ABANDON_S,
                 worker: list[str] | None = None, max_waiting: int = MAX_WAITING):
        self.keep_s, self.abandon_s, self.max_waiting = keep_s, abandon_s, max_waiting
        self.worker = list(worker or WORKER)
        self.jobs: dict[str, Job] = {}
        self.queue: collections.deque[Job] = collections.deque()
        self.current: Job | None = None
        self.lock = threading.Condition()
        self.closed = False
        self.results = Path(tempfile.mkdtemp(prefix="nst-web-results-"))  # mode 0700
        self._threads = [threading.Thread(target=self._runner, name="nst-web-runner",
                                          daemon=True),
                         threading.Thread(target=self._janitor, name="nst-web-janitor",
                                          daemon=True)]
        for t in self._threads:
            t.start()

    # -- the API's side ----------------------------------------------------------------------

    def submit(self, submission: Submission) -> Job:
        folder = Path(tempfile.mkdtemp(prefix="nst-web-job-"))  # mode 0700, ours alone
        job = Job(secrets.token_urlsafe(18), submission, folder)
        # The uploads wait on disk, in the job's folder, not in memory.
        (folder / "content.raw").write_bytes(submission.content.data)
        for i, (_, data) in enumerate(submission.styles):
            (folder / f"style-{i}").write_bytes(data)
        submission.content.data = b""
        submission.styles = [(name, len(data)) for name, data in submission.styles]
        with self.lock:
            if len(self.queue) >= self.max_waiting:  # each waiting job holds its uploads on disk
                shutil.rmtree(folder, ignore_errors=True)
                raise Rejected(f"{len(self.queue)} jobs are waiting already; try again later",
                               "busy", 429)
            if self.closed:
                shutil.rmtree(folder, ignore_errors=True)
                raise RuntimeError("the server is stopping")
            self.jobs[job.id] = job
            self.queue.append(job)
            self.lock.notify_all()
        log.info("job %s queued (position %d)", job.id[:6], self.position(job))
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def position(self, job: Job) -> int:
        """Jobs that run before this one (0: it is running or finished)."""
        with self.lock:
            if job.status != "queued":
                return 0
            ahead = list(self.queue).index(job) if job in self.queue else 0
            return ahead + (self.current is not None)

    def snapshot(self, job: Job) -> dict:
        with self.lock:
            return {
                "id": job.id, "status": job.status, "position": self.position(job),
                "fraction": round(job.fraction, 4),
                "progress": dict(job.progress), "images": job.images, "pid": job.pid,
                "error": job.error, "result": job.result_info,
                "expires_at": job.finished + self.keep_s if job.finished else None,
            }

    def cancel(self, job: Job, reason: str = "you cancelled it") -> None:
        with self.lock:
            if job.status in TERMINAL or job.cancel_reason:
                return
            job.cancel_reason = reason
            if job.status == "queued":
                self.queue.remove(job)
                self._finish(job, "cancelled")
                self.lock.notify_all()
                return
            proc = job.proc
        log.info("job %s: cancelling (%s)", job.id[:6], reason)
        if proc is not None:
            self._stop(job, proc)

    def watch(self, job: Job) -> None:
        with self.lock:
            job.watchers += 1
            job.watched = True
            job.unwatched_since = None

    def unwatch(self, job: Job) -> None:
        with self.lock:
            job.watchers -= 1
            if job.watchers == 0:
                job.unwatched_since = time.monotonic()

    def close(self) -> None:
        """Stop: cancel every job, end the threads, remove every file."""
        with self.lock:
            self.closed = True
            jobs = list(self.queue) + ([self.current] if self.current else [])
        for job in jobs:
            self.cancel(job, "the server stopped")
        with self.lock:
            self.lock.notify_all()
        self._threads[0].join(timeout=5)
        with self.lock:
            for job in self.jobs.values():
                shutil.rmtree(job.folder, ignore_errors=True)
            self.jobs.clear()
        shutil.rmtree(self.results, ignore_errors=True)

    # -- the runner: one job at a time ---------------------------------------------------------

    def _runner(self) -> None:
        while True:
            with self.lock:
                while not self.queue and not self.closed:
                    self.lock.wait()
                if self.closed:
                    return
                job = self.queue.popleft()
                job.status, self.current = "running", job
                self.lock.notify_all()
            try:
                self._run_core(job)
            except Exception as e:  # noqa: BLE001 - one readable error, the server goes on
                log.exception("job %s failed", job.id[:6])
                with self.lock:
                    job.error = {"kind": "internal", "message": f"internal error in the web "
                                 f"server: {type(e).__name__}: {e}"}
            with self.lock:
                self._finish(job, "done" if job.result_path else "failed")
                self.current = None
                self.lock.notify_all()

    def _finish(self, job: Job, status: str) -> None:
        """(lock held) The job's end: its status, and its folder of uploads removed. The status
        changes here only, once its core has gone."""
        if job.cancel_reason and status != "done":
            status = "cancelled"
            job.error = {"kind": "cancelled", "message": f"Cancelled: {job.cancel_reason}."}
        elif status == "failed" and job.error is None:
            job.error = {"kind": "internal", "message": "the core stopped without an answer"}
        job.status, job.finished, job.proc, job.pid = status, time.time(), None, None
        if status == "done":
            job.fraction = 1.0
        shutil.rmtree(job.folder, ignore_errors=True)
        log.info("job %s %s", job.id[:6], status)

    def _request(self, job: Job) -> tuple[dict, list[Path]]:
        s = job.submission
        header = {"type": "request", "protocol": protocol.VERSION, "options": s.options,
                  "content": s.content.header,
                  "styles": [{"name": name, "size": size} for name, size in s.styles],
                  "result": {"format": s.result_format}}
        if s.live:
            header["images"] = {"size": s.live}
        files = [job.folder / "content.raw"] + [job.folder / f"style-{i}"
                                                for i in range(len(s.styles))]
        header["payload"] = sum(f.stat().st_size for f in files)
        return header, files

    def _run_core(self, job: Job) -> None:
        header, files = self._request(job)
        env = dict(os.environ)
        # The job's folder is the core's working directory: nst_core must still import.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root,
                                                          env.get("PYTHONPATH")]))
        with self.lock:
            if job.cancel_reason:
                return
            with open(job.folder / "core.log", "ab") as err:
                proc = subprocess.Popen(self.worker, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=err, cwd=job.folder,
                                        env=env)
            job.proc, job.pid = proc, proc.pid
        try:
            with job.stdin_lock:
                self._send(proc, header, files)
            final = self._read(job, proc)
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=KILL_AFTER_S + 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with self.lock:
                job.proc, job.pid = None, None
        if final is None and not job.cancel_reason:
            with self.lock:
                job.error = {"kind": "internal", "message": "the core stopped without an "
                             f"answer (exit code {proc.returncode}): {self._log_tail(job)}"}

    def _send(self, proc: subprocess.Popen, header: dict, files: list[Path]) -> None:
        try:
            proc.stdin.write(json.dumps(header).encode() + b"\n")
            for f in files:
                with open(f, "rb") as src:
                    shutil.copyfileobj(src, proc.stdin, 1 << 20)
            proc.stdin.flush()
        except (OSError, ValueError):  # the core refused the request and exited (its error
            pass  # follows), or it was killed

    def _read(self, job: Job, proc: subprocess.Popen) -> str | None:
        """Read the core's messages to the end; the final message's type, or None."""
        while True:
            try:
                message = protocol.read_header(proc.stdout)
                if message is None:
                    return None
                payload = protocol.read_payload(proc.stdout, message)
            except protocol.ProtocolError as e:
                log.error("job %s: bad message from the core: %s", job.id[:6], e.message)
                return None
            kind = message["type"]
            if kind == "progress":
                self._progress(job, message)
            elif kind == "image":
                picture = rgb_png(message["width"], message["height"], payload)
                with self.lock:
                    job.image, job.images = picture, job.images + 1
            elif kind == "result":
                self._keep_result(job, message, payload)
                return kind
            elif kind == "error":
                with self.lock:
                    job.error = {"kind": message.get("kind", "internal"),
                                 "message": message.get("message", ""),
                                 "field": message.get("field")}
                return kind

    def _progress(self, job: Job, message: dict) -> None:
        p = {k: message.get(k) for k in protocol.PROGRESS_FIELDS}
        f = float(p.get("fraction") or 0.0)
        with self.lock:
            job.progress, job.fraction = p, max(job.fraction, f)

    def _keep_result(self, job: Job, message: dict, payload: bytes) -> None:
        samples = Samples(message["width"], message["height"], message["channels"],
                          message["format"], payload)
        path = self.results / f"{secrets.token_hex(16)}.png"
        path.write_bytes(to_png(samples))
        with self.lock:
            job.result_path = path
            job.result_info = {"width": samples.width, "height": samples.height,
                               "channels": samples.channels,
                               "bits": 8 if samples.format == "u8" else 16,
                               "bytes": path.stat().st_size, "filename": job.download_name}

    def _stop(self, job: Job, proc: subprocess.Popen) -> None:
        """Ask the core to stop (it exits within a second); kill it if it has not by then. A
        core still receiving its request has started nothing: it is killed at once."""
        if not job.stdin_lock.acquire(timeout=0.05):
            proc.kill()
            return
        try:
            protocol.write_message(proc.stdin, {"type": "cancel"})
            proc.stdin.close()
        except (OSError, ValueError):
            pass
        finally:
            job.stdin_lock.release()

        def kill():
            if proc.poll() is None:
                log.warning("the core (pid %d) did not stop in time: killing it", proc.pid)
                proc.kill()

        threading.Timer(KILL_AFTER_S, kill).start()

    @staticmethod
    def _log_tail(job: Job) -> str:
        try:
            lines = (job.folder / "core.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        return " / ".join(lines[-3:])[-500:]

    # -- the janitor: closed pages and old results ---------------------------------------------

    def _janitor(self) -> None:
        while not self.closed:
            time.sleep(JANITOR_S)
            now_m, now = time.monotonic(), time.time()
            abandoned, expired = [], []
            with self.lock:
                for job in self.jobs.values():
                    if job.status in TERMINAL:
                        if job.finished and now - job.finished > self.keep_s:
                            expired.append(job)
                    elif job.watched and job.watchers == 0 and job.unwatched_since is not None \
                            and now_m - job.unwatched_since > self.abandon_s:
                        abandoned.append(job)
                for job in expired:
                    del self.jobs[job.id]
                    if job.result_path:
                        with contextlib.suppress(OSError):
                            job.result_path.unlink()
            for job in abandoned:
                self.cancel(job, "its page was closed")
