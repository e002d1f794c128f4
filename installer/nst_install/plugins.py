"""Copying the plug-ins into each GIMP: GIMP 3 gets plug-ins/neural-style/, GIMP 2.10
plug-ins/neural_style_gimp2/, each with nst_bridge.py, nst_options.py and nst-core.json (the
command that starts the core). A file of someone else's at one of our names is moved aside
(NAME.nst-backup) and put back by --uninstall; nothing else in the plug-ins folders is touched."""
from __future__ import annotations

import json
import os
import re
import shutil

from . import BACKUP_SUFFIX, CONFIG_NAME, FLATPAK_GRANT, FLATPAK_ID, FLATPAK_REVOKE
from .console import say, step
from .context import Context
from .errors import InstallError
from .files import bytecode_of, listdir, our_temp_files, sha256_bytes, sha256_file
from .gimp import Target
from .processes import run_capture


def plugin_folder(t: Target) -> str:
    return os.path.join(t.plugins_dir, "neural_style_gimp2" if t.gimp2 else "neural-style")


def plugin_sources(source: str, t: Target) -> list[tuple[str, str, int]]:
    """(file in the checkout, name in the plug-in folder, mode) for one GIMP."""
    gp = os.path.join(source, "gimp_plugin")
    # The bridge's modules and the options table it and both plug-ins are built from.
    bridge = [(os.path.join(gp, n), n, 0o644) for n in sorted(listdir(gp))
              if n.startswith("nst_") and n.endswith(".py")]
    if t.gimp2:
        return [(os.path.join(gp, "neural_style_gimp2.py"), "neural_style_gimp2.py", 0o755)] \
            + bridge
    folder = os.path.join(gp, "neural-style")
    main = (os.path.join(folder, "neural-style.py"), "neural-style.py", 0o755)
    extra = [(os.path.join(folder, n), n, 0o644) for n in listdir(folder)
             if n != "neural-style.py" and not n.endswith((".pyc", ".pyo"))
             and not n.startswith(".") and os.path.isfile(os.path.join(folder, n))]
    return [main] + extra + bridge


def core_command(python: str, t: Target) -> list[str]:
    """The command the plug-in starts the core with (written to nst-core.json)."""
    cmd = [python, "-m", "nst_core.worker"]
    if t.flavour == "flatpak":
        # Runs the core on the host, outside GIMP's sandbox; --watch-bus ends it with GIMP.
        cmd = ["flatpak-spawn", "--host", "--watch-bus"] + cmd
    return cmd


def check_targets(source: str, targets: list[Target]) -> None:
    """Before any change: every file to copy is in the checkout, and nothing that is not a
    folder sits where a plug-ins folder goes."""
    missing, blocked = [], []
    for t in targets:
        if t.skipped:
            continue
        missing += [src for src, _, _ in plugin_sources(source, t)
                    if not os.path.isfile(src) and src not in missing]
        p = plugin_folder(t)
        while not os.path.isdir(p) and os.path.dirname(p) != p:
            if os.path.lexists(p):
                blocked.append(p)
                break
            p = os.path.dirname(p)
    if missing:
        raise InstallError(f"The source checkout {source} is incomplete: missing "
                           f"{', '.join(missing)}. Run the installer from a complete checkout, "
                           "or name one with --source.")
    if blocked:
        raise InstallError("{} {} not a folder, and the plug-in goes there. Move {} away (or "
                           "name another plug-ins folder with --gimp-dir), then run the "
                           "installer again.".format(", ".join(blocked),
                                                     "is" if len(blocked) == 1 else "are",
                                                     "it" if len(blocked) == 1 else "them"))


