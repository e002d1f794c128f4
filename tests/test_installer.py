"""Tests of installer/install.py: GIMP discovery and plug-in placement in fake homes (Linux,
Flatpak, Snap, Windows and macOS layouts), re-runs, upgrades, uninstall, dry runs, failures, an
interrupted run, and the real environment fast path (the project's own venv)."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import plistlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "installer" / "install.py"
SHARED = tuple(sorted(p.name for p in (REPO / "gimp_plugin").glob("nst_*.py")))  # the bridge's
GIMP3_OWN = tuple(sorted(p.name for p in (REPO / "gimp_plugin" / "neural-style").glob("nst_*.py")))
PLUGIN_FILES = SHARED + ("neural_style_gimp2.py", "neural-style/neural-style.py") + tuple(
    f"neural-style/{n}" for n in GIMP3_OWN)
GIMP3 = {"neural-style.py": 0o755, "nst-core.json": 0o644,
         **dict.fromkeys(SHARED + GIMP3_OWN, 0o644)}
GIMP2 = {"neural_style_gimp2.py": 0o755, "nst-core.json": 0o644, **dict.fromkeys(SHARED, 0o644)}
DATA = Path(".local/share/neural-style-gimp")


# -- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A checkout to install from: the real plug-in files (stand-ins for any not written yet)."""
    src = tmp_path / "src"
    (src / "gimp_plugin" / "neural-style").mkdir(parents=True)
    for rel in PLUGIN_FILES:
        real = REPO / "gimp_plugin" / rel
        data = real.read_bytes() if real.is_file() else f"# stand-in for {rel}\n".encode()
        (src / "gimp_plugin" / rel).write_bytes(data)
    shutil.copy(REPO / "pyproject.toml", src / "pyproject.toml")
    return src


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def run(tmp_path: Path, *args: str, path=(), env=None, python=sys.executable):
    """Run the installer as a user would, with a controlled PATH and fake system folders."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("NST_", "XDG_", "GIMP"))}
    empty = tmp_path / "emptybin"
    empty.mkdir(exist_ok=True)
    full["PATH"] = os.pathsep.join(str(p) for p in path) or str(empty)
    full["NST_INSTALL_SYSROOT"] = str(tmp_path / "sysroot")
    full.update(env or {})
    p = subprocess.run([python, str(INSTALLER), *args], capture_output=True, text=True,
                       env=full, timeout=300)
    p.out = p.stdout + p.stderr
    return p


def install(tmp_path, home, source, *args, **kw):
    return run(tmp_path, "--home", str(home), "--source", str(source), "--skip-env",
               "--skip-weights", *args, **kw)


def uninstall(tmp_path, home, *args, **kw):
    return run(tmp_path, "--home", str(home), "--uninstall", *args, **kw)


def snapshot(root: Path) -> dict:
    """Every path under root with its type, mode and (for files) content digest."""
    out = {}
    for p in sorted(root.rglob("*")):
        mode = stat.S_IMODE(p.lstat().st_mode)
        rel = p.relative_to(root).as_posix()
        if p.is_dir():
            out[rel] = ("dir", mode)
        else:
            out[rel] = ("file", mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def gimp_dirs(home: Path, *rels: str) -> list[Path]:
    dirs = [home / r for r in rels]
    for d in dirs:
        d.mkdir(parents=True)
    return dirs


def check_plugin(plugins: Path, source: Path, gimp2: bool = False, others=()) -> dict:
    """The plug-in folder holds exactly the right files (plus others) with the right modes;
    returns the core command config."""
    folder = plugins / ("neural_style_gimp2" if gimp2 else "neural-style")
    expected = GIMP2 if gimp2 else GIMP3
    assert sorted(os.listdir(folder)) == sorted([*expected, *others])
    for name, mode in expected.items():
        assert stat.S_IMODE((folder / name).stat().st_mode) == mode, name
    src = source / "gimp_plugin"
    main = src / ("neural_style_gimp2.py" if gimp2 else "neural-style/neural-style.py")
    assert (folder / main.name).read_bytes() == main.read_bytes()
    assert (folder / "nst_bridge.py").read_bytes() == (src / "nst_bridge.py").read_bytes()
    config = json.loads((folder / "nst-core.json").read_text())
    assert config["version"] == 1
    return config


def make_exe(folder: Path, name: str, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text)
    p.chmod(0o755)
    return p


def find_python38() -> str | None:
    cands = [shutil.which("python3.8")] + sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for c in cands:
        if c and subprocess.run([c, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                                capture_output=True).returncode == 0:
            return c
    return None


# -- discovery and placement ----------------------------------------------------------------------


def test_linux_every_kind(tmp_path, home, source):
    native = gimp_dirs(home, ".config/GIMP/2.10/plug-ins", ".config/GIMP/3.0/plug-ins",
                       ".config/GIMP/3.2/plug-ins")
    flatpak, snap = gimp_dirs(home, ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins",
                              "snap/gimp/current/.config/GIMP/3.0/plug-ins")
    mine = make_exe(native[1] / "my-filter", "my-filter.py", "# the user's own plug-in\n")
    r = install(tmp_path, home, source)
    assert r.returncode == 0, r.out
    python = str(home / DATA / "venv" / "bin" / "python")
    for plugins in native[1:]:
        assert check_plugin(plugins, source)["command"] == [python, "-m", "nst_core.worker"]
    assert check_plugin(native[0], source, gimp2=True)["command"] == [
        python, "-m", "nst_core.worker"]
    assert check_plugin(flatpak, source)["command"] == [
        "flatpak-spawn", "--host", "--watch-bus", python, "-m", "nst_core.worker"]
    assert os.listdir(snap) == []                       # the snap cannot start the core
    assert mine.read_text() == "# the user's own plug-in\n"
    assert "found by its user folder " + str(home / ".config/GIMP/3.2") in r.out
    assert "flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP" in r.out
    assert "strictly confined" in r.out and "--include-snap" in r.out
    assert "Filters > Artistic > Neural Style Transfer" in r.out

    r = install(tmp_path, home, source, "--include-snap")
    assert r.returncode == 0, r.out
    assert check_plugin(snap, source)["command"] == [python, "-m", "nst_core.worker"]


def test_windows_layout(tmp_path, home, source):
    p2, p3 = gimp_dirs(home, "AppData/Roaming/GIMP/2.10/plug-ins",
                       "AppData/Roaming/GIMP/3.0/plug-ins")
    exe = make_exe(tmp_path / "sysroot" / "C" / "Program Files" / "GIMP 3" / "bin",
                   "gimp-3.0.exe")
    r = install(tmp_path, home, source, "--platform", "win32")
    assert r.returncode == 0, r.out
    python = str(home / "AppData/Local/neural-style-gimp/venv/Scripts/python.exe")
    assert check_plugin(p3, source)["command"] == [python, "-m", "nst_core.worker"]
    assert check_plugin(p2, source, gimp2=True)["command"] == [python, "-m", "nst_core.worker"]
    assert "the program " + str(exe) in r.out
    assert not (p2 / "nst_bridge.py").exists()   # never loose beside other plug-ins


def test_macos_layout(tmp_path, home, source):
    (plugins,) = gimp_dirs(home, "Library/Application Support/GIMP/3.2/plug-ins")
    app = tmp_path / "sysroot" / "Applications" / "GIMP.app"
    (app / "Contents").mkdir(parents=True)
    with open(app / "Contents" / "Info.plist", "wb") as f:
        plistlib.dump({"CFBundleShortVersionString": "3.2.0"}, f)
    r = install(tmp_path, home, source, "--platform", "darwin")
    assert r.returncode == 0, r.out
    python = str(home / "Library/Application Support/neural-style-gimp/venv/bin/python")
    assert check_plugin(plugins, source)["command"] == [python, "-m", "nst_core.worker"]
    assert "the program " + str(app) in r.out


def test_gimp_dir_option(tmp_path, home, source):
    custom = tmp_path / "custom" / "plug-ins"
    old = tmp_path / "old" / "2.10" / "plug-ins"
    forced = tmp_path / "forced"
    gimp_dirs(home, ".config/GIMP/3.0/plug-ins")      # ignored: --gimp-dir names the targets
    before = snapshot(tmp_path)
    r = install(tmp_path, home, source, "--gimp-dir", str(custom), "--gimp-dir", str(old),
                "--venv", str(tmp_path / "env"))
    assert r.returncode == 0, r.out
    python = str(tmp_path / "env" / "bin" / "python")
    assert check_plugin(custom, source)["command"] == [python, "-m", "nst_core.worker"]
    check_plugin(old, source, gimp2=True)
    assert os.listdir(home / ".config/GIMP/3.0/plug-ins") == []
    r = install(tmp_path, home, source, "--gimp-dir", str(forced), "--gimp-version", "2.10")
    assert r.returncode == 0, r.out
    check_plugin(forced, source, gimp2=True)
    r = uninstall(tmp_path, home)
    assert r.returncode == 0, r.out
    after = snapshot(tmp_path)
    after.pop("emptybin", None)
    assert after == before


# -- re-runs, upgrades, uninstall, dry runs -------------------------------------------------------


def test_rerun_is_idempotent_and_upgrades_in_place(tmp_path, home, source):
    (plugins,) = gimp_dirs(home, ".config/GIMP/3.0/plug-ins")
    assert install(tmp_path, home, source).returncode == 0
    first = snapshot(plugins)
    manifest = json.loads((home / DATA / "install-manifest.json").read_text())
    r = install(tmp_path, home, source)
    assert r.returncode == 0, r.out
    assert "already up to date" in r.out
    assert snapshot(plugins) == first
    again = json.loads((home / DATA / "install-manifest.json").read_text())
    assert again["files"] == manifest["files"] and again["state"] == "complete"
    for key in ("dirs_created", "venvs_created", "env_markers"):
        assert len(again[key]) == len(set(again[key]))

    bridge = source / "gimp_plugin" / "nst_bridge.py"
    bridge.write_bytes(bridge.read_bytes() + b"\n# version 2\n")
    extra = source / "gimp_plugin" / "neural-style" / "strings.txt"
    extra.write_text("extra data file\n")
    r = install(tmp_path, home, source)
    assert r.returncode == 0, r.out
    installed = plugins / "neural-style"
    assert (installed / "nst_bridge.py").read_bytes() == bridge.read_bytes()
    assert (installed / "strings.txt").read_text() == "extra data file\n"
    extra.unlink()                                  # a later version drops a file
    assert install(tmp_path, home, source).returncode == 0
    assert not (installed / "strings.txt").exists()
    check_plugin(plugins, source)


def test_uninstall_leaves_folders_as_they_were(tmp_path, home, source):
    p210, p30, p32 = gimp_dirs(home, ".config/GIMP/2.10/plug-ins", ".config/GIMP/3.0/plug-ins",
                               ".config/GIMP/3.2/plug-ins")
    make_exe(p30 / "my-filter", "my-filter.py", "# the user's own plug-in\n")
    (p30 / "README-mine.txt").write_text("notes\n")
    # An older copy of this plug-in installed by hand, with a note of the user's beside it.
    make_exe(p32 / "neural-style", "neural-style.py", "# copied by hand\n")
    (p32 / "neural-style" / "my-notes.txt").write_text("keep me\n")
    before = snapshot(home)

    r = install(tmp_path, home, source)
    assert r.returncode == 0, r.out
    assert (p32 / "neural-style" / "neural-style.py.nst-backup").read_text() == \
        "# copied by hand\n"
    check_plugin(p210, source, gimp2=True)
    # What Python leaves beside our files once GIMP has run them.
    (p210 / "neural_style_gimp2" / "nst_bridge.pyc").write_bytes(b"\0")
    cache = p30 / "neural-style" / "__pycache__"
    cache.mkdir()
    (cache / "nst_bridge.cpython-312.pyc").write_bytes(b"\0")

    r = uninstall(tmp_path, home)
    assert r.returncode == 0, r.out
    assert snapshot(home) == before
    r = uninstall(tmp_path, home)                    # nothing left to do
    assert r.returncode == 0 and "Nothing to remove" in r.out


def test_dry_run_touches_nothing(tmp_path, home, source):
    gimp_dirs(home, ".config/GIMP/3.0/plug-ins",
              ".var/app/org.gimp.GIMP/config/GIMP/3.2/plug-ins")
    before = snapshot(home)
    r = install(tmp_path, home, source, "--dry-run")
    assert r.returncode == 0, r.out
    assert "[dry run] would write" in r.out
    assert snapshot(home) == before

    assert install(tmp_path, home, source).returncode == 0
    installed = snapshot(home)
    r = uninstall(tmp_path, home, "--dry-run")
    assert r.returncode == 0, r.out
    assert "[dry run] would remove" in r.out
    assert snapshot(home) == installed


def test_torch_choice_in_dry_run(tmp_path, home, source):
    bindir = tmp_path / "bin"
    make_exe(bindir, "nvidia-smi", "#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\n")
    base = ("--home", str(home), "--source", str(source), "--venv", str(tmp_path / "env"),
            "--gimp-dir", str(tmp_path / "g"), "--skip-weights", "--dry-run")
    r = run(tmp_path, *base, path=[bindir])
    assert r.returncode == 0, r.out
    assert "PyTorch wanted: CUDA build" in r.out and "NVIDIA GPU found" in r.out
    assert "would install PyTorch" in r.out and "--index-url" not in r.out
    r = run(tmp_path, *base, "--torch", "cpu", path=[bindir])
    assert "download.pytorch.org/whl/cpu" in r.out
    r = run(tmp_path, *base)                         # no nvidia-smi
    assert "PyTorch wanted: CPU build" in r.out
    r = run(tmp_path, *base, "--platform", "win32", path=[bindir])
    assert "download.pytorch.org/whl/cu" in r.out
    r = run(tmp_path, *base, "--platform", "darwin")
    assert "default" in r.out and "--index-url" not in r.out
    assert not (tmp_path / "env").exists() and not (tmp_path / "g").exists()
    assert list(home.iterdir()) == []


# -- failures -------------------------------------------------------------------------------------


def test_no_gimp_found(tmp_path, home, source):
    r = install(tmp_path, home, source)
    assert r.returncode == 3, r.out
    assert "No GIMP" in r.out and "--gimp-dir" in r.out and "start it once" in r.out
    assert list(home.iterdir()) == []


def test_gimp_program_without_user_folder(tmp_path, home, source):
    bindir = tmp_path / "bin"
    make_exe(bindir, "gimp-3.2")
    r = install(tmp_path, home, source, path=[bindir])
    assert r.returncode == 3, r.out
    assert "GIMP 3.2 is installed" in r.out and "no user folder yet" in r.out
    assert list(home.iterdir()) == []                # GIMP's first start makes that folder

    (plugins,) = gimp_dirs(home, ".config/GIMP/3.0/plug-ins")
    r = install(tmp_path, home, source, path=[bindir])
    assert r.returncode == 0, r.out
    check_plugin(plugins, source)
    assert "GIMP 3.2 is installed" in r.out          # still said in the summary


def test_only_snap_found(tmp_path, home, source):
    gimp_dirs(home, "snap/gimp/current/.config/GIMP/3.0/plug-ins")
    r = install(tmp_path, home, source)
    assert r.returncode == 3, r.out
    assert "Snap" in r.out and "--include-snap" in r.out


def test_unsupported_python_for_the_core(tmp_path, home, source):
    py38 = find_python38()
    if py38 is None:
        pytest.skip("no Python 3.8 here")
    r = run(tmp_path, "--home", str(home), "--source", str(source), "--python", py38,
            "--venv", str(tmp_path / "env"), "--gimp-dir", str(tmp_path / "g"), "--skip-weights")
    assert r.returncode == 4, r.out
    assert "needs Python 3.9 or newer" in r.out and "--python" in r.out
    assert not (tmp_path / "env").exists() and not (tmp_path / "g").exists()
    assert list(home.iterdir()) == []


def test_installer_itself_runs_on_python38(tmp_path, home, source):
    py38 = find_python38()
    if py38 is None:
        pytest.skip("no Python 3.8 here")
    (plugins,) = gimp_dirs(home, ".config/GIMP/3.0/plug-ins")
    r = install(tmp_path, home, source, python=py38)
    assert r.returncode == 0, r.out
    check_plugin(plugins, source)
    assert uninstall(tmp_path, home, python=py38).returncode == 0


def test_interrupted_run_is_completed_or_removed(tmp_path, home, source):
    p30, p210 = gimp_dirs(home, ".config/GIMP/3.0/plug-ins", ".config/GIMP/2.10/plug-ins")
    make_exe(p30 / "neural-style", "neural-style.py", "# copied by hand\n")
    before = snapshot(home)
    for crash_after in ("1", "4"):
        r = install(tmp_path, home, source, env={"NST_INSTALL_TEST_CRASH_AFTER": crash_after})
        assert r.returncode == 99, r.out
        manifest = json.loads((home / DATA / "install-manifest.json").read_text())
        assert manifest["state"] == "installing"
        # A temp file a killed copy may leave behind.
        (p30 / "neural-style" / ".nst_bridge.py.nst-tmp-4242").write_text("half")
        r = install(tmp_path, home, source)            # the next run completes it
        assert r.returncode == 0, r.out
        check_plugin(p30, source, others=["neural-style.py.nst-backup"])
        check_plugin(p210, source, gimp2=True)
        assert (p30 / "neural-style" / "neural-style.py.nst-backup").read_text() == \
            "# copied by hand\n"
        assert uninstall(tmp_path, home).returncode == 0
        assert snapshot(home) == before
    # Interrupted, then removed without finishing.
    r = install(tmp_path, home, source, env={"NST_INSTALL_TEST_CRASH_AFTER": "2"})
    assert r.returncode == 99, r.out
    assert uninstall(tmp_path, home).returncode == 0
    assert snapshot(home) == before


# -- the real environment: an existing one with a suitable torch is used as it is -----------------


def test_existing_env_is_reused(tmp_path, home):
    venv = REPO / ".venv"
    if not (venv / "bin" / "python").is_file() or \
            not (REPO / "nst_core" / "worker.py").is_file():
        pytest.skip("needs the project's .venv and nst_core/worker.py")
    gimp3 = (REPO / "gimp_plugin" / "neural-style" / "neural-style.py").is_file()
    plugins = tmp_path / "gimp" / ("3.0" if gimp3 else "2.10") / "plug-ins"
    sys.path.insert(0, str(REPO))
    from nst_core.weights import weights_path
    weights = weights_path()
    args = ["--home", str(home), "--venv", str(venv), "--gimp-dir", str(plugins)]
    if not weights.is_file():
        args.append("--skip-weights")
    marker = venv / "nst-install.json"
    r = run(tmp_path, *args, path=[Path(sys.executable).parent, "/usr/bin", "/bin"])
    assert r.returncode == 0, r.out
    assert "already installed: kept" in r.out
    assert "editable install" in r.out and "environment marked complete" in r.out
    assert json.loads(marker.read_text())["complete"] is True
    config = check_plugin(plugins, REPO, gimp2=not gimp3)
    assert config["command"] == [str(venv / "bin" / "python"), "-m", "nst_core.worker"]
    if weights.is_file():
        assert "weights verified" in r.out
    r = uninstall(tmp_path, home)
    assert r.returncode == 0, r.out
    assert not (tmp_path / "gimp").exists()
    assert (venv / "bin" / "python").is_file() and (venv / "pyvenv.cfg").is_file()
    if "--skip-weights" not in args:
        assert weights.is_file() and "keeping the weights" in r.out
