"""Every change the installer makes goes through one Actions object: it makes the change and
says so, or in a dry run says what it would do and touches nothing. Either way `log` lists
the changes in order, so the steps themselves never ask "is this a dry run?" to change things.

Probes that only read run in a dry run too, called directly: the base Python's version and
the existing environment's contents (environment), free space for a new environment, nvidia-smi
-L (torch_build), `flatpak info` (plugins), GIMP discovery (gimp). Those a dry run skips go
through `check`: a look at what the changes made, the network, PyTorch's free space, and
`nst weights path`."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from .console import say, shell_words
from .files import listdir, write_atomic
from .processes import run_stream


class Actions:
    def __init__(self, dry: bool, keep_going: bool = False):
        self.dry = dry
        # keep_going (uninstall): a change that fails is noted in `failed` and the next one is
        # tried, so that one stuck file does not keep everything else installed.
        self.keep_going = keep_going
        self.log: list[str] = []
        self.failed: list[str] = []
        self._gone: set[str] = set()   # paths removed (or that would be), for `emptied`

    def _act(self, text: str, change, *args, gone: str | None = None,
             made: str | None = None) -> bool:
        """Make one change (or say it would be made); True when it was made."""
        self.log.append(text)
        if self.dry:
            say("    [dry run] would " + text)
            done = False
        else:
            say("    " + text)
            try:
                change(*args)
            except OSError as e:
                if not self.keep_going:
                    raise
                self.failed.append(f"{text}: {e.strerror or e}")
                return False
            done = True
        if gone:
            self._gone.add(os.path.normpath(gone))
        if made:
            self._gone.discard(os.path.normpath(made))
        return done

    def mkdir(self, path: str, mode: int = 0o755) -> bool:
        def make(p: str) -> None:
            os.mkdir(p, mode)
            os.chmod(p, mode)  # exactly this mode, whatever the umask
        return self._act(f"create the folder {path}", make, path, made=path)

    def write(self, path: str, data: bytes, mode: int = 0o644) -> bool:
        return self._act(f"write {path} (mode {mode:o})", write_atomic, path, data, mode,
                         made=path)

    def move(self, src: str, dst: str, text: str | None = None) -> bool:
        return self._act(text or f"move {src} to {dst}", os.replace, src, dst, gone=src,
                         made=dst)

    def remove(self, path: str) -> bool:
        return self._act(f"remove {path}", os.remove, path, gone=path)

    def rmdir(self, path: str) -> bool:
        return self._act(f"remove the empty folder {path}", os.rmdir, path, gone=path)

    def rmtree(self, path: str, what: str) -> bool:
        return self._act(f"delete {what} {path}", shutil.rmtree, path, gone=path)

    def discard(self, path: str, text: str) -> bool:
        """Roll back a folder this run made: remove what can be, never fail."""
        return self._act(text, shutil.rmtree, path, True, gone=path)

    def emptied(self, folder: str) -> bool:
        """Whether folder is there and holds nothing once this run's removals are made (in a
        dry run: would be)."""
        return os.path.isdir(folder) and os.path.normpath(folder) not in self._gone and all(
            os.path.normpath(os.path.join(folder, n)) in self._gone for n in listdir(folder))

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

    def check(self, probe, *args, planned=None):
        """probe(*args), a look a dry run skips (see above): there it answers `planned`."""
        return planned if self.dry else probe(*args)

    @contextlib.contextmanager
    def scratch_copy(self, folder: str, ignore):
        """A throw-away copy of folder to build from, so that it gets no build/ or *.egg-info;
        a dry run copies nothing and names folder itself."""
        if self.dry:
            yield folder
            return
        with tempfile.TemporaryDirectory(prefix="nst-install-") as tmp:
            copy = os.path.join(tmp, "src")
            shutil.copytree(folder, copy, ignore=ignore)
            yield copy