class PluginCopier:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.actions, self.manifest = ctx.actions, ctx.manifest
        self.files_written = 0

    def install(self, t: Target) -> None:
        dest = plugin_folder(t)
        step(f"{t.label} plug-in: {dest}")
        if t.flavour == "flatpak":
            self.manifest.data["flatpak"] = True
        wanted: list[tuple[str, bytes, int]] = []
        for src, name, mode in plugin_sources(self.ctx.source, t):
            with open(src, "rb") as f:
                wanted.append((name, f.read(), mode))
        config = {"version": 1, "command": core_command(self.ctx.venv_python, t)}
        wanted.append((CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode(), 0o644))
        self.make_dirs(dest)
        for tmp in our_temp_files(dest):   # left by an interrupted run
            self.actions.remove(tmp)
        changed = sum(self.write_file(os.path.join(dest, name), data, mode)
                      for name, data, mode in wanted)
        names = {os.path.join(dest, n) for n, _, _ in wanted}
        for path in sorted(self.manifest.files):   # files an older version installed here
            if os.path.dirname(path) == dest and path not in names:
                say(f"    {os.path.basename(path)} is no longer part of the plug-in")
                self.remove_file(path, self.manifest.files.pop(path))
                self.manifest.save()
                changed += 1
        if changed:
            t.result = self.ctx.report.phrase(f"wrote {changed} file(s) in {dest}",
                                              f"write {changed} file(s) in {dest}")
        else:
            t.result = f"already up to date in {dest}"
        say("    " + t.result)

    def make_dirs(self, path: str) -> None:
        todo = []
        while not os.path.isdir(path) and os.path.dirname(path) != path:
            todo.append(path)
            path = os.path.dirname(path)
        for d in reversed(todo):
            self.manifest.add("dirs_created", d)   # journal first: uninstall may remove it
            self.manifest.save()
            self.actions.mkdir(d, 0o755)

    def write_file(self, path: str, data: bytes, mode: int) -> int:
        """Install one file atomically; 1 if it changed, else 0. A file that was there before
        and is not ours is moved to NAME.nst-backup first (put back by --uninstall)."""
        entry = self.manifest.files.get(path)
        digest = sha256_bytes(data)
        if os.path.lexists(path):
            foreign = entry is None or (entry.get("sha256") is None and entry.get("backup")
                                        and not os.path.lexists(entry["backup"]))
            if foreign:
                backup = entry["backup"] if entry and entry.get("backup") else path + BACKUP_SUFFIX
                n = 1
                while os.path.lexists(backup):
                    backup = f"{path}{BACKUP_SUFFIX}.{n}"
                    n += 1
                say(f"    {os.path.basename(path)} was already there and is not ours: moving "
                    f"it to {os.path.basename(backup)}")
                entry = self.manifest.files[path] = {"sha256": None, "backup": backup}
                self.manifest.save()
                self.actions.move(path, backup)
            elif up_to_date(path, digest, mode):
                if entry.get("sha256") != digest:
                    entry["sha256"] = digest
                    self.manifest.save()
                return 0
        if entry is None:
            entry = self.manifest.files[path] = {"sha256": None, "backup": None}
            self.manifest.save()
        self._crash_hook()
        self.actions.write(path, data, mode)
        entry["sha256"] = digest
        self.manifest.save()
        self.files_written += 1
        return 1

    def remove_file(self, path: str, entry: dict) -> None:
        """Remove one file we installed (with its byte-code), putting back what it replaced."""
        if os.path.lexists(path):
            self.actions.remove(path)
        for extra in bytecode_of(path):
            self.actions.remove(extra)
        backup = entry.get("backup")
        if backup and os.path.lexists(backup):
            self.actions.move(backup, path, f"put back {path}")

    def _crash_hook(self) -> None:
        # Tests simulate an interrupted run: stop after this many files.
        limit = os.environ.get("NST_INSTALL_TEST_CRASH_AFTER")
        if limit is not None and self.files_written >= int(limit):
            os._exit(99)


def up_to_date(path: str, digest: str, mode: int) -> bool:
    """A regular file (not a symlink) with this content and mode."""
    if os.path.islink(path) or sha256_file(path) != digest:
        return False
    return os.name == "nt" or (os.stat(path).st_mode & 0o777) == mode


def sandbox_notes(targets: list[Target], ctx: Context) -> None:
    """What Flatpak and Snap GIMPs need from the user, for the summary."""
    report = ctx.report
    if any(t.flavour == "flatpak" and not t.skipped for t in targets):
        state = flatpak_permission()
        if state == "granted":
            report.done.append("Flatpak GIMP may already start programs on the host "
                               "(org.freedesktop.Flatpak): nothing more to do")
        else:
            report.todo.append(
                "Flatpak GIMP: the plug-in starts the core outside the sandbox with "
                "`flatpak-spawn --host`, which GIMP may only do once allowed to talk to "
                "org.freedesktop.Flatpak{}. Allow it (once) with:\n        {}\n      This "
                "lets GIMP start any program on your computer, i.e. it lifts the sandbox; "
                "undo it with: {}".format(
                    "" if state == "missing" else " (could not check whether it may)",
                    FLATPAK_GRANT, FLATPAK_REVOKE))
    if any(t.flavour == "snap" for t in targets):
        report.todo.append(
            "Snap GIMP: the snap is strictly confined. It runs on its own base system (the "
            "environment's Python links to your system's, which the snap cannot see), its "
            "`home` access excludes hidden folders such as ~/.local, and snaps have no "
            "counterpart of `flatpak-spawn --host`; so a Snap GIMP cannot start the core. "
            "Use GIMP from your distribution or from Flathub instead.")


def flatpak_permission() -> str:
    """"granted", "missing" or "unknown": may the Flatpak GIMP talk to org.freedesktop.Flatpak?"""
    exe = shutil.which("flatpak")
    if not exe:
        return "unknown"
    rc, out = run_capture([exe, "info", "--show-permissions", FLATPAK_ID], 30)
    if rc != 0:
        return "unknown"
    return "granted" if re.search(r"org\.freedesktop\.Flatpak\s*=\s*talk", out) else "missing"
