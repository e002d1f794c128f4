"""Every change the installer makes goes through one Actions object: it makes the change and
says so, or in a dry run says what it would do and touches nothing. Either way `log` lists
the changes in order, so the steps themselves never ask "is this a dry run?" to change things."""
from __future__ import annotations

import os
import shutil

from .console import say, shell_words
from .files import write_atomic
from .processes import run_stream


class Actions:
    def __init__(self, dry: bool, keep_going: bool = False):
        self.dry = dry
        # keep_going (uninstall): a change that fails is noted in `failed` and the next one is
        # tried, so that one stuck file does not keep everything else installed.
        self.keep_going = keep_going
        self.log: list[str] = []
        self.failed: list[str] = []

    def _act(self, text: str, change, *args) -> bool:
        """Make one change (or say it would be made); True when it was made."""
        self.log.append(text)
        if self.dry:
            say("    [dry run] would " + text)
            return False
        say("    " + text)
        try:
            change(*args)
        except OSError as e:
            if not self.keep_going:
                raise
            self.failed.append(f"{text}: {e.strerror or e}")
            return False
        return True

    def mkdir(self, path: str, mode: int = 0o755) -> bool:
        def make(p: str) -> None:
            os.mkdir(p, mode)
            os.chmod(p, mode)  # exactly this mode, whatever the umask
        return self._act(f"create the folder {path}", make, path)

    def write(self, path: str, data: bytes, mode: int = 0o644) -> bool:
        return self._act(f"write {path} (mode {mode:o})", write_atomic, path, data, mode)

    def move(self, src: str, dst: str, text: str | None = None) -> bool:
        return self._act(text or f"move {src} to {dst}", os.replace, src, dst)

    def remove(self, path: str) -> bool:
        return self._act(f"remove {path}", os.remove, path)

    def rmdir(self, path: str) -> bool:
        return self._act(f"remove the empty folder {path}", os.rmdir, path)

    def rmtree(self, path: str, what: str) -> bool:
        return self._act(f"delete {what} {path}", shutil.rmtree, path)

    def run(self, cmd: list[str], purpose: str) -> tuple[int, list[str]]:
        """Run a long command (pip, a download): its exit status and last lines of output.
        A dry run says it would, and counts it as done."""
        text = f"{purpose}: {shell_words(cmd)}"
        self.log.append(text)
        if self.dry:
            say("    [dry run] would " + text)
            return 0, []
        say(f"    {purpose}")
        return run_stream(cmd)
