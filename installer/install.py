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
already there are moved aside (NAME.nst-backup) and put back on uninstall; a file of ours that
was changed after it was installed is kept; nothing else in the plug-in folders is touched.
Every file is written atomically (a new temp file beside it, then renamed over it).

Exit status: 0 done; 1 unexpected error; 2 bad command line; 3 no GIMP to install into;
4 the core environment could not be set up (Python, network, disk space); 5 the weights could
not be fetched (everything else was installed); 6 uninstall left something behind.

This file is only the entry point; the installer itself is the package nst_install/ beside it
(its __init__.py lists the modules).
"""
import os
import sys

if sys.version_info < (3, 8):  # noqa: UP036 - the wrappers check this first, too
    sys.exit("This installer needs Python 3.8 or newer; this is Python {}.{}. Install a newer "
             "Python (python.org or your package manager) and run it again with that."
             .format(*sys.version_info[:2]))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nst_install.cli import main  # noqa: E402 - after the version check, which must run first

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.path.abspath(__file__)))
