"""The core on another machine, as the README offers it: NST_CORE_COMMAND="ssh HOST nst worker".

A real sshd (Debian's openssh-server, installed as root when missing) listens on a private port
of this machine with a host key and a user key made here; the plug-ins' bridge runs the core
through the real ssh client. Checked: a run paints through it; a cancel stops the remote core
within a second; a plug-in killed mid-run leaves no remote core behind; a refused key or a host
that does not answer is one message saying so. NST_REQUIRE_SSH=1 (CI) turns a skip into a
failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from tests.remote import Remote, free_port, start
from tests.test_bridge import BRIDGE, content, nst_bridge, style_file
from tests.worker_client import engine_run

pytestmark = engine_run

DRAFT = {"preset": "draft", "size_mode": "custom", "size": 48, "device": "cpu"}
LONG = dict(DRAFT, size=64, iterations=5000)


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    r = start(tmp_path_factory.mktemp("sshd"))
    yield r
    r.close()


def core_command(remote: Remote, **ssh) -> str:
    return " ".join(remote.command(**ssh))


def test_a_run_through_ssh_paints_the_layer(remote, tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CORE_COMMAND", core_command(remote))
    layer = content(40, 32, 4, "u16")
    result = nst_bridge.run(DRAFT, layer, [style_file(tmp_path)])
    assert (result["width"], result["height"], result["channels"], result["format"]) == \
        (40, 32, 4, "u16")
    assert result["data"] != layer["data"]  # painted
    assert not remote.cores()


def _wait_for_core(remote: Remote, timeout=60.0) -> psutil.Process:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        cores = remote.cores()
        if cores:
            return cores[0]
        time.sleep(0.1)
    pytest.fail("no core started through ssh")


def _gone_within(remote: Remote, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not remote.cores():
            return True
        time.sleep(0.05)
    return False


def test_cancel_stops_the_remote_core_within_a_second(remote, tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CORE_COMMAND", core_command(remote))
    painting, cancel, errors = threading.Event(), threading.Event(), []

    def on_progress(fraction, text):
        if "iteration" in text.lower() or fraction > 0:
            painting.set()

    def run():
        try:
            nst_bridge.run(LONG, content(), [style_file(tmp_path)], on_progress=on_progress,
                           should_cancel=cancel.is_set)
        except nst_bridge.BridgeError as e:
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    assert painting.wait(120), "the remote core never reported progress"
    core = _wait_for_core(remote)
    cancel.set()
    assert _gone_within(remote, 1.5), f"remote core {core.pid} still running after the cancel"
    thread.join(30)
    assert errors and errors[0].kind == "cancelled"


def test_a_plugin_killed_mid_run_leaves_no_remote_core(remote, tmp_path):
    """GIMP kills a plug-in whose user closed the image or quit: the ssh client loses its input,
    the remote core its stdin, and it stops."""
    script = textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(BRIDGE.parent)!r})
        import nst_bridge
        from tests.test_bridge import content
        nst_bridge.run({LONG!r}, content(), [{style_file(tmp_path)!r}])
        """)
    env = dict(os.environ, NST_CORE_COMMAND=core_command(remote))
    plugin = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=BRIDGE.parents[1])
    try:
        core = _wait_for_core(remote)
        time.sleep(1.0)  # painting
        client = [p for p in psutil.Process(plugin.pid).children() if p.name() == "ssh"]
        plugin.send_signal(signal.SIGKILL)
        plugin.wait(10)
        assert _gone_within(remote, 5.0), f"remote core {core.pid} outlived the plug-in"
        for p in client:
            p.wait(5)  # the local ssh client ends too
    finally:
        if plugin.poll() is None:
            plugin.kill()


@pytest.mark.parametrize("how", ["refused key", "nothing listening"])
def test_an_unreachable_remote_core_is_one_message_saying_so(remote, tmp_path, monkeypatch,
                                                             how):
    ssh = {"key": "other_key"} if how == "refused key" else {"port": free_port()}
    monkeypatch.setenv("NST_CORE_COMMAND", core_command(remote, **ssh))
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run(DRAFT, content(), [style_file(tmp_path)])
    message = e.value.message
    assert e.value.kind == "core_missing"
    assert "could not be reached over ssh" in message and "127.0.0.1" in message
    assert ("Permission denied" if how == "refused key" else "Connection refused") in message
    assert "NST_CORE_COMMAND" in message and message.splitlines()[-1].startswith("Log: ")
