"""The core's own Python environment: made (or reused), given a suitable PyTorch and the core,
and marked complete (nst-install.json inside it) only once the core imports there."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time

from . import ENV_MARKER, torch_build
from .console import say, step
from .context import Context
from .errors import EXIT_ENV, InstallError, classify, network_message, space_message
from .files import free_gb, is_within, listdir, sha256_file
from .gimp import version_tuple
from .processes import run_capture

DEFAULT_MIN_PYTHON = (3, 9)      # read from pyproject.toml's requires-python when present
DEFAULT_MIN_TORCH = (2, 1)       # read from pyproject.toml's dependencies when present

# Run inside the environment: what it holds, as one JSON line.
PROBE = r"""
import json, sys
info = {"python": list(sys.version_info[:3]), "executable": sys.executable}
try:
    import torch
    info["torch"] = torch.__version__
    info["cuda"] = torch.version.cuda
    info["hip"] = getattr(torch.version, "hip", None)
    try:
        info["cuda_available"] = bool(torch.cuda.is_available())
    except Exception:
        info["cuda_available"] = False
    try:
        info["mps_available"] = bool(torch.backends.mps.is_available())
    except Exception:
        info["mps_available"] = False
except Exception as e:
    info["torch_error"] = "%s: %s" % (type(e).__name__, e)
try:
    import nst_core
    info["core_file"] = nst_core.__file__
    info["core_version"] = getattr(nst_core, "__version__", None)
    import nst_core.worker
    info["worker"] = True
except Exception as e:
    info["core_error"] = "%s: %s" % (type(e).__name__, e)
