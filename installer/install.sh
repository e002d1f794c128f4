#!/bin/sh
# Neural Style for GIMP: one-command install on Linux and macOS.
#   sh installer/install.sh [options]        (options: see --help; e.g. --dry-run, --uninstall)
# Picks a Python for installer/install.py: the core needs 3.9 or newer (NST_PYTHON=/path/to/python
# to choose one); a 3.8 is used only when nothing newer exists (it can still --uninstall, or make
# the environment from a newer Python named with --python).
here=$(cd "$(dirname "$0")" && pwd)

has_version() {  # has_version PYTHON MINOR: is PYTHON a working Python 3.MINOR or newer?
    command -v "$1" >/dev/null 2>&1 &&
        "$1" -c "import sys; sys.exit(0 if sys.version_info >= (3, $2) else 1)" >/dev/null 2>&1
}

pick=""
for py in ${NST_PYTHON:+"$NST_PYTHON"} python3.12 python3.11 python3.13 python3.10 python3.9 \
          python3 python; do
    if has_version "$py" 9; then pick=$py; break; fi
done
if [ -z "$pick" ]; then
    for py in python3.8 python3 python; do
        if has_version "$py" 8; then pick=$py; break; fi
    done
fi
if [ -z "$pick" ]; then
    echo "Neural Style for GIMP needs Python 3.9 or newer, and none was found." >&2
    echo "Install it (Debian/Ubuntu: sudo apt install python3 python3-venv; Fedora: sudo dnf" >&2
    echo "install python3; macOS: python.org or 'brew install python'), then run this again," >&2
    echo "or name one: NST_PYTHON=/path/to/python3 sh $0" >&2
    exit 4
fi
exec "$pick" "$here/install.py" "$@"
