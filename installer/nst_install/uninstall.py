"""--uninstall: remove exactly what the manifest lists, put back what our files replaced, and
keep everything else - including a file of ours that was changed after it was installed."""
from __future__ import annotations

import os

from . import APP
from .console import say, step
from .context import Context
from .errors import EXIT_LEFTOVER, EXIT_OK
from .files import bytecode_of, our_temp_files, sha256_file


def uninstall(ctx: Context) -> int:
    m = ctx.manifest
    ctx.report.heading("Neural Style for GIMP: uninstall")
    if not m.exists:
        say(f"Nothing to remove: there is no install manifest at {m.path}.")
        return EXIT_OK
    step("Plug-in files")
    remove_plugin_files(ctx)
    step("Core environment")
    remove_environment(ctx)
    act = ctx.actions
    if not act.failed:
        step("The manifest")
        act.remove(m.path)
        for d in reversed([ctx.data_dir] + m.data["data_dirs_created"]):
            if act.emptied(d):
                act.rmdir(d)
    ctx.report.print_uninstall(act.failed, m.path, bool(m.data.get("flatpak")))
    return EXIT_LEFTOVER if act.failed else EXIT_OK


def changed_since_installed(path: str, entry: dict) -> bool:
    """Whether the file at path is no longer the one we wrote (the user's now)."""
    digest = entry.get("sha256")
    return digest is not None and (os.path.islink(path) or sha256_file(path) != digest)


def remove_plugin_files(ctx: Context) -> None:
    act, m = ctx.actions, ctx.manifest
    for path, entry in sorted(m.files.items()):
        backup = entry.get("backup")
        if entry.get("sha256") is None and backup and not os.path.lexists(backup):
            continue  # interrupted before the original was moved aside: it is not ours
        if os.path.lexists(path):
            if changed_since_installed(path, entry):
                kept = f"Kept {path}: it was changed after it was installed. Delete it if you " \
                       "do not need it"
                if backup and os.path.lexists(backup):
                    kept += f"; the file it replaced is {backup}"
                ctx.report.warnings.append(kept + ".")
                continue
            act.remove(path)
        for extra in bytecode_of(path):
            act.remove(extra)
        if backup and os.path.lexists(backup):
            act.move(backup, path, f"put back {path}")
    for d in sorted({os.path.dirname(p) for p in m.files}):
        for junk in our_temp_files(d):   # temp files of an interrupted run
            act.remove(junk)
        cache = os.path.join(d, "__pycache__")
        if act.emptied(cache):
            act.rmdir(cache)
    for d in reversed(m.data["dirs_created"]):
        if act.emptied(d):
            act.rmdir(d)
        elif os.path.isdir(d):
            say(f"    keeping {d}: it holds files that are not ours")


def remove_environment(ctx: Context) -> None:
    act, m = ctx.actions, ctx.manifest
    for venv in m.data["venvs_created"]:
        if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            act.rmtree(venv, "the environment")
    for venv in m.data["core_installed_into"]:
        py = ctx.layout.venv_python(venv)
        if os.path.isfile(py):
            rc, tail = act.run([py, "-m", "pip", "uninstall", "-y",
                                "--disable-pip-version-check", APP],
                               f"uninstall the core from {venv}")
            if rc != 0:
                act.failed.append(f"uninstall the core from {venv}: {' | '.join(tail[-3:])}")
    for marker in m.data["env_markers"]:
        if os.path.isfile(marker):
            act.remove(marker)
    weights = m.data.get("weights") or {}
    path = weights.get("path")
    if weights.get("fetched") and path and os.path.isfile(path):
        act.remove(path)
    elif path:
        say(f"    keeping the weights {path}: they were there before")