print("NST-PROBE " + json.dumps(info))
"""
# What the build of the core never needs from the checkout.
NOT_BUILT = (".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
             ".pytest_cache", ".ruff_cache", "tests", "bench", "out", "demo-out", ".cache")


class CoreEnvironment:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.venv = ctx.venv
        self.py = ctx.venv_python
        self.actions, self.manifest, self.report = ctx.actions, ctx.manifest, ctx.report
        self.pyproject = _read(os.path.join(ctx.source, "pyproject.toml"))
        self._torch: tuple[str, str] | None = None

    # -- what the checkout asks for

    def python_min(self) -> tuple[int, ...]:
        m = re.search(r'requires-python\s*=\s*"\s*>=\s*([\d.]+)', self.pyproject)
        return version_tuple(m.group(1)) if m else DEFAULT_MIN_PYTHON

    def torch_min(self) -> tuple[int, ...]:
        m = re.search(r'"torch\s*>=\s*([\d.]+)', self.pyproject)
        return version_tuple(m.group(1)) if m else DEFAULT_MIN_TORCH

    def source_hash(self) -> str:
        """A digest of what an installed copy of the core depends on."""
        source = self.ctx.source
        h = hashlib.sha256()
        paths = [os.path.join(source, "pyproject.toml")]
        for root, dirs, files in os.walk(os.path.join(source, "nst_core")):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            paths += [os.path.join(root, f) for f in sorted(files) if not f.endswith(".pyc")]
        for p in paths:
            h.update(os.path.relpath(p, source).replace("\\", "/").encode())
            h.update((sha256_file(p) or "-").encode())
        return h.hexdigest()

    def torch_wanted(self) -> tuple[str, str]:
        """("cuda" | "cpu" | "default", why); decided once per run."""
        if self._torch is None:
            build, why, warning = torch_build.wanted_build(self.ctx.args.torch,
                                                           self.ctx.layout.platform)
            if warning:
                self.report.warnings.append(warning)
            self._torch = (build, why)
        return self._torch

    # -- the flow

    def setup(self) -> None:
        venv = self.venv
        step(f"Core environment: {venv}")
        ours = venv == self.ctx.default_venv or venv in self.manifest.data["venvs_created"]
        info = None
        if os.path.isfile(self.py):
            try:
                info = self.probe()
            except InstallError:
                if not ours:
                    raise
                # e.g. the Python it was made from was upgraded away: make it again.
                say("    its Python does not run any more: making it again")
                self.actions.rmtree(venv, "the broken environment")
        if info is not None and version_tuple(".".join(map(str, info["python"]))) \
                < self.python_min():
            if not ours:
                raise InstallError(self.python_message(info["python"], self.py), EXIT_ENV)
            old = ".".join(map(str, info["python"][:2]))
            say(f"    its Python {old} is too old for the core: making it again")
            self.actions.rmtree(venv, "the outdated environment")
            info = None
        created_now = False
        if info is None:
            if os.path.isfile(os.path.join(venv, "pyvenv.cfg")) and not ours:
                raise InstallError(f"{venv} looks like a broken Python environment (no working "
                                   f"{self.py}). Repair or remove it, or choose another place "
                                   "with --venv PATH.", EXIT_ENV)
            info = self.create_venv()
            created_now = True
        elif ours:
            self.manifest.add("venvs_created", venv)
        try:
            self.ensure_torch(info)
            self.ensure_core(info, ours)
        except InstallError:
            # Roll back a failed fresh environment; after Ctrl-C it stays for the next run
            # to complete (it is only marked complete once the core imports).
            if created_now:
                self.forget_venv(f"remove the environment this run created ({venv})")
            raise

    def forget_venv(self, text: str) -> None:
        self.actions.discard(self.venv, text)
        if self.venv in self.manifest.data["venvs_created"]:
            self.manifest.data["venvs_created"].remove(self.venv)
            self.manifest.save()

    def python_message(self, found, where: str) -> str:
        want = ".".join(map(str, self.python_min()))
        have = ".".join(map(str, found[:3]))
        return (f"The core needs Python {want} or newer; {where} is Python {have}. Install a "
                "newer Python (python.org, or your package manager, e.g. `sudo apt install "
                "python3`) and run this installer with it, or name one with --python PATH.")

    def create_venv(self) -> dict:
        """Make the environment; what it holds (in a dry run: what it would hold)."""
        args = self.ctx.args
        base = os.path.abspath(os.path.expanduser(args.python)) if args.python \
            else sys.executable
        rc, out = run_capture([base, "-c", "import sys; print(sys.version_info[:3])"], 60)
        if rc != 0:
            raise InstallError(f"Cannot run the Python {base} ({out.strip()[-300:]}). Name a "
                               f"working Python 3.{self.python_min()[1]}+ with --python PATH.",
                               EXIT_ENV)
        found = [int(x) for x in re.findall(r"\d+", out)[:3]]
        if tuple(found) < self.python_min():
            raise InstallError(self.python_message(found, base), EXIT_ENV)
        gb = free_gb(self.venv)
        if gb is not None and gb < 0.2:
            raise InstallError(space_message(os.path.dirname(self.venv), "the environment"),
                               EXIT_ENV)
        self.manifest.add("venvs_created", self.venv)
        self.manifest.save()
        version = ".".join(map(str, found))
        rc, tail = self.actions.run([base, "-m", "venv", self.venv],
                                    f"create a Python {version} environment")
        if rc != 0:
            self.forget_venv(f"remove the half-made environment {self.venv}")
            text = "\n".join(tail)
            if classify(tail) == "space":
                raise InstallError(space_message(os.path.dirname(self.venv), "the environment"),
                                   EXIT_ENV)
            hint = ""
            if "ensurepip" in text or "venv" in text:
                hint = (" On Debian or Ubuntu, install the venv module first: "
                        "`sudo apt install python3-venv` (or python3.X-venv for your version).")
            raise InstallError(f"Could not create the environment {self.venv}: "
                               f"{text.strip()[-500:]}.{hint} Then run the installer again.",
                               EXIT_ENV)
        self.report.did(f"created the core environment {self.venv}",
                        f"create the core environment {self.venv}")
        return self.actions.check(self.probe, planned={"python": found})

    def probe(self) -> dict:
        # -I: ignore PYTHONPATH and the current folder, so only what is installed counts.
        rc, out = run_capture([self.py, "-I", "-B", "-c", PROBE], 600,
                              cwd=tempfile.gettempdir())
        for line in out.splitlines():
            if line.startswith("NST-PROBE "):
                return json.loads(line[len("NST-PROBE "):])
        raise InstallError(f"The environment's Python {self.py} does not run "
                           f"({out.strip()[-500:]}). Remove {self.venv} and run the installer "
                           "again.", EXIT_ENV)

    def read_marker(self) -> dict:
        try:
            with open(os.path.join(self.venv, ENV_MARKER), encoding="utf-8") as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    # -- PyTorch

    def ensure_torch(self, info: dict) -> None:
        want, why = self.torch_wanted()
        have = info.get("torch")
        say("    PyTorch wanted: {} build ({})".format(want.upper() if want != "default"
                                                   else "default", why))
        ok = bool(have) and version_tuple(have) >= self.torch_min()
        marker = self.read_marker()
        tried = marker.get("torch_wanted") == want and marker.get("torch") == have
        if ok and want == "cuda" and not info.get("cuda") and tried:
            self.report.warnings.append(
                f"PyTorch {have} has no CUDA support, and it is what an earlier run could "
                "install for CUDA; kept. Re-run with --torch-index URL naming a CUDA wheel "
                "index (see pytorch.org) to change it.")
        elif ok and want == "cuda" and not info.get("cuda"):
            ok = False
            say(f"    PyTorch {have} is installed but has no CUDA support: replacing it")
        elif have and not ok:
            say(f"    PyTorch {have} is installed but too old: replacing it")
        if ok:
            extra = " (a CUDA build; it works on the CPU too)" if want == "cpu" and \
                info.get("cuda") else ""
            say(f"    PyTorch {have} already installed: kept{extra}")
            self.report.did(f"kept PyTorch {have} in the environment{extra}",
                            f"keep PyTorch {have} in the environment{extra}")
            return
        sources = torch_build.indexes(want, self.ctx.layout.platform, self.ctx.args.torch_index)
        # Whether it fits, and whether a source answers, is for the real run (a dry run: the
        # first source).
        need = torch_build.SPACE_NEEDED_GB[want]
        gb = self.actions.check(free_gb, self.venv)
        if gb is not None and gb < need:
            raise InstallError(space_message(self.venv, "PyTorch", need), EXIT_ENV)
        if have:
            self.actions.run([self.py, "-m", "pip", "uninstall", "-y",
                              "--disable-pip-version-check", "torch"], "remove the old PyTorch")
        failure = None
        for idx in sources:
            last = idx == sources[-1]
            if idx and not last and not self.actions.check(torch_build.reachable, idx,
                                                           planned=True):
                say(f"    {idx} cannot be reached: trying the next source")
                continue
            rc, tail = self.actions.run(self.pip_torch(idx), "install PyTorch")
            failure = None if rc == 0 else (classify(tail), tail)
            if failure and failure[0] == "network" and not last:
                say("    could not reach %s; trying the next source" % (idx or "PyPI"))
                continue
            break
        if failure is not None:
            self.raise_pip_failure("PyTorch", *failure)
        after = self.actions.check(self.torch_installed, want, planned={})
        self.report.did("installed PyTorch {} ({} build)".format(after.get("torch"), want),
                        f"install PyTorch ({want} build)")
        info.update(after)
        info["_changed"] = True

    def torch_installed(self, want: str) -> dict:
        """What the environment holds once PyTorch was installed."""
        after = self.probe()
        if want == "cuda" and not after.get("cuda"):
            self.report.warnings.append(
                "The PyTorch that was installed ({}) has no CUDA support; the core will run on "
                "the CPU. Re-run with --torch-index URL naming a CUDA wheel index (see "
                "pytorch.org).".format(after.get("torch")))
        return after

    def pip_torch(self, index: str | None) -> list[str]:
        return torch_build.pip_command(self.py, self.torch_min(), index)

    def raise_pip_failure(self, what: str, kind: str | None, tail: list[str]) -> None:
        if kind == "space":
            raise InstallError(space_message(self.venv, what), EXIT_ENV)
        if kind == "network":
            raise InstallError(network_message(what), EXIT_ENV)
        raise InstallError("Installing {} failed (pip's last words: {}). Fix the cause and run "
                           "the installer again.".format(what, " | ".join(tail[-5:])), EXIT_ENV)

    # -- the core

    def ensure_core(self, info: dict, ours: bool) -> None:
        source = self.ctx.source
        digest = self.source_hash()
        core = info.get("core_file")
        if core and is_within(core, source):
            say("    the core is this checkout itself (an editable install): nothing to install")
            self.report.did(f"used the core from the checkout (editable install in {self.venv})",
                            f"use the core from the checkout (editable install in {self.venv})")
        elif core and not is_within(core, self.venv) and info.get("worker"):
            # An editable install of another checkout: a developer's; never replace it.
            self.report.warnings.append(
                f"The environment {self.venv} runs the core from {os.path.dirname(core)} (an "
                "editable install of another checkout); it was left as it is.")
            kept = f"the core in {self.venv} (from {os.path.dirname(core)})"
            self.report.did("kept " + kept, "keep " + kept)
        elif core and info.get("worker") and self.read_marker().get("source_hash") == digest:
            say("    the core is up to date")
            self.report.did(f"the core in {self.venv} is up to date",
                            f"keep the core in {self.venv}: it is up to date")
        else:
            self.pip_install_core(info, ours)
        self.actions.check(self.mark_complete, info, digest)

    def mark_complete(self, info: dict, digest: str) -> None:
        """Check that the core imports, then write the marker."""
        source = self.ctx.source
        marker = os.path.join(self.venv, ENV_MARKER)
        after = self.probe() if info.get("_changed") else info
        problems = [after[k] for k in ("torch_error", "core_error") if after.get(k)]
        if problems:
            raise InstallError("The core does not import in {}: {}. Run the installer again; if "
                               "that does not help, delete {} and run it again.".format(
                                   self.venv, "; ".join(problems), self.venv), EXIT_ENV)
        self.manifest.add("env_markers", marker)
        self.manifest.save()
        record = {"complete": True, "source": source, "source_hash": digest,
                  "torch": after.get("torch"), "cuda": after.get("cuda"),
                  "torch_wanted": self.torch_wanted()[0], "python": after.get("python"),
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.actions.write(marker, (json.dumps(record, indent=1) + "\n").encode(), 0o644)
        say(f"    the core imports: environment marked complete ({marker})")

    def pip_install_core(self, info: dict, ours: bool) -> None:
        source = self.ctx.source
        if not os.path.isfile(os.path.join(source, "pyproject.toml")):
            raise InstallError(f"{source} has no pyproject.toml: name the project checkout "
                               "with --source PATH.", EXIT_ENV)
        upgrade = [self.py, "-m", "pip", "install", "--disable-pip-version-check", "--upgrade"]
        if not ours and not info.get("core_file"):
            self.manifest.add("core_installed_into", self.venv)
            self.manifest.save()
        with self.actions.scratch_copy(source, shutil.ignore_patterns(*NOT_BUILT)) as copy:
            rc, tail = self.actions.run(upgrade + [copy], "install the core")
        if rc != 0:
            self.raise_pip_failure("the core (and its dependencies)", classify(tail), tail)
        info["_changed"] = True
        self.report.did(f"installed the core from {source} into {self.venv}",
                        f"install the core into {self.venv}")


def existing_non_venv(venv: str) -> bool:
    """Whether venv is a folder with files in it that is not a Python environment."""
    return os.path.isdir(venv) and not os.path.isfile(os.path.join(venv, "pyvenv.cfg")) \
        and bool(listdir(venv))


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""
