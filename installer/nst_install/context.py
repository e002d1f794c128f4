"""One run's settings and shared objects, made once from the command line."""
from __future__ import annotations

import argparse
import os

from . import MANIFEST_NAME
from .actions import Actions
from .layout import Layout
from .manifest import Manifest
from .summary import Report


def full_path(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


class Context:
    def __init__(self, args: argparse.Namespace, script: str):
        self.args = args
        self.script = script              # install.py, as the user should run it again
        home = full_path(args.home or "~")
        # A home given on the command line (tests) means: ignore XDG_*, APPDATA, NST_HOME.
        env = {} if args.home is not None else dict(os.environ)
        self.layout = Layout(args.platform, home, env)
        self.data_dir = self.layout.data_dir()
        self.default_venv = os.path.join(self.data_dir, "venv")
        self.venv = full_path(args.venv) if args.venv else self.default_venv
        self.source = full_path(args.source or os.path.dirname(os.path.dirname(script)))
        self.actions = Actions(args.dry_run, keep_going=args.uninstall)
        # The dry run is decided here, by the actions object: the manifest is then never saved
        # and the report says "would ...".
        self.manifest = Manifest(os.path.join(self.data_dir, MANIFEST_NAME),
                                 read_only=self.actions.dry)
        self.report = Report(self.actions.dry)

    @property
    def venv_python(self) -> str:
        return self.layout.venv_python(self.venv)
