"""Writing a file so that readers see the old one or the new one, whole, never a part: the one
atomic write every module uses (pictures, results, weights, the speed record, caches). Errors
are OSError: each caller says what failed in its own words."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def create_temp(path: Path) -> tuple[int, Path]:
    """A new file beside `path` with an unpredictable name, created exclusively (a file or link
    planted there is never opened)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
        getattr(os, "O_BINARY", 0)
    while True:
        # A short prefix of the name: the temporary name stays within the folder's name limit.
        tmp = path.with_name(f".{path.name[:32]}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def write_atomic(path, write) -> Path:
    """`write(file)` into a new file beside `path`, then renamed over it once on disk. A failed
    or interrupted write leaves no temporary file and whatever was at `path` untouched."""
    path = Path(path)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a crash leaves old or new, whole
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
