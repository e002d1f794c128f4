"""The run's report: what was done (or would be), what the user still has to do, warnings;
printed at the end as the summary."""
from __future__ import annotations

from . import FLATPAK_REVOKE, MENU
from .console import say


class Report:
    def __init__(self, dry: bool):
        self.dry = dry
        self.done: list[str] = []
        self.todo: list[str] = []
        self.warnings: list[str] = []
        self.weights_error: str | None = None

    def phrase(self, text: str, plan: str | None = None) -> str:
        """text; in a dry run "would " + plan (the same words unless given)."""
        return "would " + (plan or text) if self.dry else text

    def did(self, text: str, plan: str | None = None) -> None:
        """One thing done (or in a dry run, that would be), for the summary."""
        self.done.append(self.phrase(text, plan))

    def heading(self, title: str) -> None:
        say(title + (" (dry run: nothing is changed)" if self.dry else ""))

    def print_install(self, targets: list, nst: str, script: str) -> None:
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
        if self.dry:
            return
        say()
        if any(not t.skipped for t in targets):
            say(f"How to start: (re)start GIMP, open an image and choose {MENU}")
        say(f"Check the core: {nst} doctor    Try it without GIMP: {nst} demo")
        say(f"Upgrade: run this installer again.  Remove: {script} --uninstall")

    def print_uninstall(self, failed: list[str], manifest_path: str, flatpak: bool) -> None:
        say()
        for w in self.warnings:
            say("  ! " + w)
        if failed:
            say("Some things could not be removed:")
            for item in failed:
                say("  ! " + item)
            say("Close GIMP (it may hold the files open), fix the cause, and run --uninstall "
                f"again: the manifest {manifest_path} was kept.")
            return
        if self.dry:
            say("Dry run: nothing was changed.")
            return
        say("Removed everything the installer had installed. Restart GIMP.")
        if flatpak:
            say("If you allowed the Flatpak GIMP to start host programs for this plug-in, "
                "undo it with: " + FLATPAK_REVOKE)
