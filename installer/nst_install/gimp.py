"""Finding GIMP: its user folders (one per version: 2.10, 3.0, 3.2, ...; native, Flatpak, Snap)
and its programs, and from them the plug-ins folders to install into."""
from __future__ import annotations

import os
import plistlib
import re

from . import FLATPAK_ID
from .console import say, step
from .errors import EXIT_NO_GIMP, InstallError
from .files import listdir
from .layout import Layout

GIMP_VERSION_RE = re.compile(r"^(2\.10|3\.\d+)$")
FLAVOUR_LABEL = {"native": "", "custom": "", "flatpak": " (Flatpak)", "snap": " (Snap)"}


class Target:
    """One GIMP plug-ins folder to install into."""

    def __init__(self, flavour: str, version: str, plugins_dir: str, found_by: list[str]):
        self.flavour = flavour            # native | flatpak | snap | custom
        self.version = version            # "2.10", "3.0", "3.2", ...
        self.plugins_dir = plugins_dir
        self.found_by = found_by
        self.skipped: str | None = None   # why nothing is installed here
        self.result = ""                  # what was installed, for the summary

    @property
    def gimp2(self) -> bool:
        return self.version.startswith("2.")

    @property
    def label(self) -> str:
        return f"GIMP {self.version}{FLAVOUR_LABEL[self.flavour]}"


def version_tuple(text: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(x) for x in m.groups() if x is not None) if m else ()


def gimp_roots(layout: Layout) -> list[tuple[str, str]]:
    """(flavour, folder holding one user folder per GIMP version)."""
    if layout.platform == "win32":
        return [("native", os.path.join(layout.appdata(), "GIMP"))]
    if layout.platform == "darwin":
        return [("native", os.path.join(layout.home, "Library", "Application Support", "GIMP"))]
    return [
        ("native", os.path.join(layout.config_dir(), "GIMP")),
        ("flatpak", os.path.join(layout.home, ".var", "app", FLATPAK_ID, "config", "GIMP")),
        ("snap", os.path.join(layout.home, "snap", "gimp", "current", ".config", "GIMP")),
    ]


def gimp_programs(layout: Layout) -> list[tuple[str, str | None, str]]:
    """(flavour, version or None when unknown, path) of installed GIMP programs."""
    found: list[tuple[str, str | None, str]] = []
    exe = ".exe" if layout.platform == "win32" else ""
    pattern = re.compile(rf"^gimp-(2\.10|3\.\d+|3){re.escape(exe)}$", re.I)
    seen = set()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        for name in listdir(d):
            m = pattern.match(name)
            path = os.path.join(d, name)
            if m and os.access(path, os.X_OK) and os.path.realpath(path) not in seen:
                seen.add(os.path.realpath(path))
                found.append(("native", m.group(1), path))
    if layout.platform == "win32":
        bases = [layout.env.get("ProgramFiles") or layout.system("C:/Program Files"),
                 os.path.join(layout.local_appdata(), "Programs")]
        for base in bases:
            for folder in listdir(base):
                if folder.upper().startswith("GIMP"):
                    bindir = os.path.join(base, folder, "bin")
                    found += [("native", m.group(1), os.path.join(bindir, name))
                              for name in listdir(bindir) for m in [pattern.match(name)] if m]
    elif layout.platform == "darwin":
        for base in (layout.system("/Applications"), os.path.join(layout.home, "Applications")):
            for name in listdir(base):
                if name.upper().startswith("GIMP") and name.endswith(".app"):
                    app = os.path.join(base, name)
                    found.append(("native", mac_app_version(app), app))
    else:
        for path in (layout.system("/var/lib/flatpak/app/" + FLATPAK_ID),
                     os.path.join(layout.home, ".local", "share", "flatpak", "app", FLATPAK_ID)):
            if os.path.isdir(path):
                found.append(("flatpak", None, path))
        if os.path.exists(layout.system("/snap/gimp/current")):
            found.append(("snap", None, layout.system("/snap/gimp/current")))
    return found


