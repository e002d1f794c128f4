"""The batch's record of what it has made, so a re-run skips finished results. It lives in OUTDIR
(.nst-batch.json): for each output, a fingerprint of what made it (the options, the input and
style files, the format) and the output's own stamp, so a result changed since, deleted or
made with other options is painted again."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

from ..images import write_atomic
from ..options import Options
from ..weights import file_stamp

log = logging.getLogger(__name__)

NAME = ".nst-batch.json"
VERSION = 1
# Where and how, not what: changing these does not change the picture.
NOT_IN_FINGERPRINT = {"device", "max_memory"}


def fingerprint(options: Options, content: Path, style: Path, fmt: str, before: str = "") -> str:
    """What a result depends on. The files count by their stamp (size, time, inode), so a batch
    of big photos is not re-read to be checked. `before`: --sequence's previous frame's."""
    made_of = {
        "version": VERSION,
        "options": {k: v for k, v in asdict(options).items() if k not in NOT_IN_FINGERPRINT},
        "content": _stamp(content), "style": _stamp(style), "format": fmt, "before": before,
    }
    text = json.dumps(made_of, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


class Manifest:
    def __init__(self, outdir: Path):
        self.path = outdir / NAME
        self.entries = self._read()

    def is_done(self, key: str, print_: str) -> bool:
        entry = self.entries.get(key)
        return entry is not None and entry.get("fingerprint") == print_ and \
            entry.get("stamp") == _stamp(self.path.parent / key)

    def record(self, key: str, print_: str) -> None:
        """After the output is written: remember it, atomically (an interrupted record loses at
        most this entry, and the image is then painted again)."""
        self.entries[key] = {"fingerprint": print_, "stamp": _stamp(self.path.parent / key)}
        text = json.dumps({"version": VERSION, "outputs": self.entries}, indent=1, sort_keys=True)
        write_atomic(self.path, lambda f: f.write(text.encode()))

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") == VERSION and isinstance(data.get("outputs"), dict):
                return data["outputs"]
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as e:
            log.warning("%s is unreadable (%s); every image will be painted again", self.path, e)
            return {}
        log.warning("%s is from another version; every image will be painted again", self.path)
        return {}


def _stamp(path: Path) -> list[int] | None:
    stamp = file_stamp(path)
    return None if stamp is None else list(stamp)
