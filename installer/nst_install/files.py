"""File helpers: the one atomic write, digests, listings, free space, Python's byte-code."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile

from . import TMP_MARK


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write a whole file or nothing: a temp file in the same folder, then os.replace.

    mkstemp creates the temp file exclusively (O_EXCL, and O_NOFOLLOW where there is one) with
    a random name, so a file or symlink planted at a temp name is never written through; the
    rename replaces a symlink at `path` itself, never its target."""
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + name + TMP_MARK, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def our_temp_files(folder: str) -> list[str]:
    """Temp files an interrupted write left in folder (only names write_atomic makes)."""
    return [os.path.join(folder, n) for n in listdir(folder)
            if n.startswith(".") and TMP_MARK in n]


def listdir(path: str) -> list[str]:
    """Sorted names in a folder; none when it is missing or unreadable."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return sha256_bytes(f.read())
    except OSError:
        return None


def is_within(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def free_gb(path: str) -> float | None:
    """Free space where path is (or would be created), in GB."""
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        return shutil.disk_usage(probe).free / 1e9
    except OSError:
        return None


def bytecode_of(path: str) -> list[str]:
    """Byte-code Python wrote beside one of our .py files (GIMP 2.10's Python 2 writes X.pyc)."""
    if not path.endswith(".py"):
        return []
    folder, stem = os.path.dirname(path), os.path.basename(path)[:-3]
    out = [os.path.join(folder, stem + ext) for ext in (".pyc", ".pyo")]
    cache = os.path.join(folder, "__pycache__")
    out += [os.path.join(cache, n) for n in listdir(cache)
            if n.startswith(stem + ".") and n.endswith((".pyc", ".pyo"))]
    return [p for p in out if os.path.isfile(p)]