def mac_app_version(app: str) -> str | None:
    try:
        with open(os.path.join(app, "Contents", "Info.plist"), "rb") as f:
            info = plistlib.load(f)
    except Exception:  # a missing or broken Info.plist: the version is just unknown
        return None
    v = version_tuple(str(info.get("CFBundleShortVersionString", "")))
    return f"{v[0]}.{v[1]}" if len(v) >= 2 else None


def discover(layout: Layout) -> tuple[list[Target], list[str]]:
    """Targets from existing GIMP user folders, plus notes about GIMPs only seen as programs."""
    targets: list[Target] = []
    for flavour, root in gimp_roots(layout):
        for ver in sorted(listdir(root), key=version_tuple):
            folder = os.path.join(root, ver)
            if GIMP_VERSION_RE.match(ver) and os.path.isdir(folder):
                targets.append(Target(flavour, ver, os.path.join(folder, "plug-ins"),
                                      ["its user folder " + folder]))
    notes = []
    for flavour, ver, path in gimp_programs(layout):
        same = [t for t in targets if t.flavour == flavour and
                (ver is None or t.version == ver or t.version.split(".")[0] == ver)]
        for t in same:
            t.found_by.append("the program " + path)
        if not same:
            name = f"GIMP {ver}" if ver else "GIMP"
            notes.append(f"{name}{FLAVOUR_LABEL[flavour]} is installed ({path}) but has no user "
                         "folder yet: start it once and quit (it creates its settings folder on "
                         "first start; creating it here would stop GIMP from importing your "
                         "older settings), then run this installer again.")
    return targets, notes


def target_from_dir(path: str, version: str | None) -> Target:
    """A plug-ins folder named with --gimp-dir; its GIMP version from the path unless given."""
    path = os.path.abspath(os.path.expanduser(path))
    norm = path.replace("\\", "/")
    if version is None:
        version = next((p for p in reversed(norm.split("/")) if GIMP_VERSION_RE.match(p)), "3")
    flavour = "custom"
    if f"/.var/app/{FLATPAK_ID}/" in norm:
        flavour = "flatpak"
    elif "/snap/gimp/" in norm:
        flavour = "snap"
    return Target(flavour, version, path, ["--gimp-dir"])


def choose_targets(layout: Layout, gimp_dirs: list[str] | None, gimp_version: str | None,
                   include_snap: bool) -> tuple[list[Target], list[str]]:
    """The plug-ins folders to install into (said as found), and notes for the summary.
    Raises InstallError when there is none to install into."""
    step("Looking for GIMP")
    if gimp_dirs:
        targets, notes = [target_from_dir(d, gimp_version) for d in gimp_dirs], []
    else:
        targets, notes = discover(layout)
    for t in targets:
        if t.flavour == "snap" and not gimp_dirs and not include_snap:
            t.skipped = ("not installed there: the GIMP snap is strictly confined and cannot "
                         "start the core, which lives outside the snap (see below); "
                         "--include-snap installs it anyway")
        say("    {}: {}\n        found by {}{}".format(
            t.label, t.plugins_dir, ", ".join(t.found_by),
            "\n        " + t.skipped if t.skipped else ""))
    for n in notes:
        say("    " + n)
    if any(not t.skipped for t in targets):
        return targets, notes
    lines = ["No GIMP to install the plug-in into."]
    if notes:
        lines += notes
    elif targets:
        lines.append("Only a Snap GIMP was found, and it cannot start the core (see --help). "
                     "Install GIMP from your distribution or from Flathub, or pass "
                     "--include-snap to install into the snap anyway.")
    else:
        lines.append(
            "Looked for the user folders of GIMP 2.10 and 3.x ({}) and for GIMP programs. "
            "Install GIMP (gimp.org), start it once and quit, then run this installer again; or "
            "name a plug-ins folder with --gimp-dir DIR (see GIMP's Edit > Preferences > "
            "Folders > Plug-ins); or install only the core with --no-plugins.".format(
                ", ".join(r for _, r in gimp_roots(layout))))
    raise InstallError("\n".join(lines), EXIT_NO_GIMP)
