"""Fault injection between the plug-in and the core: the core killed while loading, while
stylizing and in the middle of writing its result. Each time the plug-in's bridge gives one
BridgeError naming the log (the plug-ins then add nothing to the image), no process is left
behind, and the next run works."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import psutil
import pytest

from .test_bridge import core_config, isolated, nst_bridge  # noqa: F401 - isolated: autouse
from .worker_client import FAST, LONG, engine_run, style_png

pytestmark = engine_run
CORE = [sys.executable, "-m", "nst_core.worker"]
W, H = 40, 32
# Runs the real core and relays its output, but dies (SIGKILL) half way through the result.
DIE_WRITING = r"""
import os, signal, subprocess, sys
core = subprocess.Popen([sys.executable, "-m", "nst_core.worker"], stdout=subprocess.PIPE)
out = os.fdopen(1, "wb", buffering=0)
while True:
    line = core.stdout.readline()
    if not line:
        sys.exit(1)
    out.write(line)
    if b'"type":"result"' in line:
        out.write(core.stdout.read(16))  # a few bytes of the pixels
        core.kill()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def layer():
    data = (np.arange(W * H * 3) % 251).astype(np.uint8).tobytes()
    return {"width": W, "height": H, "channels": 3, "format": "u8", "data": data}


def stylize(tmp_path, command, options, on_progress=None):
    style = tmp_path / "style.png"
    style.write_bytes(style_png())
    return nst_bridge.run(dict(options, size_mode="custom"), layer(), [str(style)],
                          on_progress=on_progress, config_dir=core_config(tmp_path, command))


def kill_the_core(when):
    """An on_progress callback that SIGKILLs the core (this process's child) once `when`."""
    def on_progress(fraction, text):
        if when(fraction, text):
            for child in psutil.Process().children(recursive=True):
                os.kill(child.pid, signal.SIGKILL)
    return on_progress


@pytest.mark.parametrize("phase, when", [
    ("loading", lambda fraction, text: True),  # the first progress message comes while loading
    ("stylizing", lambda fraction, text: fraction > 0.05),
])
def test_a_core_killed_mid_run_is_one_error_and_the_next_run_works(tmp_path, phase, when):
    with pytest.raises(nst_bridge.BridgeError) as caught:
        stylize(tmp_path, CORE, LONG, kill_the_core(when))
    assert ".log" in caught.value.message, caught.value.message
    result = stylize(tmp_path, CORE, FAST)
    assert len(result["data"]) == W * H * 3


def test_a_core_that_dies_while_writing_its_result_is_one_error(tmp_path):
    with pytest.raises(nst_bridge.BridgeError) as caught:
        stylize(tmp_path, [sys.executable, "-c", DIE_WRITING], FAST)
    assert ".log" in caught.value.message, caught.value.message
    result = stylize(tmp_path, CORE, FAST)
    assert len(result["data"]) == W * H * 3
