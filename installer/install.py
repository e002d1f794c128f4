#!/usr/bin/env python3
"""Neural Style for GIMP: the one-command installer (any Python 3.8+, standard library only).

    python3 installer/install.py                 # install or upgrade everything
    python3 installer/install.py --dry-run       # show what it would do, touch nothing
    python3 installer/install.py --uninstall     # remove exactly what it installed

What it does, in order:
  1. creates a dedicated Python environment for the core (default: the user data folder,
     e.g. ~/.local/share/neural-style-gimp/venv; --venv PATH to choose) and installs the core
     from this checkout with the right PyTorch (CUDA where nvidia-smi sees a GPU, the CPU build
     otherwise, the default wheel on macOS, which has MPS on Apple silicon; --torch to choose).
     A suitable PyTorch already in that environment is kept. The environment is marked
     complete (nst-install.json inside it) only after the core imports there.
  2. finds every GIMP (2.10, 3.0, 3.2, ...; native, Flatpak, Snap) by its user folder or its
     program, copies the right plug-in into each plug-ins folder (GIMP 3: neural-style/,
     GIMP 2.10: neural_style_gimp2/, each with nst_bridge.py and nst-core.json, the command the
     plug-in uses to start the core) and says how each GIMP was found.
  3. fetches and verifies the VGG19 weights (`nst weights fetch`, or --from FILE).
  4. prints a summary: what it did, what is left to do, how to start.

Re-running it upgrades in place. Everything it creates is recorded in a manifest
(<data folder>/install-manifest.json), kept up to date while it works, so an interrupted run is
completed by the next one and --uninstall removes exactly what was installed: files that were
already there are moved aside (NAME.nst-backup) and put back on uninstall; nothing else in the
plug-in folders is touched.

Exit status: 0 done; 1 unexpected error; 2 bad command line; 3 no GIMP to install into;
4 the core environment could not be set up (Python, network, disk space); 5 the weights could
not be fetched (everything else was installed); 6 uninstall left something behind.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import plistlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

if sys.version_info < (3, 8):  # noqa: UP036 - the wrappers check this first, too
    sys.exit("This installer needs Python 3.8 or newer; this is Python {}.{}. Install a newer "
             "Python (python.org or your package manager) and run it again with that."
             .format(*sys.version_info[:2]))

APP = "neural-style-gimp"
MANIFEST_NAME = "install-manifest.json"
ENV_MARKER = "nst-install.json"
CONFIG_NAME = "nst-core.json"
FLATPAK_ID = "org.gimp.GIMP"
FLATPAK_GRANT = "flatpak override --user --talk-name=org.freedesktop.Flatpak " + FLATPAK_ID
FLATPAK_REVOKE = "flatpak override --user --no-talk-name=org.freedesktop.Flatpak " + FLATPAK_ID
MENU = "Filters > Artistic > Neural Style Transfer..."
DEFAULT_MIN_PYTHON = (3, 9)      # read from pyproject.toml's requires-python when present
DEFAULT_MIN_TORCH = (2, 1)       # read from pyproject.toml's dependencies when present
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu128"
# Rough free space needed to install PyTorch (download + unpacked), by build.
SPACE_NEEDED_GB = {"cpu": 1.5, "cuda": 6.0, "default": 1.5}
GIMP_VERSION_RE = re.compile(r"^(2\.10|3\.\d+)$")
TMP_MARK = ".nst-tmp-"
BACKUP_SUFFIX = ".nst-backup"

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_GIMP, EXIT_ENV, EXIT_WEIGHTS, EXIT_LEFTOVER = range(7)

PROBE = r"""
import json, sys
info = {"python": list(sys.version_info[:3]), "executable": sys.executable}
try:
    import torch
    info["torch"] = torch.__version__
    info["cuda"] = torch.version.cuda
    info["hip"] = getattr(torch.version, "hip", None)
    try:
        info["cuda_available"] = bool(torch.cuda.is_available())
    except Exception:
        info["cuda_available"] = False
    try:
        info["mps_available"] = bool(torch.backends.mps.is_available())
    except Exception:
        info["mps_available"] = False
except Exception as e:
    info["torch_error"] = "%s: %s" % (type(e).__name__, e)
try:
    import nst_core
    info["core_file"] = nst_core.__file__
    info["core_version"] = getattr(nst_core, "__version__", None)
    import nst_core.worker
    info["worker"] = True
except Exception as e:
    info["core_error"] = "%s: %s" % (type(e).__name__, e)
