"""The batch's record of what it has made, so a re-run skips finished results. It lives in OUTDIR
(.nst-batch.jsonl): one line per result written, with a fingerprint of what made it (the
options, the input and style files, the format) and the output's own stamp, so a result changed
since, deleted or made with other options is painted again. An output counts by its content
(size, then time or else a hash), so a copied OUTDIR (`cp -r`: new times and inodes) is not
painted again. Lines are appended (a 10,000-frame
batch does not rewrite the record 10,000 times); the last line for an output counts, and a line
cut short by a crash is ignored. One batch at a time may use an OUTDIR (a lock says so)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

from ..errors import ImageError
from ..images import write_atomic
from ..options import NOT_AFFECTING_RESULT, Options
from ..weights import file_stamp

log = logging.getLogger(__name__)

NAME = ".nst-batch.jsonl"
LOCK = ".nst-batch.lock"
VERSION = 1


def fingerprint(options: Options, content: Path, style: Path, fmt: str, before: str = "") -> str:
    """What a result depends on. The files count by their stamp (size, time, inode), so a batch
    of big photos is not re-read to be checked. `before`: --sequence's previous frame's."""
    made_of = {
        "version": VERSION,
        "options": {k: v for k, v in asdict(options).items() if k not in NOT_AFFECTING_RESULT},
        "content": _stamp(content), "style": _stamp(style), "format": fmt, "before": before,
    }
    text = json.dumps(made_of, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


class Manifest:
    def __init__(self, outdir: Path):
        self.path = outdir / NAME
        self.entries = self._read()
        self._lock = None

    def __enter__(self):
        """Hold OUTDIR for this batch: a second batch into it at the same time is refused."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one batch per folder is on the user
            return self
        self._lock = open(self.path.parent / LOCK, "a")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise ImageError(f"another nst batch is writing into {self.path.parent}; wait for "
                             "it to finish or choose another output folder") from None
        self.entries = self._read()  # what the batch before us recorded
        self._compact()
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            self._lock.close()  # releases the lock

    def is_done(self, key: str, print_: str) -> bool:
        entry = self.entries.get(key)
        if entry is None or entry.get("fingerprint") != print_:
            return False
        path = self.path.parent / key
        if entry.get("stamp") is not None:  # a record from before 0.9: size, time, inode
            return entry["stamp"] == _stamp(path)
        try:
            st = os.stat(path)
        except OSError:
            return False
        if st.st_size != entry.get("size"):
            return False
        if st.st_mtime_ns == entry.get("mtime_ns"):
            return True  # the usual re-run: nothing read
        # Touched or copied: the same bytes still count (and the new time is recorded).
        if _digest(path) != entry.get("sha256"):
            return False
        self.record(key, print_)
        return True

    def record(self, key: str, print_: str) -> None:
        """After the output is written: remember it (an interrupted record loses at most this
        line, and the image is then painted again)."""
        path = self.path.parent / key
        st = os.stat(path)
        entry = {"v": VERSION, "key": key, "fingerprint": print_, "size": st.st_size,
                 "mtime_ns": st.st_mtime_ns, "sha256": _digest(path)}
        self.entries[key] = entry
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _read(self) -> dict:
        entries, self.lines = {}, 0
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    self.lines += 1
                    # Garbage of any kind is skipped, 100,000 nested brackets included.
                    with contextlib.suppress(ValueError, TypeError, AttributeError,
                                             RecursionError):
                        entry = json.loads(line)
                        if entry.get("v") == VERSION and isinstance(entry.get("key"), str):
                            entries[entry["key"]] = entry
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("%s is unreadable (%s); every image will be painted again", self.path, e)
        return entries

    def _compact(self) -> None:
        """One line per output again, when re-runs have piled up lines (atomically)."""
        if self.lines > 2 * len(self.entries) + 100:
            text = "".join(json.dumps(e) + "\n" for e in self.entries.values())
            write_atomic(self.path, lambda f: f.write(text.encode()))


def _digest(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _stamp(path: Path) -> list[int] | None:
    stamp = file_stamp(path)
    return None if stamp is None else list(stamp)
