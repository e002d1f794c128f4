"""Debian packages a test needs (chromium, sshd), installed as root with apt-get when missing,
as tests/gimp3/chroot.py does for debootstrap. Each fixture skips with the reason where they
cannot be installed, or fails where CI requires them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable


def ensure(packages: tuple[str, ...], present: Callable[[], bool]) -> str | None:
    """None when present() holds (after installing `packages` if need be), else why not."""
    if present():
        return None
    names = " ".join(packages)
    if not shutil.which("apt-get"):
        return f"{names} missing and there is no apt-get to install them"
    if os.geteuid() != 0:
        return f"{names} missing; installing them needs root: apt-get install {names}"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    r = subprocess.run(install, env=env, capture_output=True, text=True)
    if r.returncode:  # the package lists may be stale or absent
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        r = subprocess.run(install, env=env, capture_output=True, text=True)
    if r.returncode or not present():
        return f"apt-get install {names} failed: {(r.stderr or r.stdout)[-500:]}"
    return None
