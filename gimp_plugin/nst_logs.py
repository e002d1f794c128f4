"""The core's logs: one new file per run, in this user's private folder
<tempdir>/neural-style-gimp-<uid>/, kept LOG_KEEP_DAYS days; the bridge's own notes go in
beside the core's stderr, and the last lines join a message when the core fails."""
# Python 2.7 compatible on purpose: no f-strings, no `raise from`, IOError spelled out.
# ruff: noqa: UP003, UP010, UP024, UP025, UP031, B904

from __future__ import absolute_import, division, print_function

import errno
import os
import stat
import tempfile
import time

from nst_base import BridgeError, printable, reason_of, to_text

LOG_DIR_NAME = "neural-style-gimp"
LOG_KEEP_DAYS = 7


def log_dir():
    """This user's log folder. The temp folder is shared on POSIX, so the folder's name holds the
    user id: <tempdir>/neural-style-gimp-<uid>; on Windows the temp folder is the user's own."""
    name = LOG_DIR_NAME
    if hasattr(os, "getuid"):
        name = "%s-%d" % (LOG_DIR_NAME, os.getuid())
    return os.path.join(tempfile.gettempdir(), name)


def _private_folder(path):
    """Makes `path` (0700) if it is missing; True if it is a folder only this user can use: not a
    link, owned by us, closed to group and others. Another user may have made it first (or
    planted a link there): such a folder is left as it is, never changed or written into."""
    try:
        os.mkdir(path, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:  # EEXIST: ours from an earlier run, another run's, or a trap
            raise
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return False
    if hasattr(os, "getuid"):
        return info.st_uid == os.getuid() and not info.st_mode & 0o077
    return True


def new_log():
    """(fd, path) of a new log file in log_dir(), or in a fresh private folder when log_dir()
    is not safe to use. mkstemp: a unique name, created exclusively (O_EXCL, no link followed),
    mode 0600; the name holds the time and our pid."""
    prefix = "core-%s-pid%d-" % (time.strftime("%Y%m%d-%H%M%S"), os.getpid())
    folder, problem = log_dir(), None
    try:
        if _private_folder(folder):
            _prune_logs(folder)
            return tempfile.mkstemp(prefix=prefix, suffix=".log", dir=folder)
        problem = "%s is not a private folder of this user: not used" % folder
    except (IOError, OSError) as e:
        problem = "%s: %s" % (folder, reason_of(e))
    try:
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=".log",
                                    dir=tempfile.mkdtemp(prefix=LOG_DIR_NAME + "-"))
    except (IOError, OSError) as e:
        raise BridgeError("core_crashed", "Cannot create a log file for the neural style core "
                          "(%s; %s)." % (problem, reason_of(e)))
    os.write(fd, note_line(problem))
    return fd, path


def _prune_logs(folder):
    """Deletes this user's log files older than LOG_KEEP_DAYS from our private folder: only
    regular files named like ours (lstat: a link is never followed, nor deleted)."""
    limit = time.time() - LOG_KEEP_DAYS * 86400
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith("core-") and name.endswith(".log"):
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode) and uid in (None, info.st_uid) \
                        and info.st_mtime < limit:
                    os.remove(path)
            except OSError:
                pass


def note_line(text):
    return (u"%s bridge: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), to_text(text))).encode(
        "utf-8", "replace")


def log_note(path, text):
    try:
        with open(path, "ab") as f:
            f.write(note_line(text))
    except Exception:  # noqa: BLE001 - a note in the log must never break the run
        pass


def log_tail(path, lines=6):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return ""
    kept = [line.strip() for line in text.splitlines()
            if line.strip() and " bridge: " not in line]
    return printable(u" | ".join(kept[-lines:]), 1000)
