"""The install manifest: what the installer created, so that --uninstall removes exactly that.

It is also the journal of a run in progress: each change is recorded before it is made and
confirmed after, and the manifest is saved atomically each time, so an interrupted run is
finished by the next one (or undone by --uninstall). In a dry run it is read but never saved."""
from __future__ import annotations

import json
import os
import time

from .errors import InstallError
from .files import listdir, write_atomic

LISTS = ("dirs_created", "venvs_created", "env_markers", "core_installed_into",
         "data_dirs_created")


class Manifest:
    """data["files"]: path -> {"sha256": digest once written by us (None before), "backup":
    where a file that was already there was moved, or None}. The LISTS hold paths."""

    def __init__(self, path: str, read_only: bool = False):
        self.path = path
        self.read_only = read_only
        self.data: dict = {"manifest_version": 1, "state": "none", "files": {}, "weights": None,
                           "venv": None, "source": None}
        self.data.update({key: [] for key in LISTS})
        self.exists = os.path.isfile(path)
        if self.exists:
            self.data.update(self._load())

    def _load(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                loaded = json.load(f)
        except (OSError, ValueError) as e:
            loaded = e
        if not isinstance(loaded, dict) or not isinstance(loaded.get("files", {}), dict) or \
                not all(isinstance(loaded.get(k, []), list) for k in LISTS):
            why = loaded if isinstance(loaded, Exception) else "not a manifest of this installer"
            raise InstallError(
                f"The install manifest {self.path} cannot be read ({why}). Move it away and run "
                "the installer again; files it listed will then be treated as not installed by "
                "it.")
        return loaded

    @property
    def files(self) -> dict:
        return self.data["files"]

    @property
    def state(self) -> str:
        return self.data.get("state", "none")

    def holds_anything(self) -> bool:
        """Whether it records anything installed (else a failed run may drop it)."""
        return any(self.data.get(k) for k in ("files", "dirs_created", "venvs_created",
                                              "env_markers", "core_installed_into", "weights"))

    def add(self, key: str, value: str) -> None:
        if value not in self.data[key]:
            self.data[key].append(value)

    def save(self, state: str | None = None) -> None:
        """Write it (atomically), creating its folder privately, and recording the folders
        created so that --uninstall removes them again."""
        if state:
            self.data["state"] = state
        if self.read_only:
            return
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        missing, d = [], os.path.dirname(self.path)
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            self.add("data_dirs_created", d)
            os.mkdir(d, 0o700)   # it will hold the environment and the weights: the user's only
        text = json.dumps(self.data, indent=1, sort_keys=True) + "\n"
        write_atomic(self.path, text.encode("utf-8"), 0o600)
        self.exists = True

    def drop_if_empty(self) -> bool:
        """After a failure that installed nothing, leave no manifest (or data folder) behind.
        Returns whether it is gone (or was never written: a read-only one never is)."""
        if self.read_only or not self.exists:
            return True
        if self.state == "complete" or self.holds_anything():
            return False
        os.remove(self.path)
        self.exists = False
        for folder in reversed(self.data["data_dirs_created"]):
            if os.path.isdir(folder) and not listdir(folder):
                os.rmdir(folder)
        return True
