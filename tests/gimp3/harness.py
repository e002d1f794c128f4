"""Host side of the real-GIMP runs: a session folder inside the chroot, the plug-in installed into
a fresh GIMP profile there, and GIMP started headless (gimp-console) or with its GUI on Xvfb.

Used by tests/test_gimp3.py and tests/gimp3/screenshot.py. Paths inside the chroot are the host
paths minus the chroot's root; this checkout, the virtual environment, the Python it was made from
and the weights folder are bind-mounted read-only at their own paths, so the installed
nst-core.json (`<venv>/bin/python -m nst_core.worker`) starts the real core.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.gimp3 import chroot

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "tests" / "gimp3"
# For the GUI runs (dialog, undo, screenshot): an X server, a window manager, xdotool.
GUI_PACKAGES = ("xvfb", "xdotool", "openbox")


@dataclass
class Session:
    root: str
    version: str  # e.g. "3.0.4"
    dir: Path  # host path of the session folder (inside the chroot's /tmp)
    python: str
    weights_dir: str
    binds: list = field(default_factory=list)
    overlays: list = field(default_factory=list)
    build_s: float = 0.0

    def inside(self, path) -> str:
        """The chroot's view of a host path under the session folder."""
        return "/" + str(Path(path).relative_to(self.root))

    @property
    def home(self) -> Path:
        return self.dir / "home"

    @property
    def profile(self) -> Path:
        """GIMP 3.0 keeps its profile in ~/.config/GIMP/3.0, GIMP 3.2 in ~/.config/GIMP/3.2."""
        return self.home / ".config" / "GIMP" / ".".join(self.version.split(".")[:2])

    @property
    def core_config(self) -> Path:
        return self.profile / "plug-ins" / "neural-style" / "nst-core.json"

    def env(self, **extra) -> dict:
        env = {"HOME": self.inside(self.home), "NST_HOME": self.weights_dir}
        env.update(extra)
        return env


def open_session(packages=chroot.PACKAGES, plugin_dir=None) -> Session:
    """Build/reuse the chroot, make a session folder, install the plug-in. Raises
    chroot.Unavailable (with the reason) where that cannot be done here."""
    reason = chroot.unavailable_reason()
    if reason:
        raise chroot.Unavailable(reason)
    from nst_core import weights

    weights_file = weights.weights_path()
    if not weights_file.exists():
        raise chroot.Unavailable(f"the VGG19 weights are missing ({weights_file}): "
                                 "run `make weights`")
    t0 = time.monotonic()
    root = chroot.ensure(tuple(packages))
    build_s = time.monotonic() - t0
    version = chroot.gimp_version(root)
    folder = Path(tempfile.mkdtemp(prefix="nst-gimp-test-", dir=os.path.join(root, "tmp")))
    os.chmod(folder, 0o755)
    python = os.path.join(sys.prefix, "bin", "python")
    s = Session(root=root, version=version, dir=folder, python=python,
                weights_dir=str(weights_file.parent), build_s=build_s)
    python_binds, s.overlays = chroot.host_python(python, scratch=str(folder))
    s.binds = [str(REPO), s.weights_dir] + python_binds
    s.profile.mkdir(parents=True, exist_ok=True)
    # A fresh profile would greet the user first (GIMP shows its welcome dialog when the
    # profile's config-version is older than GIMP): no welcome dialog, no tips.
    (s.profile / "gimprc").write_text(f'(config-version "{version}")\n'
                                      "(show-welcome-dialog no)\n(show-tips no)\n")
    install_plugin(s, plugin_dir)
    return s


def close_session(s: Session):
    if os.environ.get("NST_KEEP_GIMP_TEST") != "1":
        shutil.rmtree(s.dir, ignore_errors=True)


def install_plugin(s: Session, plugin_dir=None):
    """Install with the project's installer (plug-ins only, pointing at this virtual
    environment), or - for plugin_dir (another copy of gimp_plugin/), or before there was an
    installer - by copying the contract's layout: <plug-ins>/neural-style/{neural-style.py (0755),
    nst_*.py (the bridge, the options), nst-core.json}."""
    plugins = s.profile / "plug-ins"
    target = plugins / "neural-style"
    installer = REPO / "installer" / "install.py"
    if installer.exists() and plugin_dir is None:
        venv = str(Path(s.python).parent.parent)
        r = subprocess.run([sys.executable, str(installer), "--venv", venv, "--skip-env",
                            "--skip-weights", "--gimp-dir", str(plugins), "--gimp-version", "3",
                            "--home", str(s.home)], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"installer failed:\n{r.stdout}\n{r.stderr}")
    else:
        source = Path(plugin_dir or REPO / "gimp_plugin")
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted((source / "neural-style").glob("*.py")):  # the plug-in, its modules
            shutil.copy2(path, target / path.name)
        for path in sorted(source.glob("nst_*.py")):  # the bridge's modules, the options
            shutil.copy2(path, target / path.name)
        (target / "nst-core.json").write_text(
            json.dumps({"version": 1, "command": [s.python, "-m", "nst_core.worker"]}))
    os.chmod(target / "neural-style.py", 0o755)


def _batch(script: Path) -> str:
    return f"exec(open({str(script)!r}).read())"


def run_headless(s: Session, script: Path, params: dict, timeout=900):
    """gimp-console running `script` (python-fu-eval). Returns (CompletedProcess, results)."""
    params = dict(params, out=s.inside(s.dir / "result.json"))
    (s.dir / "params.json").write_text(json.dumps(params))
    argv = ["gimp-console", "--no-interface", "--no-data", "--no-fonts", "--quit",
            "--batch-interpreter=python-fu-eval", "-b", _batch(script)]
    env = s.env(NST_GIMP_TEST_PARAMS=s.inside(s.dir / "params.json"))
    t0 = time.monotonic()
    proc = chroot.run(argv, binds=s.binds, overlays=s.overlays, env=env, root=s.root,
                      timeout=timeout)
    (s.dir / "gimp-output.txt").write_text(proc.stdout or "")
    return proc, dict(_results(s), seconds=time.monotonic() - t0)


def run_gui(s: Session, script: Path, params: dict, timeout=600):
    """gimp-3.x on Xvfb running `script`, with tests/gimp3/gui_driver.py playing the user.
    Returns (CompletedProcess of the driver, results)."""
    params = dict(params, out=s.inside(s.dir / "result.json"))
    (s.dir / "params.json").write_text(json.dumps(params))
    # NST_DIALOG_STATE: the plug-in writes what its dialog shows there (greyed fields, ranges).
    env = s.env(NST_GIMP_TEST_PARAMS=s.inside(s.dir / "params.json"),
                NST_DIALOG_STATE=s.inside(s.dir / "dialog-state.json"))
    argv = ["python3", str(HERE / "gui_driver.py"), s.inside(s.dir), "gimp", _batch(script),
            str(timeout)]
    proc = chroot.run(argv, binds=s.binds, overlays=s.overlays, env=env, root=s.root,
                      timeout=timeout + 60)
    return proc, _results(s)


def _results(s: Session) -> dict:
    path = s.dir / "result.json"
    return json.loads(path.read_text()) if path.exists() else {}


def host_path(s: Session, inside: str) -> Path:
    return Path(s.root + inside)
