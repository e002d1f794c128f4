"""The command line: options, checks that turn bad input into one clear error before any work,
and the translation of every failure into one message and an exit status (no tracebacks)."""
from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback

from . import APP
from .console import say
from .context import Context, full_path
from .environment import existing_non_venv
from .errors import (
    EXIT_ENV,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    InstallError,
    space_message,
)
from .installation import install
from .uninstall import uninstall

DESCRIPTION = ("Neural Style for GIMP: the one-command installer (any Python 3.8+, standard "
               "library only).")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="install.py", description=DESCRIPTION,
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
    if args.torch == "cuda" and args.platform == "darwin":
        p.error("there is no CUDA PyTorch for macOS; use --torch auto (the default wheel, which "
                "uses the GPU through MPS on Apple silicon) or --torch cpu")
    if args.torch_index and not args.torch_index.startswith(("https://", "http://", "file:")):
        p.error(f"--torch-index {args.torch_index}: give the index's URL "
                "(https://..., http://... or file:...)")
    return args


def check_paths(ctx: Context) -> None:
    """Paths that cannot work: one error, before any change."""
    def bad(message: str, code: int = EXIT_USAGE) -> InstallError:
        return InstallError(message, code)

    args = ctx.args
    if args.home is not None and not os.path.isdir(full_path(args.home)):
        raise bad(f"--home {args.home}: there is no such folder.")
    if args.uninstall:
        return
    if args.source is not None and not os.path.isdir(full_path(args.source)):
        raise bad(f"--source {args.source}: there is no such folder. Name the project "
                  "checkout (the folder holding pyproject.toml and gimp_plugin/).")
    if args.weights_from and not args.skip_weights and \
            not os.path.isfile(full_path(args.weights_from)):
        raise bad(f"--from {args.weights_from}: there is no such file. Name the weights file "
                  "(vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5), or leave --from out to "
                  "download it.")
    if args.python and not args.skip_env and not os.path.isfile(full_path(args.python)):
        raise bad(f"--python {args.python}: there is no such program. Name a Python 3.9+ "
                  "(e.g. /usr/bin/python3).")
    for d in args.gimp_dir or []:
        if os.path.exists(full_path(d)) and not os.path.isdir(full_path(d)):
            raise bad(f"--gimp-dir {d} is a file, not a folder. Name GIMP's plug-ins folder "
                      "(Edit > Preferences > Folders > Plug-ins).")
    if os.path.exists(ctx.venv) and not os.path.isdir(ctx.venv):
        raise bad(f"The environment's place {ctx.venv} is a file, not a folder. Choose another "
                  "place with --venv PATH.")
    if not args.skip_env and existing_non_venv(ctx.venv):
        raise bad(f"{ctx.venv} exists but is not a Python virtual environment. Choose another "
                  "place with --venv PATH (or empty that folder), then run the installer "
                  "again.", EXIT_ENV)


def main(argv: list[str] | None, script: str) -> int:
    """Run the installer; script: the path of install.py (for the messages)."""
    args = parse_args(argv)
    ctx = None
    try:
        ctx = Context(args, script)   # reads the manifest; changes nothing
        check_paths(ctx)
        return uninstall(ctx) if args.uninstall else install(ctx)
    except InstallError as e:
        code, message = e.code, e.message
    except KeyboardInterrupt:
        say()
        say("Interrupted. Run the installer again to finish (it continues where it stopped), "
            "or run it with --uninstall to remove what was installed so far.")
        return EXIT_INTERRUPTED
    except OSError as e:
        code, message = failure_message(e)
    except Exception as e:  # a bug: still one message and the way out, not a traceback
        if os.environ.get("NST_INSTALL_DEBUG"):
            traceback.print_exc()
        code, message = EXIT_ERROR, (
            f"Unexpected failure ({type(e).__name__}: {e}). Please report it; set "
            "NST_INSTALL_DEBUG=1 to see where it happened.")
    say()
    say("ERROR: " + message)
    if ctx is not None:
        say_what_is_left(ctx)
    return code


def failure_message(e: OSError) -> tuple[int, str]:
    """One message for a file-system failure: what, where, and what to do."""
    where = e.filename or "a file"
    if e.errno == errno.ENOSPC:
        return EXIT_ENV, space_message(os.path.dirname(e.filename or "") or "the target folder",
                                       "the installation")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EXIT_ERROR, (f"no permission to write {where} ({e.strerror}). Fix the folder's "
                            "permissions (do not run the installer with sudo), then run it "
                            "again: it continues where it stopped.")
    return EXIT_ERROR, f"{e.strerror or e} ({where}). Fix the cause, then run the installer again."


def say_what_is_left(ctx: Context) -> None:
    """After a failure: whether anything is left, and how to finish or undo it."""
    if ctx.args.uninstall:
        if ctx.manifest.exists:
            say(f"Nothing more was removed; the manifest {ctx.manifest.path} still lists what "
                "is installed. Run --uninstall again once the cause is fixed.")
        return
    try:
        gone = ctx.manifest.drop_if_empty()
    except OSError:
        gone = False
    if not gone and ctx.manifest.state == "installing":   # else: stopped before any change
        say(f"What is installed so far is listed in {ctx.manifest.path}. Run the installer "
            f"again to finish, or `{ctx.script} --uninstall` to remove it.")
