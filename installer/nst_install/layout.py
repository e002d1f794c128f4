"""Where things live on one platform for one home folder: the data folder, the environment's
programs, the config folders. Every path the installer derives starts here."""
from __future__ import annotations

import os

from . import APP


class Layout:
    def __init__(self, platform: str, home: str, env: dict):
        """env: the environment variables to honour (none when tests give a fake home)."""
        self.platform = platform          # "linux" | "darwin" | "win32"
        self.home = home
        self.env = env
        self.sysroot = os.environ.get("NST_INSTALL_SYSROOT", "")  # tests: fake system folders

    def system(self, path: str) -> str:
        """A system-wide path such as /Applications (under the fake root in tests)."""
        if not self.sysroot:
            return path
        return os.path.join(self.sysroot, path.replace(":", "").lstrip("/\\"))

    def data_dir(self) -> str:
        # Matches nst_core.weights.data_dir(): NST_HOME, else platformdirs' user data folder.
        if self.env.get("NST_HOME"):
            return os.path.abspath(os.path.expanduser(self.env["NST_HOME"]))
        if self.platform == "win32":
            base = self.local_appdata()
        elif self.platform == "darwin":
            base = os.path.join(self.home, "Library", "Application Support")
        else:
            xdg = self.env.get("XDG_DATA_HOME", "")
            base = xdg if os.path.isabs(xdg) else os.path.join(self.home, ".local", "share")
        return os.path.join(base, APP)

    def config_dir(self) -> str:
        """Linux: the XDG config folder (GIMP's user folders are under it)."""
        xdg = self.env.get("XDG_CONFIG_HOME", "")
        return xdg if os.path.isabs(xdg) else os.path.join(self.home, ".config")

    def appdata(self) -> str:
        return self.env.get("APPDATA") or os.path.join(self.home, "AppData", "Roaming")

    def local_appdata(self) -> str:
        return self.env.get("LOCALAPPDATA") or os.path.join(self.home, "AppData", "Local")

    def venv_python(self, venv: str) -> str:
        if self.platform == "win32":
            return os.path.join(venv, "Scripts", "python.exe")
        return os.path.join(venv, "bin", "python")

    def venv_script(self, venv: str, name: str) -> str:
        if self.platform == "win32":
            return os.path.join(venv, "Scripts", name + ".exe")
        return os.path.join(venv, "bin", name)
