#!/bin/sh
# Screenshot of the Neural Style dialog in a real GIMP 3 window -> docs/gimp-dialog.png
# (or the path given). Builds/reuses the Debian chroot (needs root and Debian's mirror) and the
# project's virtual environment (make setup weights). Not part of the test suite.
set -eu
cd "$(dirname "$0")/../.."
exec "${PYTHON:-.venv/bin/python}" -m tests.gimp3.screenshot "$@"
