"""A private sshd on this machine, for the remote-core tests (tests/test_remote_core.py, and a
GIMP 3 run through it in tests/test_gimp3.py): Debian's openssh-server (installed as root when
missing) on a free port of 127.0.0.1, with a host key and user keys made here.
NST_REQUIRE_SSH=1 (CI) turns a skip into a failure."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests import apt

SSHD = "/usr/sbin/sshd"
NST = str(Path(sys.executable).with_name("nst"))  # the venv's `nst`, as the README's example


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout=20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"sshd exited: {proc.stderr.read()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"sshd did not listen on port {port} within {timeout} s")


class Remote:
    """A private sshd on 127.0.0.1 and the ssh command line that reaches it."""

    def __init__(self, folder: Path):
        self.folder = folder
        for name in ("host_key", "user_key", "other_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(folder / name)], check=True)
        shutil.copy(folder / "user_key.pub", folder / "authorized_keys")
        self.port = free_port()
        config = folder / "sshd_config"
        config.write_text(textwrap.dedent(f"""\
            Port {self.port}
            ListenAddress 127.0.0.1
            HostKey {folder / "host_key"}
            PidFile {folder / "sshd.pid"}
            AuthorizedKeysFile {folder / "authorized_keys"}
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            UsePAM no
            StrictModes no
            """))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                     stderr=subprocess.PIPE, text=True)
        _wait_listening(self.port, self.proc)

    def command(self, key="user_key", port=None) -> list[str]:
        """The core's command through ssh: `nst worker` on the other side, as the README says."""
        return self.ssh(key, port) + [NST, "worker"]

    def ssh(self, key="user_key", port=None) -> list[str]:
        return ["ssh", "-p", str(port or self.port), "-i", str(self.folder / key),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                "127.0.0.1"]

    def cores(self) -> list[psutil.Process]:
        """The cores running through this sshd (its descendants running `nst worker`)."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for p in children:
            try:
                if "worker" in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
            except psutil.NoSuchProcess:
                pass
        return found

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start(folder: Path) -> Remote:
    """A running Remote, or the test is skipped (failed under NST_REQUIRE_SSH=1) with why."""
    reason = apt.ensure(("openssh-server", "openssh-client"),
                        lambda: os.access(SSHD, os.X_OK) and bool(shutil.which("ssh")))
    if reason is None and os.geteuid() != 0:
        reason = "a private sshd for this user needs root here (its privilege separation)"
    if reason:
        if os.environ.get("NST_REQUIRE_SSH") == "1":
            pytest.fail(f"NST_REQUIRE_SSH=1 but {reason}")
        pytest.skip(reason)
    return Remote(folder)