print("NST-PROBE " + json.dumps(info))
"""

NETWORK_PATTERNS = (
    "Failed to establish a new connection", "Temporary failure in name resolution",
    "Name or service not known", "No matching distribution found",
    "Could not find a version that satisfies", "Network is unreachable", "ConnectionError",
    "ReadTimeoutError", "ProxyError", "SSLError", "getaddrinfo failed", "Connection refused",
    "HTTP error", "urlopen error", "timed out",
)
SPACE_PATTERNS = ("No space left on device", "Errno 28", "ENOSPC", "not enough space")


class InstallError(Exception):
    """A failure with a message that says what to do next."""

    def __init__(self, message: str, code: int = EXIT_ERROR):
        super().__init__(message)
        self.message = message
        self.code = code


# -- small helpers ------------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say("==> " + text)


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


def space_message(where: str, what: str, need_gb: float | None = None) -> str:
    need = f" (about {need_gb:.0f} GB)" if need_gb else ""
    return (f"Not enough free disk space in {where} for {what}{need}. Free some space, or put "
            "the environment on another disk with --venv PATH, then run this installer again: "
            "it continues where it stopped.")


def network_message(what: str) -> str:
    return (f"Could not download {what}. Check the internet connection (behind a proxy, set "
            "HTTPS_PROXY), then run this installer again: it continues where it stopped. "
            "Where only PyPI can be reached, add --torch-index https://pypi.org/simple.")


def classify(tail: list[str]) -> str | None:
    text = "\n".join(tail)
    if any(p in text for p in SPACE_PATTERNS):
        return "space"
    if any(p in text for p in NETWORK_PATTERNS):
        return "network"
    return None


def version_tuple(text: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return ()
    return tuple(int(x) for x in m.groups() if x is not None)


def free_gb(path: str) -> float | None:
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


def run_capture(cmd: list[str], timeout: float = 600, cwd: str | None = None,
                env: dict | None = None) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout, cwd=cwd, env=env,
                           text=True, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)
    return p.returncode, p.stdout


def run_stream(cmd: list[str], cwd: str | None = None, env: dict | None = None) -> tuple[int,
                                                                                       list[str]]:
    """Run a long command (pip, weights download) showing its output; return rc and the tail."""
    say("    $ " + " ".join(_quote(c) for c in cmd))
    tail: list[str] = []
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                             universal_newlines=True, errors="replace")
    except OSError as e:
        return 127, [str(e)]
    assert p.stdout is not None
    for line in p.stdout:
        line = line.rstrip()
        say("      " + line)
        tail.append(line)
        del tail[:-60]
    return p.wait(), tail


def _quote(arg: str) -> str:
    return arg if re.match(r"^[\w@%+=:,./-]+$", arg) else json.dumps(arg)


# -- where things are -----------------------------------------------------------------------------


class Layout:
    """User folders for a platform and home; every path the installer derives comes from here."""

    def __init__(self, platform: str, home: str, home_given: bool, env: dict):
        self.platform = platform
        self.home = home
        self.env = env if not home_given else {}
        self.sysroot = os.environ.get("NST_INSTALL_SYSROOT", "")  # tests: fake system folders

    def sys(self, path: str) -> str:
        if not self.sysroot:
            return path
        return os.path.join(self.sysroot, path.replace(":", "").lstrip("/\\"))

    def data_dir(self) -> str:
        # Matches nst_core.weights.data_dir(): NST_HOME, else platformdirs' user data folder.
        if self.env.get("NST_HOME"):
            return os.path.abspath(os.path.expanduser(self.env["NST_HOME"]))
        if self.platform == "win32":
            base = self.env.get("LOCALAPPDATA") or os.path.join(self.home, "AppData", "Local")
        elif self.platform == "darwin":
            base = os.path.join(self.home, "Library", "Application Support")
        else:
            xdg = self.env.get("XDG_DATA_HOME", "")
            base = xdg if os.path.isabs(xdg) else os.path.join(self.home, ".local", "share")
        return os.path.join(base, APP)

    def venv_python(self, venv: str) -> str:
        if self.platform == "win32":
            return os.path.join(venv, "Scripts", "python.exe")
        return os.path.join(venv, "bin", "python")

    def venv_script(self, venv: str, name: str) -> str:
        if self.platform == "win32":
            return os.path.join(venv, "Scripts", name + ".exe")
        return os.path.join(venv, "bin", name)

    def gimp_roots(self) -> list[tuple[str, str]]:
        """(flavour, folder holding one user folder per GIMP version)."""
        if self.platform == "win32":
            appdata = self.env.get("APPDATA") or os.path.join(self.home, "AppData", "Roaming")
            return [("native", os.path.join(appdata, "GIMP"))]
        if self.platform == "darwin":
            return [("native", os.path.join(self.home, "Library", "Application Support", "GIMP"))]
        xdg = self.env.get("XDG_CONFIG_HOME", "")
        config = xdg if os.path.isabs(xdg) else os.path.join(self.home, ".config")
        return [
            ("native", os.path.join(config, "GIMP")),
            ("flatpak", os.path.join(self.home, ".var", "app", FLATPAK_ID, "config", "GIMP")),
            ("snap", os.path.join(self.home, "snap", "gimp", "current", ".config", "GIMP")),
        ]

    def gimp_programs(self) -> list[tuple[str, str | None, str]]:
        """(flavour, version or None when unknown, path) of installed GIMP programs."""
        found: list[tuple[str, str | None, str]] = []
        exe = ".exe" if self.platform == "win32" else ""
        pattern = re.compile(rf"^gimp-(2\.10|3\.\d+|3){re.escape(exe)}$", re.I)
        seen = set()
        for d in os.environ.get("PATH", "").split(os.pathsep):
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            for name in names:
                m = pattern.match(name)
                path = os.path.join(d, name)
                if m and os.access(path, os.X_OK) and os.path.realpath(path) not in seen:
                    seen.add(os.path.realpath(path))
                    ver = m.group(1)
                    found.append(("native", ver, path))
        if self.platform == "win32":
            bases = [self.env.get("ProgramFiles") or self.sys("C:/Program Files"),
                     os.path.join(self.env.get("LOCALAPPDATA")
                                  or os.path.join(self.home, "AppData", "Local"), "Programs")]
            for base in bases:
                for folder in _listdir(base):
                    if not folder.upper().startswith("GIMP"):
                        continue
                    bindir = os.path.join(base, folder, "bin")
                    for name in _listdir(bindir):
                        m = pattern.match(name)
                        if m:
                            ver = m.group(1)
                            found.append(("native", ver, os.path.join(bindir, name)))
        elif self.platform == "darwin":
            for base in (self.sys("/Applications"), os.path.join(self.home, "Applications")):
                for name in _listdir(base):
                    if name.upper().startswith("GIMP") and name.endswith(".app"):
                        app = os.path.join(base, name)
                        found.append(("native", _mac_app_version(app), app))
        else:
            for path in (self.sys("/var/lib/flatpak/app/" + FLATPAK_ID),
                         os.path.join(self.home, ".local", "share", "flatpak", "app", FLATPAK_ID)):
                if os.path.isdir(path):
                    found.append(("flatpak", None, path))
            if os.path.exists(self.sys("/snap/gimp/current")):
                found.append(("snap", None, self.sys("/snap/gimp/current")))
        return found


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _mac_app_version(app: str) -> str | None:
    try:
        with open(os.path.join(app, "Contents", "Info.plist"), "rb") as f:
            info = plistlib.load(f)
        return short_version(str(info.get("CFBundleShortVersionString", "")))
    except Exception:
        return None


def short_version(text: str) -> str | None:
    v = version_tuple(text)
    return f"{v[0]}.{v[1]}" if len(v) >= 2 else None


# -- the manifest (also the journal of a run in progress) ---------------------------------------


class Manifest:
    """What the installer created. Saved (atomically) before and after each change, so that an
    interrupted run is finished by the next one and --uninstall knows exactly what to remove.

    files: path -> {"sha256": digest once written by us (None before), "backup": where a file
    that was already there was moved, or None}."""

    def __init__(self, path: str):
        self.path = path
        self.data: dict = {"manifest_version": 1, "state": "none", "files": {}, "dirs_created": [],
                           "venvs_created": [], "env_markers": [], "core_installed_into": [],
                           "weights": None, "venv": None, "source": None}
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    loaded = json.load(f)
                if isinstance(loaded, dict):
                    self.data.update(loaded)
            except (OSError, ValueError) as e:
                raise InstallError(
                    f"The install manifest {path} cannot be read ({e}). Move it away and run the "
                    "installer again; files it listed will then be treated as not installed "
                    "by it.") from e
        self.exists = os.path.isfile(path)
        self.dry = False

    @property
    def files(self) -> dict:
        return self.data["files"]

    def add(self, key: str, value: str) -> None:
        if value not in self.data[key]:
            self.data[key].append(value)

    def save(self, state: str | None = None) -> None:
        if self.dry:
            return
        if state:
            self.data["state"] = state
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        missing, d = [], os.path.dirname(self.path)
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):   # recorded so that --uninstall removes them again
            os.mkdir(d)
            self.data.setdefault("data_dirs_created", []).append(d)
        tmp = self.path + TMP_MARK + str(os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.path)
        self.exists = True


# -- GIMP discovery -----------------------------------------------------------------------------


class Target:
    """One GIMP plug-ins folder to install into."""

    def __init__(self, flavour: str, version: str, plugins_dir: str, found_by: list[str]):
        self.flavour = flavour            # native | flatpak | snap | custom
        self.version = version            # "2.10", "3.0", "3.2", ...
        self.plugins_dir = plugins_dir
        self.found_by = found_by
        self.skipped: str | None = None   # why nothing was installed here
        self.result = ""

    @property
    def gimp2(self) -> bool:
        return self.version.startswith("2.")

    @property
    def label(self) -> str:
        kind = {"native": "", "custom": "", "flatpak": " (Flatpak)", "snap": " (Snap)"}
        return f"GIMP {self.version}{kind[self.flavour]}"


def discover(layout: Layout) -> tuple[list[Target], list[str]]:
    """Targets from existing GIMP user folders, plus notes about GIMPs only seen as programs."""
    targets: list[Target] = []
    for flavour, root in layout.gimp_roots():
        for ver in sorted(_listdir(root), key=version_tuple):
            folder = os.path.join(root, ver)
            if GIMP_VERSION_RE.match(ver) and os.path.isdir(folder):
                targets.append(Target(flavour, ver, os.path.join(folder, "plug-ins"),
                                      ["its user folder " + folder]))
    notes = []
    for flavour, ver, path in layout.gimp_programs():
        same = [t for t in targets if t.flavour == flavour and
                (ver is None or t.version == ver or t.version.split(".")[0] == ver)]
        for t in same:
            t.found_by.append("the program " + path)
        if not same:
            name = f"GIMP {ver}" if ver else "GIMP"
            where = {"native": "", "flatpak": " (Flatpak)", "snap": " (Snap)"}[flavour]
            notes.append(f"{name}{where} is installed ({path}) but has no user folder yet: "
                         "start it once and quit (it creates its settings folder on first "
                         "start; creating it here would stop GIMP from importing your older "
                         "settings), then run this installer again.")
    return targets, notes


def target_from_dir(path: str, version: str | None) -> Target:
    path = os.path.abspath(os.path.expanduser(path))
    if version is None:
        for part in reversed(path.replace("\\", "/").split("/")):
            if GIMP_VERSION_RE.match(part):
                version = part
                break
    version = version or "3"
    norm = path.replace("\\", "/")
    flavour = "custom"
    if f"/.var/app/{FLATPAK_ID}/" in norm:
        flavour = "flatpak"
    elif "/snap/gimp/" in norm:
        flavour = "snap"
    return Target(flavour, version, path, ["--gimp-dir"])


# -- the installer --------------------------------------------------------------------------------


class Installer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dry = args.dry_run
        home_given = args.home is not None
        home = os.path.abspath(os.path.expanduser(args.home or "~"))
        self.layout = Layout(args.platform, home, home_given, dict(os.environ))
        self.data_dir = self.layout.data_dir()
        self.default_venv = os.path.join(self.data_dir, "venv")
        self.venv = os.path.abspath(os.path.expanduser(args.venv)) if args.venv \
            else self.default_venv
        here = os.path.dirname(os.path.abspath(__file__))
        self.source = os.path.abspath(os.path.expanduser(args.source or os.path.dirname(here)))
        self.manifest = Manifest(os.path.join(self.data_dir, MANIFEST_NAME))
        self.manifest.dry = self.dry
        self.done: list[str] = []       # summary lines: what was done
        self.todo: list[str] = []       # summary lines: what the user still has to do
        self.warnings: list[str] = []
        self.weights_error: str | None = None
        self.files_written = 0
        self._torch_wanted: tuple[str, str] | None = None

    # -- helpers

    def would(self, text: str) -> None:
        say("    [dry run] would " + text)

    def note_done(self, text: str) -> None:
        self.done.append(("would " + text) if self.dry else text)

    def python_min(self) -> tuple[int, ...]:
        text = self._pyproject()
        m = re.search(r'requires-python\s*=\s*"\s*>=\s*([\d.]+)', text)
        return version_tuple(m.group(1)) if m else DEFAULT_MIN_PYTHON

    def torch_min(self) -> tuple[int, ...]:
        m = re.search(r'"torch\s*>=\s*([\d.]+)', self._pyproject())
        return version_tuple(m.group(1)) if m else DEFAULT_MIN_TORCH

    def _pyproject(self) -> str:
        try:
            with open(os.path.join(self.source, "pyproject.toml"), encoding="utf-8") as f:
                return f.read()
        except OSError:
            return ""

    def source_hash(self) -> str:
        h = hashlib.sha256()
        paths = [os.path.join(self.source, "pyproject.toml")]
        for root, dirs, files in os.walk(os.path.join(self.source, "nst_core")):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            paths += [os.path.join(root, f) for f in sorted(files) if not f.endswith(".pyc")]
        for p in paths:
            h.update(os.path.relpath(p, self.source).replace("\\", "/").encode())
            h.update(sha256_file(p).encode() if os.path.isfile(p) else b"-")
        return h.hexdigest()

    # -- main flows

    def install(self) -> int:
        args = self.args
        say("Neural Style for GIMP installer%s" % (" (dry run: nothing is changed)"
                                                  if self.dry else ""))
        say(f"    source: {self.source}")
        say(f"    data folder: {self.data_dir}")
        if self.manifest.exists and self.manifest.data.get("state") == "installing":
            say("    an earlier run did not finish; this run completes it")

        targets, notes = self.find_targets()
        self.check_plugin_sources(targets)

        if not self.dry:
            self.manifest.data["source"] = self.source
            self.manifest.data["venv"] = self.venv
            self.manifest.save("installing")

        if args.skip_env:
            step("Core environment: skipped (--skip-env)")
            if not os.path.isfile(self.layout.venv_python(self.venv)):
                self.warnings.append(f"--skip-env: {self.layout.venv_python(self.venv)} does "
                                     "not exist yet; the plug-in cannot start the core until "
                                     "it does.")
        else:
            self.setup_env()

        for t in targets:
            if t.skipped:
                continue
            self.install_plugin(t)
        self.flatpak_notes(targets)

        if args.skip_weights:
            step("Weights: skipped (--skip-weights)")
        elif args.skip_env and not os.path.isfile(self.layout.venv_python(self.venv)):
            step("Weights: skipped (no core environment)")
        else:
            self.fetch_weights()

        self.manifest.save("complete")
        for n in notes:
            self.todo.append(n)
        self.summary(targets)
        if self.weights_error:
            return EXIT_WEIGHTS
        return EXIT_OK

    def find_targets(self) -> tuple[list[Target], list[str]]:
        args = self.args
        step("Looking for GIMP")
        if args.no_plugins:
            say("    skipped (--no-plugins)")
            return [], []
        if args.gimp_dir:
            targets = [target_from_dir(d, args.gimp_version) for d in args.gimp_dir]
            notes: list[str] = []
        else:
            targets, notes = discover(self.layout)
        for t in targets:
            if t.flavour == "snap" and not args.gimp_dir and not args.include_snap:
                t.skipped = ("not installed there: the GIMP snap is strictly confined and cannot "
                             "start the core, which lives outside the snap (see below); "
                             "--include-snap installs it anyway")
            say("    {}: {}\n        found by {}{}".format(
                t.label, t.plugins_dir, ", ".join(t.found_by),
                "\n        " + t.skipped if t.skipped else ""))
        for n in notes:
            say("    " + n)
        usable = [t for t in targets if not t.skipped]
        if not usable:
            lines = ["No GIMP to install the plug-in into."]
            if notes:
                lines += notes
            elif targets:
                lines.append("Only a Snap GIMP was found, and it cannot start the core (see "
                             "--help). Install GIMP from your distribution or from Flathub, or "
                             "pass --include-snap to install into the snap anyway.")
            else:
                lines.append(
                    "Looked for the user folders of GIMP 2.10 and 3.x ({}) and for GIMP "
                    "programs. Install GIMP (gimp.org), start it once and quit, then run this "
                    "installer again; or name a plug-ins folder with --gimp-dir DIR (see GIMP's "
                    "Edit > Preferences > Folders > Plug-ins); or install only the core with "
                    "--no-plugins.".format(", ".join(r for _, r in self.layout.gimp_roots())))
            raise InstallError("\n".join(lines), EXIT_NO_GIMP)
        return targets, notes

    def check_plugin_sources(self, targets: list[Target]) -> None:
        missing = []
        for t in targets:
            if t.skipped:
                continue
            for src, _name, _mode in self.plugin_sources(t):
                if not os.path.isfile(src) and src not in missing:
                    missing.append(src)
        if missing:
            raise InstallError(f"The source checkout {self.source} is incomplete: missing "
                               f"{', '.join(missing)}. Run the installer from a complete "
                               "checkout, or name one with --source.")

    # -- the core environment

    def setup_env(self) -> None:
        lay, venv = self.layout, self.venv
        py = lay.venv_python(venv)
        step(f"Core environment: {venv}")
        ours = venv == self.default_venv or venv in self.manifest.data["venvs_created"]
        if os.path.exists(venv) and not os.path.isfile(os.path.join(venv, "pyvenv.cfg")) \
                and _listdir(venv):
            raise InstallError(f"{venv} exists but is not a Python virtual environment. Choose "
                               "another place with --venv PATH (or empty that folder), then run "
                               "the installer again.", EXIT_ENV)
        info = None
        if os.path.isfile(py):
            try:
                info = self.probe(py)
            except InstallError:
                if not ours:
                    raise
                # e.g. the Python it was made from was upgraded away: make it again.
                say("    its Python does not run any more: making it again")
                if self.dry:
                    self.would(f"delete and recreate {venv}")
                else:
                    shutil.rmtree(venv)
        created_now = False
        if info is not None and version_tuple(".".join(map(str, info["python"]))) \
                < self.python_min():
            if not ours:
                raise InstallError(self.python_message(info["python"], py), EXIT_ENV)
            old = ".".join(map(str, info["python"][:2]))
            say(f"    its Python {old} is too old for the core: making it again")
            if self.dry:
                self.would(f"delete and recreate {venv}")
            else:
                shutil.rmtree(venv)
            info = None
        if info is None:
            if os.path.exists(venv) and os.path.isfile(os.path.join(venv, "pyvenv.cfg")) \
                    and not ours:
                raise InstallError(f"{venv} looks like a broken Python environment (no "
                                   f"working {py}). Repair or remove it, or choose another "
                                   "place with --venv PATH.", EXIT_ENV)
            created_now = self.create_venv()
            info = self.probe(py) if not self.dry else {"python": list(sys.version_info[:3])}
        elif ours:
            self.manifest.add("venvs_created", venv)
        try:
            self.ensure_torch(py, info)
            self.ensure_core(py, info, ours)
        except InstallError:
            # Roll back a failed fresh environment; after Ctrl-C it stays for the next run
            # to complete (it is only marked complete once the core imports).
            if created_now and not self.dry:
                say(f"    removing the environment this run created ({venv})")
                shutil.rmtree(venv, ignore_errors=True)
                self.manifest.data["venvs_created"].remove(venv)
                self.manifest.save()
            raise

    def python_message(self, found, where: str) -> str:
        want = ".".join(map(str, self.python_min()))
        have = ".".join(map(str, found[:3]))
        return (f"The core needs Python {want} or newer; {where} is Python {have}. Install a "
                "newer Python (python.org, or your package manager, e.g. `sudo apt install "
                "python3`) and run this installer with it, or name one with --python PATH.")

    def create_venv(self) -> bool:
        base = os.path.abspath(os.path.expanduser(self.args.python)) if self.args.python \
            else sys.executable
        rc, out = run_capture([base, "-c", "import sys; print(sys.version_info[:3])"], 60)
        if rc != 0:
            raise InstallError(f"Cannot run the Python {base} ({out.strip()[-300:]}). Name a "
                               f"working Python 3.{self.python_min()[1]}+ with --python PATH.",
                               EXIT_ENV)
        found = [int(x) for x in re.findall(r"\d+", out)[:3]]
        if tuple(found) < self.python_min():
            raise InstallError(self.python_message(found, base), EXIT_ENV)
        if self.dry:
            self.would("create a Python {} environment at {} (from {})".format(
                ".".join(map(str, found)), self.venv, base))
            self.note_done(f"create the core environment {self.venv}")
            return False
        gb = free_gb(self.venv)
        if gb is not None and gb < 0.2:
            raise InstallError(space_message(os.path.dirname(self.venv), "the environment"),
                               EXIT_ENV)
        self.manifest.add("venvs_created", self.venv)
        self.manifest.save()
        say(f"    creating it with {base}")
        rc, out = run_capture([base, "-m", "venv", self.venv], 600)
        if rc != 0:
            shutil.rmtree(self.venv, ignore_errors=True)
            hint = ""
            if "ensurepip" in out or "venv" in out:
                hint = (" On Debian or Ubuntu, install the venv module first: "
                        "`sudo apt install python3-venv` (or python3.X-venv for your version).")
            if classify(out.splitlines()) == "space":
                raise InstallError(space_message(os.path.dirname(self.venv), "the environment"),
                                   EXIT_ENV)
            raise InstallError(f"Could not create the environment {self.venv}: "
                               f"{out.strip()[-500:]}.{hint} Then run the installer again.",
                               EXIT_ENV)
        self.note_done(f"created the core environment {self.venv}")
        return True

    def probe(self, py: str) -> dict:
        # -I: ignore PYTHONPATH and the current folder, so only what is installed counts.
        rc, out = run_capture([py, "-I", "-B", "-c", PROBE], 600, cwd=tempfile.gettempdir())
        for line in out.splitlines():
            if line.startswith("NST-PROBE "):
                return json.loads(line[len("NST-PROBE "):])
        raise InstallError(f"The environment's Python {py} does not run "
                           f"({out.strip()[-500:]}). Remove {self.venv} and run the installer "
                           "again.", EXIT_ENV)

    def torch_wanted(self) -> tuple[str, str]:
        """("cuda" | "cpu" | "default", why); decided once per run."""
        if self._torch_wanted is None:
            self._torch_wanted = self._decide_torch()
        return self._torch_wanted

    def _decide_torch(self) -> tuple[str, str]:
        choice, plat = self.args.torch, self.layout.platform
        if plat == "darwin":
            if choice == "cuda":
                raise InstallError("There is no CUDA PyTorch for macOS; use --torch auto (the "
                                   "default wheel, which uses the GPU through MPS on Apple "
                                   "silicon) or --torch cpu.", EXIT_USAGE)
            return "default", "macOS: the default wheel (MPS on Apple silicon)"
        if choice != "auto":
            return choice, f"--torch {choice}"
        smi = shutil.which("nvidia-smi")
        if not smi and plat == "win32":
            for cand in (r"C:\Windows\System32\nvidia-smi.exe",
                         r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe"):
                if os.path.isfile(cand):
                    smi = cand
        if not smi:
            return "cpu", "no NVIDIA GPU (nvidia-smi not found)"
        rc, out = run_capture([smi, "-L"], 30)
        if rc == 0 and "GPU" in out:
            return "cuda", f"NVIDIA GPU found: {out.strip().splitlines()[0]}"
        self.warnings.append(f"nvidia-smi was found but lists no GPU ({out.strip()[-200:]}); "
                             "installed the CPU build of PyTorch. Use --torch cuda to force "
                             "the CUDA build.")
        return "cpu", "nvidia-smi lists no GPU"

    def ensure_torch(self, py: str, info: dict) -> None:
        want, why = self.torch_wanted()
        have = info.get("torch")
        say("    PyTorch wanted: {} build ({})".format(want.upper() if want != "default"
                                                   else "default", why))
        ok = bool(have) and version_tuple(have) >= self.torch_min()
        marker = self.read_marker()
        tried = marker.get("torch_wanted") == want and marker.get("torch") == have
        if ok and want == "cuda" and not info.get("cuda") and tried:
            self.warnings.append(f"PyTorch {have} has no CUDA support, and it is what an earlier "
                                 "run could install for CUDA; kept. Re-run with --torch-index "
                                 "URL naming a CUDA wheel index (see pytorch.org) to change it.")
        elif ok and want == "cuda" and not info.get("cuda"):
            ok = False
            say(f"    PyTorch {have} is installed but has no CUDA support: replacing it")
        elif have and not ok:
            say(f"    PyTorch {have} is installed but too old: replacing it")
        if ok:
            extra = ""
            if want == "cpu" and info.get("cuda"):
                extra = " (a CUDA build; it works on the CPU too)"
            say(f"    PyTorch {have} already installed: kept{extra}")
            self.note_done(f"kept PyTorch {have} in the environment{extra}")
            return
        indexes = self.torch_indexes(want)
        if self.dry:
            for idx in indexes[:1]:
                self.would("install PyTorch: {}".format(" ".join(self.pip_torch_cmd(py, idx))))
            self.note_done(f"install PyTorch ({want} build)")
            return
        gb = free_gb(self.venv)
        need = SPACE_NEEDED_GB[want]
        if gb is not None and gb < need:
            raise InstallError(space_message(self.venv, "PyTorch", need), EXIT_ENV)
        if have:
            run_stream([py, "-m", "pip", "uninstall", "-y", "--disable-pip-version-check",
                        "torch"])
        last = None
        for idx in indexes:
            if idx and idx != indexes[-1] and not reachable(idx):
                say(f"    {idx} cannot be reached: trying the next source")
                continue
            rc, tail = run_stream(self.pip_torch_cmd(py, idx))
            if rc == 0:
                last = None
                break
            last = (classify(tail), tail)
            if last[0] == "network" and idx != indexes[-1]:
                say("    could not reach %s; trying the next source" % (idx or "PyPI"))
                continue
            break
        if last is not None:
            self.raise_pip_failure("PyTorch", last[0], last[1])
        after = self.probe(py)
        if want == "cuda" and not after.get("cuda"):
            self.warnings.append("The PyTorch that was installed ({}) has no CUDA support; the "
                                 "core will run on the CPU. Re-run with --torch-index URL "
                                 "naming a CUDA wheel index (see pytorch.org)."
                                 .format(after.get("torch")))
        self.note_done("installed PyTorch {} ({} build)".format(after.get("torch"), want))
        info.update(after)
        info["_changed"] = True

    def torch_indexes(self, want: str) -> list[str | None]:
        if self.args.torch_index is not None:
            return [self.args.torch_index or None]
        plat = self.layout.platform
        if want == "cpu" and plat.startswith("linux"):
            return [TORCH_CPU_INDEX, None]   # PyPI's Linux wheel is the large CUDA one
        if want == "cuda" and plat == "win32":
            return [TORCH_CUDA_INDEX_WINDOWS]  # PyPI's Windows wheel is CPU-only
        return [None]

    def pip_torch_cmd(self, py: str, index: str | None) -> list[str]:
        cmd = [py, "-m", "pip", "install", "--disable-pip-version-check",
               "torch>={}".format(".".join(map(str, self.torch_min())))]
        if index and index != "https://pypi.org/simple":
            cmd += ["--index-url", index]
        return cmd

    def raise_pip_failure(self, what: str, kind: str | None, tail: list[str]) -> None:
        if kind == "space":
            raise InstallError(space_message(self.venv, what), EXIT_ENV)
        if kind == "network":
            raise InstallError(network_message(what), EXIT_ENV)
        raise InstallError("Installing {} failed (pip's last words: {}). Fix the cause and run "
                           "the installer again.".format(what, " | ".join(tail[-5:])), EXIT_ENV)

    def read_marker(self) -> dict:
        try:
            with open(os.path.join(self.venv, ENV_MARKER), encoding="utf-8") as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def ensure_core(self, py: str, info: dict, ours: bool) -> None:
        marker = os.path.join(self.venv, ENV_MARKER)
        digest = self.source_hash()
        core = info.get("core_file")
        editable = bool(core) and is_within(core, self.source)
        previous = self.read_marker()
        if editable:
            say("    the core is this checkout itself (an editable install): nothing to install")
            self.note_done(f"used the core from the checkout (editable install in {self.venv})")
        elif core and not is_within(core, self.venv) and info.get("worker"):
            # An editable install of another checkout: a developer's; never replace it.
            self.warnings.append(f"The environment {self.venv} runs the core from "
                                 f"{os.path.dirname(core)} (an editable install of another "
                                 "checkout); it was left as it is.")
            self.note_done(f"kept the core in {self.venv} (from {os.path.dirname(core)})")
        elif core and info.get("worker") and previous.get("source_hash") == digest:
            say("    the core is up to date")
            self.note_done(f"the core in {self.venv} is up to date")
        else:
            self.pip_install_core(py, info, ours)
        if self.dry:
            return
        after = self.probe(py) if info.get("_changed") else info
        problems = [after[k] for k in ("torch_error", "core_error") if after.get(k)]
        if problems:
            raise InstallError("The core does not import in {}: {}. Run the installer again; if "
                               "that does not help, delete {} and run it again.".format(
                                   self.venv, "; ".join(problems), self.venv), EXIT_ENV)
        self.manifest.add("env_markers", marker)
        self.manifest.save()
        tmp = marker + TMP_MARK + str(os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"complete": True, "source": self.source, "source_hash": digest,
                       "torch": after.get("torch"), "cuda": after.get("cuda"),
                       "torch_wanted": self.torch_wanted()[0],
                       "python": after.get("python"),
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, f, indent=1)
        os.replace(tmp, marker)
        say(f"    the core imports: environment marked complete ({marker})")

    def pip_install_core(self, py: str, info: dict, ours: bool) -> None:
        if not os.path.isfile(os.path.join(self.source, "pyproject.toml")):
            raise InstallError(f"{self.source} has no pyproject.toml: name the project "
                               "checkout with --source PATH.", EXIT_ENV)
        if self.dry:
            self.would(f"install the core: {py} -m pip install --upgrade {self.source}")
            self.note_done(f"install the core into {self.venv}")
            return
        if not ours and not info.get("core_file"):
            self.manifest.add("core_installed_into", self.venv)
            self.manifest.save()
        # Build from a copy so the checkout gets no build/ or *.egg-info folders.
        with tempfile.TemporaryDirectory(prefix="nst-install-") as tmp:
            copy = os.path.join(tmp, "src")
            shutil.copytree(self.source, copy, ignore=shutil.ignore_patterns(
                ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                ".pytest_cache", ".ruff_cache", "tests", "bench", "out", "demo-out", ".cache"))
            rc, tail = run_stream([py, "-m", "pip", "install", "--disable-pip-version-check",
                                   "--upgrade", copy])
        if rc != 0:
            self.raise_pip_failure("the core (and its dependencies)", classify(tail), tail)
        info["_changed"] = True
        self.note_done(f"installed the core from {self.source} into {self.venv}")

    # -- the plug-ins

    def plugin_sources(self, t: Target) -> list[tuple[str, str, int]]:
        gp = os.path.join(self.source, "gimp_plugin")
        bridge = (os.path.join(gp, "nst_bridge.py"), "nst_bridge.py", 0o644)
        if t.gimp2:
            return [(os.path.join(gp, "neural_style_gimp2.py"), "neural_style_gimp2.py", 0o755),
                    bridge]
        folder = os.path.join(gp, "neural-style")
        main = (os.path.join(folder, "neural-style.py"), "neural-style.py", 0o755)
        extra = [(os.path.join(folder, n), n, 0o644) for n in _listdir(folder)
                 if n != "neural-style.py" and not n.endswith((".pyc", ".pyo"))
                 and not n.startswith(".") and os.path.isfile(os.path.join(folder, n))]
        return [main] + extra + [bridge]

    def core_command(self, t: Target) -> list[str]:
        py = self.layout.venv_python(self.venv)
        cmd = [py, "-m", "nst_core.worker"]
        if t.flavour == "flatpak":
            # Runs the core on the host, outside GIMP's sandbox; --watch-bus ends it with GIMP.
            cmd = ["flatpak-spawn", "--host", "--watch-bus"] + cmd
        return cmd

    def install_plugin(self, t: Target) -> None:
        folder = "neural_style_gimp2" if t.gimp2 else "neural-style"
        dest = os.path.join(t.plugins_dir, folder)
        step(f"{t.label} plug-in: {dest}")
        if t.flavour == "flatpak":
            self.manifest.data["flatpak"] = True
        wanted: list[tuple[str, bytes, int]] = []
        for src, name, mode in self.plugin_sources(t):
            with open(src, "rb") as f:
                wanted.append((name, f.read(), mode))
        config = {"version": 1, "command": self.core_command(t)}
        wanted.append((CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode(), 0o644))
        self.make_dirs(dest)
        if not self.dry:
            for name in _listdir(dest):  # leftovers of an interrupted run (our temp names)
                if name.startswith(".") and TMP_MARK in name:
                    os.remove(os.path.join(dest, name))
        changed = 0
        for name, data, mode in wanted:
            changed += self.write_file(os.path.join(dest, name), data, mode)
        names = {os.path.join(dest, n) for n, _, _ in wanted}
        for path in sorted(self.manifest.files):   # files an older version installed here
            if os.path.dirname(path) == dest and path not in names:
                say(f"    removing {os.path.basename(path)} (no longer part of the plug-in)")
                if not self.dry:
                    self.remove_file(path, self.manifest.files[path])
                    del self.manifest.files[path]
                    self.manifest.save()
                changed += 1
        if changed:
            verb = "would write" if self.dry else "wrote"
            t.result = f"{verb} {changed} file(s) in {dest}"
        else:
            t.result = f"already up to date in {dest}"
        say("    " + t.result)

    def remove_file(self, path: str, entry: dict) -> None:
        if os.path.lexists(path):
            os.remove(path)
        for extra in bytecode_of(path):
            os.remove(extra)
        backup = entry.get("backup")
        if backup and os.path.lexists(backup):
            os.replace(backup, path)

    def make_dirs(self, path: str) -> None:
        todo = []
        p = path
        while not os.path.isdir(p):
            todo.append(p)
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
        for d in reversed(todo):
            if self.dry:
                self.would(f"create the folder {d}")
                continue
            self.manifest.add("dirs_created", d)
            self.manifest.save()
            os.mkdir(d)
            os.chmod(d, 0o755)

    def write_file(self, path: str, data: bytes, mode: int) -> int:
        """Install one file atomically; return 1 if it changed. A file that was there before
        and is not ours is moved to NAME.nst-backup (restored by --uninstall)."""
        entry = self.manifest.files.get(path)
        digest = sha256_bytes(data)
        name = os.path.basename(path)
        if os.path.lexists(path):
            foreign = entry is None or (entry.get("sha256") is None and entry.get("backup")
                                        and not os.path.lexists(entry["backup"]))
            if foreign:
                backup = entry["backup"] if entry and entry.get("backup") else path + BACKUP_SUFFIX
                n = 1
                while os.path.lexists(backup):
                    backup = f"{path}{BACKUP_SUFFIX}.{n}"
                    n += 1
                say(f"    {name} was already there and is not ours: moving it to "
                    f"{os.path.basename(backup)}")
                if self.dry:
                    self.would(f"move {path} to {backup}")
                else:
                    entry = {"sha256": None, "backup": backup}
                    self.manifest.files[path] = entry
                    self.manifest.save()
                    os.replace(path, backup)
            elif sha256_file(path) == digest and (os.name == "nt" or
                                                  (os.stat(path).st_mode & 0o777) == mode):
                if entry.get("sha256") != digest and not self.dry:
                    entry["sha256"] = digest
                    self.manifest.save()
                return 0
        if self.dry:
            self.would(f"write {path} (mode {mode:o})")
            return 1
        if entry is None:
            entry = {"sha256": None, "backup": None}
            self.manifest.files[path] = entry
            self.manifest.save()
        self._crash_hook()
        tmp = os.path.join(os.path.dirname(path), "." + name + TMP_MARK + str(os.getpid()))
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        entry["sha256"] = digest
        self.manifest.save()
        self.files_written += 1
        say(f"    {name} ({mode:o})")
        return 1

    def _crash_hook(self) -> None:
        # Tests simulate an interrupted run: stop after this many files.
        limit = os.environ.get("NST_INSTALL_TEST_CRASH_AFTER")
        if limit is not None and self.files_written >= int(limit):
            os._exit(99)

    def flatpak_notes(self, targets: list[Target]) -> None:
        installed = [t for t in targets if not t.skipped]
        if any(t.flavour == "flatpak" for t in installed):
            state = flatpak_permission()
            if state == "granted":
                self.done.append("Flatpak GIMP may already start programs on the host "
                                 "(org.freedesktop.Flatpak): nothing more to do")
            else:
                self.todo.append(
                    "Flatpak GIMP: the plug-in starts the core outside the sandbox with "
                    "`flatpak-spawn --host`, which GIMP may only do once allowed to talk to "
                    "org.freedesktop.Flatpak{}. Allow it (once) with:\n        {}\n      This "
                    "lets GIMP start any program on your computer, i.e. it lifts the sandbox; "
                    "undo it with: {}".format(
                        "" if state == "missing" else " (could not check whether it may)",
                        FLATPAK_GRANT, FLATPAK_REVOKE))
        if any(t.flavour == "snap" for t in targets):
            self.todo.append(
                "Snap GIMP: the snap is strictly confined. It runs on its own base system (the "
                "environment's Python links to your system's, which the snap cannot see), its "
                "`home` access excludes hidden folders such as ~/.local, and snaps have no "
                "counterpart of `flatpak-spawn --host`; so a Snap GIMP cannot start the core. "
                "Use GIMP from your distribution or from Flathub instead.")

    # -- weights

    def fetch_weights(self) -> None:
        step("Weights (VGG19)")
        py = self.layout.venv_python(self.venv)
        nst = self.layout.venv_script(self.venv, "nst")
        base = [nst] if os.path.isfile(nst) else [py, "-m", "nst_core.cli"]
        cmd = base + ["weights", "fetch"]
        if self.args.weights_from:
            cmd += ["--from", os.path.abspath(os.path.expanduser(self.args.weights_from))]
        if self.dry:
            self.would("run {}".format(" ".join(_quote(c) for c in cmd)))
            self.note_done("fetch and verify the weights")
            return
        rc, out = run_capture(base + ["weights", "path"], 120)
        path = out.strip().splitlines()[-1].strip() if rc == 0 and out.strip() else None
        existed = bool(path) and os.path.isfile(path)
        rc, tail = run_stream(cmd)
        if rc != 0:
            kind = classify(tail)
            fix = " ".join(_quote(c) for c in base + ["weights", "fetch"])
            if kind == "network":
                why = "could not be downloaded (no network?)"
            elif kind == "space":
                why = "could not be stored (disk full?)"
            else:
                why = "could not be fetched ({})".format(" | ".join(tail[-3:]).rstrip("."))
            self.weights_error = (
                f"The VGG19 weights {why}. Everything else is installed. Fetch them later with\n"
                f"        {fix}\n      or, with a copy of vgg19_weights_tf_dim_ordering_tf_kernels_"
                "notop.h5, with `... --from FILE`; or run this installer again.")
            return
        prev = self.manifest.data.get("weights") or {}
        fetched = (not existed) or (prev.get("path") == path and prev.get("fetched"))
        if path:
            self.manifest.data["weights"] = {"path": path, "fetched": bool(fetched)}
            self.manifest.save()
        self.note_done("weights verified%s" % (f" ({path})" if path else ""))

    def drop_empty_journal(self) -> None:
        """After a failure that installed nothing, leave no manifest (or data folder) behind."""
        d = self.manifest.data
        if self.dry or not self.manifest.exists or d.get("state") == "complete" or any(
                d.get(k) for k in ("files", "dirs_created", "venvs_created", "env_markers",
                                   "core_installed_into", "weights")):
            return
        os.remove(self.manifest.path)
        for folder in reversed(d.get("data_dirs_created", [])):
            if os.path.isdir(folder) and not _listdir(folder):
                os.rmdir(folder)

    # -- summary

    def summary(self, targets: list[Target]) -> None:
        say()
        say("Summary%s" % (" (dry run: nothing was changed)" if self.dry else ""))
        for line in self.done:
            say("  - " + line)
        for t in targets:
            how = "; found by " + ", ".join(t.found_by)
            if t.skipped:
                say(f"  - {t.label} ({t.plugins_dir}): {t.skipped}{how}")
            else:
                say(f"  - {t.label}: {t.result}{how}")
        for w in self.warnings:
            say("  ! " + w)
        if self.weights_error:
            say("  ! " + self.weights_error)
        for item in self.todo:
            say("  * " + item)
        if not self.dry:
            say()
            if any(not t.skipped for t in targets):
                say(f"How to start: (re)start GIMP, open an image and choose {MENU}")
            nst = self.layout.venv_script(self.venv, "nst")
            say(f"Check the core: {nst} doctor    Try it without GIMP: {nst} demo")
            say(f"Upgrade: run this installer again.  Remove: {os.path.abspath(__file__)} "
                "--uninstall")

    # -- uninstall

    def uninstall(self) -> int:
        m = self.manifest
        say("Neural Style for GIMP: uninstall%s" % (" (dry run: nothing is changed)"
                                                   if self.dry else ""))
        if not m.exists:
            say(f"Nothing to remove: there is no install manifest at {m.path}.")
            return EXIT_OK
        left: list[str] = []

        def act(text: str, fn) -> None:
            if self.dry:
                self.would(text)
                return
            say("    " + text)
            try:
                fn()
            except OSError as e:
                left.append(f"{text}: {e}")

        step("Plug-in files")
        for path, entry in sorted(m.files.items()):
            backup = entry.get("backup")
            if entry.get("sha256") is None and backup and not os.path.lexists(backup):
                continue  # interrupted before the original was moved aside: it is not ours
            if os.path.lexists(path):
                act(f"remove {path}", lambda p=path: os.remove(p))
            for extra in bytecode_of(path):
                act(f"remove {extra}", lambda p=extra: os.remove(p))
            if backup and os.path.lexists(backup):
                act(f"put back {path}", lambda b=backup, p=path: os.replace(b, p))
        dirs = {os.path.dirname(p) for p in m.files}
        for d in sorted(dirs):
            for junk in _listdir(d):   # temp files of an interrupted run (our names only)
                junk_path = os.path.join(d, junk)
                if junk.startswith(".") and TMP_MARK in junk:
                    act(f"remove {junk_path}", lambda p=junk_path: os.remove(p))
            cache = os.path.join(d, "__pycache__")
            if os.path.isdir(cache) and not _listdir(cache):
                act(f"remove the empty folder {cache}", lambda p=cache: os.rmdir(p))
        for d in reversed(m.data["dirs_created"]):
            if os.path.isdir(d):
                if _listdir(d):
                    say(f"    keeping {d}: it holds files that are not ours")
                else:
                    act(f"remove the folder {d}", lambda p=d: os.rmdir(p))

        step("Core environment")
        for venv in m.data["venvs_created"]:
            if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
                act(f"delete the environment {venv}", lambda p=venv: shutil.rmtree(p))
        for venv in m.data["core_installed_into"]:
            py = self.layout.venv_python(venv)
            if os.path.isfile(py):
                act(f"pip uninstall the core from {venv}", lambda p=py: _pip_uninstall(p))
        for marker in m.data["env_markers"]:
            if os.path.isfile(marker):
                act(f"remove {marker}", lambda p=marker: os.remove(p))
        weights = m.data.get("weights") or {}
        if weights.get("fetched") and weights.get("path") and os.path.isfile(weights["path"]):
            wpath = weights["path"]
            act(f"remove the weights {wpath}", lambda: os.remove(wpath))
        elif weights.get("path"):
            say("    keeping the weights {}: they were there before".format(weights["path"]))

        if not left:
            act(f"remove the manifest {m.path}", lambda: os.remove(m.path))
            for d in reversed([self.data_dir] + m.data.get("data_dirs_created", [])):
                if os.path.isdir(d) and not _listdir(d):
                    act(f"remove the empty folder {d}", lambda p=d: os.rmdir(p))
        say()
        if left:
            say("Some things could not be removed:")
            for item in left:
                say("  ! " + item)
            say("Close GIMP (it may hold the files open), fix the cause, and run --uninstall "
                f"again: the manifest {m.path} was kept.")
            return EXIT_LEFTOVER
        if self.dry:
            say("Dry run: nothing was changed.")
        else:
            say("Removed everything the installer had installed. Restart GIMP.")
            if m.data.get("flatpak"):
                say("If you allowed the Flatpak GIMP to start host programs for this plug-in, "
                    "undo it with: " + FLATPAK_REVOKE)
        return EXIT_OK


def bytecode_of(path: str) -> list[str]:
    """Byte-code Python wrote beside one of our .py files (GIMP 2.10's Python 2 writes X.pyc)."""
    if not path.endswith(".py"):
        return []
    folder, stem = os.path.dirname(path), os.path.basename(path)[:-3]
    out = [os.path.join(folder, stem + ext) for ext in (".pyc", ".pyo")]
    cache = os.path.join(folder, "__pycache__")
    out += [os.path.join(cache, n) for n in _listdir(cache)
            if n.startswith(stem + ".") and n.endswith((".pyc", ".pyo"))]
    return [p for p in out if os.path.isfile(p)]


def _pip_uninstall(py: str) -> None:
    rc, out = run_capture([py, "-m", "pip", "uninstall", "-y", "--disable-pip-version-check",
                           APP], 300)
    if rc != 0:
        raise OSError(out.strip()[-300:])


def reachable(url: str, timeout: float = 10) -> bool:
    """Whether a package index answers at all (any HTTP status counts), so that pip is not left
    retrying an index a firewall blocks."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except Exception:
        return False
    return True


def flatpak_permission() -> str:
    """"granted", "missing" or "unknown": may the Flatpak GIMP talk to org.freedesktop.Flatpak?"""
    exe = shutil.which("flatpak")
    if not exe:
        return "unknown"
    rc, out = run_capture([exe, "info", "--show-permissions", FLATPAK_ID], 30)
    if rc != 0:
        return "unknown"
    return "granted" if re.search(r"org\.freedesktop\.Flatpak\s*=\s*talk", out) else "missing"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="install.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 done, 2 bad options, 3 no GIMP found, 4 environment failed, "
               "5 weights failed (rest installed), 6 uninstall incomplete, 1 other errors.")
    p.add_argument("--venv", metavar="PATH",
                   help=f"the core's environment (default: <user data folder>/{APP}/venv); an "
                        "existing one is reused")
    p.add_argument("--python", metavar="PATH",
                   help="the Python to create the environment with (default: the one running "
                        "this installer; the core needs 3.9+)")
    p.add_argument("--torch", choices=("auto", "cpu", "cuda"), default="auto",
                   help="PyTorch build: auto (CUDA when nvidia-smi finds a GPU, else CPU; the "
                        "default wheel on macOS, with MPS on Apple silicon), cpu or cuda")
    p.add_argument("--torch-index", metavar="URL",
                   help="install PyTorch from this package index (e.g. a pytorch.org CUDA "
                        "index); https://pypi.org/simple means PyPI")
    p.add_argument("--source", metavar="PATH",
                   help="the project checkout to install from (default: the one holding this "
                        "installer)")
    p.add_argument("--from", dest="weights_from", metavar="FILE",
                   help="take the weights from this file (vgg19_weights_tf_dim_ordering_tf_"
                        "kernels_notop.h5) instead of downloading them")
    p.add_argument("--gimp-dir", action="append", metavar="DIR",
                   help="install into this plug-ins folder only (repeatable) instead of "
                        "looking for GIMP")
    p.add_argument("--gimp-version", choices=("2.10", "3"),
                   help="which plug-in --gimp-dir gets (default: from the path, else 3)")
    p.add_argument("--include-snap", action="store_true",
                   help="install into a Snap GIMP too (its sandbox cannot start the core)")
    p.add_argument("--no-plugins", action="store_true",
                   help="install only the core (e.g. on a GPU machine used over ssh)")
    p.add_argument("--skip-env", action="store_true",
                   help="do not create or check the environment (plug-ins point at --venv)")
    p.add_argument("--skip-weights", action="store_true", help="do not fetch the weights")
    p.add_argument("--dry-run", action="store_true", help="show what would be done; change "
                                                          "nothing")
    p.add_argument("--uninstall", action="store_true",
                   help="remove everything this installer installed (per its manifest)")
    p.add_argument("--home", metavar="PATH", help="treat PATH as the home folder and ignore "
                                                  "XDG_*/APPDATA/NST_HOME (for tests)")
    p.add_argument("--platform", choices=("linux", "darwin", "win32"),
                   default="win32" if sys.platform == "win32" else
                   "darwin" if sys.platform == "darwin" else "linux",
                   help="act as on this platform (for tests)")
    args = p.parse_args(argv)
    if args.gimp_version and not args.gimp_dir:
        p.error("--gimp-version goes with --gimp-dir")
    if args.no_plugins and args.gimp_dir:
        p.error("--no-plugins and --gimp-dir contradict each other")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    inst = None
    try:
        inst = Installer(args)
        return inst.uninstall() if args.uninstall else inst.install()
    except InstallError as e:
        say()
        say("ERROR: " + e.message)
        if inst is not None and not args.uninstall:
            inst.drop_empty_journal()
        return e.code
    except KeyboardInterrupt:
        say()
        say("Interrupted. Run the installer again to finish (it continues where it stopped), "
            "or run it with --uninstall to remove what was installed so far.")
        return 130
    except OSError as e:
        say()
        if e.errno == errno.ENOSPC:
            say("ERROR: " + space_message(os.path.dirname(getattr(e, "filename", "") or "") or
                                          "the target folder", "the installation"))
            return EXIT_ENV
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            say(f"ERROR: no permission to write {e.filename} ({e.strerror}). Fix the folder's "
                "permissions (do not run the installer with sudo), then run it again: it "
                "continues where it stopped.")
            return EXIT_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
