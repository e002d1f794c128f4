#!/usr/bin/env python3
"""A real GIMP 3 in a Debian chroot, for the real-GIMP tests and the dialog screenshot.

    python tests/gimp3/chroot.py build            # once; cached under /var/tmp/nst-gimp3-root
    python tests/gimp3/chroot.py run -- gimp-console-3.0 --version
    python tests/gimp3/chroot.py check            # prints why it cannot run here, if so

The chroot is Debian trixie (GIMP 3.0.x; NST_GIMP3_SUITE=forky gives GIMP 3.2.x), built with
`debootstrap --variant=minbase` and `apt-get install --no-install-recommends gimp python3-gi
gir1.2-gimp-3.0`. A marker file says it is complete; an incomplete one is rebuilt.

Every command runs in its own mount and PID namespaces (`unshare --mount --pid`): /proc, /dev and
the bind mounts (this checkout, the virtual environment and the Python it was made from, at the
same paths, read-only) exist only for that command, and the kernel drops them when it ends, also
when it fails or is killed. The command starts with a clean environment (`env -i PATH=...
HOME=/root`): with the host's PATH (pyenv shims) GIMP's Python plug-ins would pick a `python3`
without `gi`.

Needs: root, util-linux `unshare`, and Debian's package mirror (debootstrap is installed with
apt-get when missing). `unavailable_reason()` says why not, for pytest.skip.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.environ.get("NST_GIMP3_ROOT", "/var/tmp/nst-gimp3-root")
SUITE = os.environ.get("NST_GIMP3_SUITE", "trixie")
PACKAGES = ("gimp", "python3-gi", "gir1.2-gimp-3.0")
# For the screenshot only (installed on demand): an X server, a font, xwd + ImageMagick.
SCREENSHOT_PACKAGES = ("xvfb", "xauth", "x11-apps", "imagemagick", "fonts-dejavu-core",
                       "adwaita-icon-theme")
MARKER = ".nst-gimp3-complete"
STAGE1 = ".nst-debootstrap-complete"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PASS_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


class Unavailable(RuntimeError):
    """The chroot cannot be built or used on this machine (the message says why)."""


def log(*args):
    print("[gimp3-chroot]", *args, file=sys.stderr, flush=True)


# -- host checks ---------------------------------------------------------------------------------


def unavailable_reason() -> str | None:
    """None when a chroot can be built/used here, else a sentence saying why not."""
    if not sys.platform.startswith("linux"):
        return "the real-GIMP tests need Linux (a Debian chroot)"
    if os.geteuid() != 0:
        return "the real-GIMP tests need root (debootstrap, chroot and mounts)"
    if not shutil.which("unshare") or not shutil.which("chroot"):
        return "the real-GIMP tests need util-linux unshare and chroot"
    probe = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c",
                            "mount -t tmpfs none /mnt"], capture_output=True, text=True)
    if probe.returncode:  # e.g. an unprivileged container
        return ("the real-GIMP tests need to create mount and PID namespaces and mount "
                f"(unshare/mount failed here: {probe.stderr.strip()[:200]})")
    if is_complete():
        return None
    if not shutil.which("debootstrap") and not shutil.which("apt-get"):
        return "the real-GIMP tests need debootstrap or apt-get to build a Debian chroot"
    return None


def debian_mirror() -> str:
    """The Debian mirror the host's apt uses (NST_DEBIAN_MIRROR overrides)."""
    if os.environ.get("NST_DEBIAN_MIRROR"):
        return os.environ["NST_DEBIAN_MIRROR"]
    candidates = []
    files = ["/etc/apt/sources.list"]
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        files += [os.path.join(d, f) for f in sorted(os.listdir(d))
                  if f.endswith((".list", ".sources"))]
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("#"):
                continue
            m = re.match(r"^URIs:\s*(.+)$", line) or re.match(
                r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", line)
            if m:
                candidates.extend(m.group(1).split())
    for uri in candidates:  # the main archive, not security or third-party repositories
        u = uri.rstrip("/")
        if u.startswith(("http://", "https://")) and u.endswith("/debian") \
                and "security" not in u:
            return u
    return DEFAULT_MIRROR


def _sh(cmd, **kw):
    log("$", " ".join(shlex.quote(c) for c in cmd))
    return subprocess.run(cmd, check=True, **kw)


def ensure_debootstrap():
    if shutil.which("debootstrap"):
        return
    if not shutil.which("apt-get"):
        raise Unavailable("debootstrap is missing and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        r = subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], env=env,
                           capture_output=True, text=True)
        if r.returncode:
            _sh(["apt-get", "update", "-q"], env=env, capture_output=True)
            _sh(["apt-get", "install", "-y", "-q", "debootstrap"], env=env, capture_output=True)
    except subprocess.CalledProcessError as e:
        raise Unavailable("could not install debootstrap with apt-get: "
                          + (e.stderr or b"").decode(errors="replace")[-500:]) from None


# -- building ------------------------------------------------------------------------------------


def _marker(root=ROOT) -> dict | None:
    try:
        with open(os.path.join(root, MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_complete(root=ROOT, packages=PACKAGES) -> bool:
    m = _marker(root)
    return bool(m) and set(packages) <= set(m.get("packages", ()))


def _mounts_under(root) -> list[str]:
    root = os.path.realpath(root).rstrip("/") + "/"
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].replace("\\040", " ")
            if (target + "/").startswith(root):
                out.append(target)
    return out


@contextlib.contextmanager
def _lock(root=ROOT):
    os.makedirs(os.path.dirname(root) or "/", exist_ok=True)
    with open(root + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _wipe(root):
    mounted = _mounts_under(root)
    if mounted:  # never rm -rf through a bind mount of someone's files
        raise Unavailable(f"{root} is incomplete and has mounts under it ({mounted[0]}); "
                          "unmount them and try again")
    log("removing incomplete", root)
    subprocess.run(["rm", "-rf", "--one-file-system", root], check=True)


def ensure(packages=PACKAGES, root=ROOT) -> str:
    """Build the chroot (or add packages to it) unless it is already complete. Returns root."""
    reason = unavailable_reason()
    if reason:
        raise Unavailable(reason)
    if is_complete(root, packages):
        return root
    with _lock(root):
        if is_complete(root, packages):
            return root
        t0 = time.monotonic()
        if not os.path.exists(os.path.join(root, STAGE1)):
            if os.path.exists(root):
                _wipe(root)
            ensure_debootstrap()
            mirror = debian_mirror()
            extra = []  # an older debootstrap knows no script for a newer suite: sid's fits
            scripts = "/usr/share/debootstrap/scripts"
            if os.path.isdir(scripts) and not os.path.exists(os.path.join(scripts, SUITE)):
                extra = [os.path.join(scripts, "sid")]
            # In a private mount namespace: whatever debootstrap mounts goes away with it.
            try:
                _sh(["unshare", "--mount", "--fork", "--kill-child", "debootstrap",
                     "--variant=minbase", SUITE, root, mirror] + extra,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            except subprocess.CalledProcessError as e:
                tail = e.stdout.decode(errors="replace")[-1500:] if e.stdout else ""
                raise Unavailable(f"debootstrap {SUITE} from {mirror} failed: {tail}") from None
            with open(os.path.join(root, STAGE1), "w") as f:
                f.write(mirror + "\n")
            log(f"debootstrap took {time.monotonic() - t0:.0f} s")
        # Services must not start inside the chroot.
        policy = os.path.join(root, "usr/sbin/policy-rc.d")
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        with contextlib.suppress(OSError):
            shutil.copyfile("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
        old = set((_marker(root) or {}).get("packages", ()))
        want = sorted(old | set(packages))
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        t1 = time.monotonic()
        # Testing suites' Release files expire within days; a mirror snapshot or a clock that is
        # off would then refuse them. Stable suites carry no expiry.
        script = ("apt-get update -q -o Acquire::Check-Valid-Until=false"
                  " && apt-get install -y -q --no-install-recommends " + " ".join(want)
                  + " && apt-get clean")
        r = run(["sh", "-c", script], env=env, root=root, capture=True, check=False)
        if r.returncode:
            raise Unavailable(f"apt-get install in the chroot failed: {r.stdout[-1500:]}")
        log(f"apt-get install took {time.monotonic() - t1:.0f} s")
        with open(os.path.join(root, MARKER), "w") as f:
            json.dump({"suite": SUITE, "packages": want, "built": time.time()}, f)
        return root


# -- running -------------------------------------------------------------------------------------


def _dedupe(paths):
    """Real paths, without those already inside another one."""
    out = []
    for p in sorted({os.path.realpath(p) for p in paths if p}, key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def run(argv, binds=(), env=None, root=ROOT, capture=True, check=False, timeout=None,
        writable_binds=(), home="/root", input=None, overlays=()):
    """Run argv inside the chroot with a clean environment (plus `env`) and the given host paths
    bind-mounted read-only at the same place (writable_binds: read-write; overlays: (host path,
    chroot path) pairs mounted read-only after those, e.g. over a folder inside a bound one).
    Mounts live in a private mount namespace, so they vanish when the command ends however it
    ends."""
    q = shlex.quote
    lines = ["set -e",
             f"mount -t proc proc {q(root + '/proc')}",
             f"mount --bind /dev {q(root + '/dev')}",
             f"mount -t tmpfs -o mode=1777 shm {q(root + '/dev/shm')}"]
    for path in _dedupe(list(binds) + list(writable_binds)):
        if path in SYSTEM_DIRS:
            raise ValueError(f"refusing to bind {path} over the chroot's own")
        target = root + path
        rw = any(os.path.realpath(w) == path for w in writable_binds)
        if os.path.isdir(path):
            lines.append(f"mkdir -p {q(target)}")
        else:  # a single file (e.g. /usr/bin/python3.11): bind it over an empty one
            lines.append(f"mkdir -p {q(os.path.dirname(target))}")
            lines.append(f"[ -e {q(target)} ] || : > {q(target)}")
        lines.append(f"mount --bind {q(path)} {q(target)}")
        if not rw:
            lines.append(f"mount -o remount,bind,ro {q(target)}")
    for source, path in overlays:
        lines.append(f"mount --bind {q(source)} {q(root + path)}")
        lines.append(f"mount -o remount,bind,ro {q(root + path)}")
    clean = {"PATH": CLEAN_PATH, "HOME": home, "LANG": "C.UTF-8", "TERM": "dumb"}
    clean.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
    clean.update(env or {})
    envargs = " ".join(q(f"{k}={v}") for k, v in clean.items())
    # Not exec: this shell stays PID 1 of the new PID namespace and reaps orphans (a core whose
    # plug-in was killed); when it exits, the kernel ends whatever is left in the namespace.
    lines.append(f"env -i {envargs} chroot {q(root)} " + " ".join(q(a) for a in argv))
    script = "\n".join(lines)
    cmd = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
           "sh", "-c", script]
    kw = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) if capture else {}
    try:
        r = subprocess.run(cmd, timeout=timeout, input=input, **kw)
    except subprocess.TimeoutExpired as e:  # --kill-child takes the chroot's process with it
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        r = subprocess.CompletedProcess(cmd, 124, out or "", None)
    if check and r.returncode:
        raise subprocess.CalledProcessError(r.returncode, argv, r.stdout)
    return r


def gimp_version(root=ROOT) -> str:
    """The chroot's GIMP version, e.g. "3.0.4"."""
    out = run(["gimp-console", "--version"], root=root).stdout or ""
    m = re.search(r"version (\d+\.\d+(?:\.\d+)?)", out)
    if not m:
        raise Unavailable(f"cannot tell the chroot's GIMP version: {out[-300:]}")
    return m.group(1)


# Never bind these over the chroot's own: it would replace its whole system (GIMP included).
SYSTEM_DIRS = {"/", "/usr", "/usr/local", "/usr/lib", "/usr/bin", "/bin", "/lib", "/lib64",
               "/opt", "/etc", "/var", "/tmp", "/root", "/home"}
_ASK = """import json, os, sys, sysconfig
p = sysconfig.get_paths()
print(json.dumps(dict(prefix=sys.prefix, base_prefix=sys.base_prefix,
                      executable=os.path.realpath(sys.executable),
                      stdlib=p["stdlib"], platstdlib=p["platstdlib"])))"""


def host_python(python, scratch) -> tuple[list[str], list[tuple[str, str]]]:
    """(binds, overlays) that make `python` (a virtual environment's python) run in the chroot
    as it does here: the environment and the Python installation it was made from
    (sys.base_prefix), found by asking it. A self-contained installation (pyenv, uv, conda,
    /opt/python...) is bound whole. For the system's Python (base prefix /usr) only its
    interpreter, its standard library and a libpython it links are bound - the rest of /usr
    stays the chroot's - and, since the environment's bin/python leads through /usr/bin/python3
    (the chroot's own Python there), its bin folder is overlaid, in the chroot only, with links
    straight to the interpreter (made under `scratch`, a host folder the chroot can see)."""
    info = json.loads(subprocess.run([python, "-c", _ASK], capture_output=True, text=True,
                                     check=True).stdout)
    binds, overlays = [info["prefix"]], []
    base = os.path.realpath(info["base_prefix"])
    if base not in SYSTEM_DIRS:
        return binds + [base, os.path.dirname(info["executable"])], overlays
    exe = info["executable"]
    binds += [exe, info["stdlib"], info["platstdlib"]]
    ldd = subprocess.run(["ldd", exe], capture_output=True, text=True).stdout
    binds += [m.group(1) for m in re.finditer(r"=>\s*(\S*libpython\S*)", ldd)]
    venv_bin = os.path.join(info["prefix"], "bin")
    links = os.path.join(scratch, "venv-bin")
    os.makedirs(links, exist_ok=True)
    for name in os.listdir(venv_bin):
        link, target = os.path.join(links, name), os.path.join(venv_bin, name)
        if os.path.lexists(link):
            continue
        if name.startswith("python"):
            os.symlink(exe, link)
        elif os.path.isfile(target):  # scripts (nst, pip...): their #! names bin/python
            shutil.copy2(target, link)
    return binds, [(links, venv_bin)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check")
    b = sub.add_parser("build")
    b.add_argument("--screenshot", action="store_true", help="also install Xvfb etc.")
    r = sub.add_parser("run")
    r.add_argument("--bind", action="append", default=[], help="host path to bind read-only")
    r.add_argument("--bind-rw", action="append", default=[], help="host path to bind writable")
    r.add_argument("--env", action="append", default=[], help="NAME=VALUE for the command")
    r.add_argument("argv", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if a.cmd == "check":
        reason = unavailable_reason()
        print(reason or f"ok ({'built' if is_complete() else 'not built yet'}: {ROOT})")
        return 1 if reason else 0
    try:
        if a.cmd == "build":
            print(ensure(PACKAGES + (SCREENSHOT_PACKAGES if a.screenshot else ())))
            return 0
        ensure()
    except Unavailable as e:
        print(f"unavailable: {e}", file=sys.stderr)
        return 2
    argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    env = dict(e.split("=", 1) for e in a.env)
    return run(argv, binds=a.bind, writable_binds=a.bind_rw, env=env, capture=False).returncode


if __name__ == "__main__":
    sys.exit(main())
