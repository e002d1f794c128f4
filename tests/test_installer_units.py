"""Unit tests of the installer's pieces (installer/nst_install/), in process and fast: GIMP
discovery in a fake home, the manifest and the atomic write, the dry-run Actions object, bad
command lines, failures midway, and uninstall removing exactly what the manifest lists."""
from __future__ import annotations

import ast
import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "installer"))

from nst_install import TMP_MARK, actions, cli, gimp, installation, torch_build  # noqa: E402
from nst_install.actions import Actions  # noqa: E402
from nst_install.errors import EXIT_ERROR, EXIT_LEFTOVER, EXIT_USAGE, InstallError  # noqa: E402
from nst_install.files import write_atomic  # noqa: E402
from nst_install.layout import Layout  # noqa: E402
from nst_install.manifest import Manifest  # noqa: E402

SCRIPT = str(REPO / "installer" / "install.py")


def snapshot(root: Path) -> dict:
    """Every path under root with its type, mode and (for files) content digest."""
    out = {}
    for p in sorted(root.rglob("*")):
        mode = stat.S_IMODE(p.lstat().st_mode)
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", mode)
        else:
            out[rel] = ("file", mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.fixture
def quiet_system(tmp_path, monkeypatch):
    """No GIMP programs on PATH and no system folders: only the fake home counts."""
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("NST_INSTALL_SYSROOT", str(tmp_path / "sysroot"))
    monkeypatch.delenv("NST_INSTALL_TEST_CRASH_AFTER", raising=False)


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def run_main(*argv: str) -> int:
    return cli.main(list(argv), SCRIPT)


# -- the installer runs on a plain system Python ------------------------------------------------


def test_installer_imports_only_the_standard_library():
    allowed = set(getattr(sys, "stdlib_module_names", ())) or pytest.skip("Python < 3.10")
    for path in [REPO / "installer" / "install.py",
                 *(REPO / "installer" / "nst_install").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in allowed | {"__future__", "nst_install"}, f"{path.name}: {name}"


# -- finding GIMP ---------------------------------------------------------------------------------


def test_discovery_finds_each_version_folder_and_nothing_else(home, quiet_system):
    for rel in (".config/GIMP/2.10", ".config/GIMP/3.0", ".config/GIMP/3.2",
                ".var/app/org.gimp.GIMP/config/GIMP/3.0", ".config/GIMP/2.8",
                ".config/GIMP/sessions"):
        (home / rel).mkdir(parents=True)
    (home / ".config/GIMP/3.4").write_text("a file, not a user folder")
    targets, notes = gimp.discover(Layout("linux", str(home), {}))
    found = [(t.flavour, t.version, t.plugins_dir) for t in targets]
    assert found == [
        ("native", "2.10", str(home / ".config/GIMP/2.10/plug-ins")),
        ("native", "3.0", str(home / ".config/GIMP/3.0/plug-ins")),
        ("native", "3.2", str(home / ".config/GIMP/3.2/plug-ins")),
        ("flatpak", "3.0", str(home / ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins")),
    ]
    assert notes == []
    assert not (home / ".config/GIMP/3.0/plug-ins").exists()    # looking creates nothing


def test_discovery_honours_xdg_config_home_and_appdata(tmp_path, home, quiet_system):
    xdg = tmp_path / "xdg"
    (xdg / "GIMP" / "3.0").mkdir(parents=True)
    (home / ".config/GIMP/2.10").mkdir(parents=True)   # not where XDG_CONFIG_HOME points
    targets, _ = gimp.discover(Layout("linux", str(home), {"XDG_CONFIG_HOME": str(xdg)}))
    assert [t.plugins_dir for t in targets if t.flavour == "native"] == [
        str(xdg / "GIMP" / "3.0" / "plug-ins")]

    roaming = tmp_path / "roaming"
    (roaming / "GIMP" / "3.2").mkdir(parents=True)
    targets, _ = gimp.discover(Layout("win32", str(home), {"APPDATA": str(roaming)}))
    assert [(t.version, t.plugins_dir) for t in targets] == [
        ("3.2", str(roaming / "GIMP" / "3.2" / "plug-ins"))]


def test_a_gimp_program_without_user_folder_is_a_note_not_a_target(tmp_path, home,
                                                                   quiet_system):
    bindir = tmp_path / "emptybin"
    exe = bindir / "gimp-3.2"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    targets, notes = gimp.discover(Layout("linux", str(home), {}))
    assert [t.version for t in targets] == ["3.0"]
    assert len(notes) == 1 and "GIMP 3.2 is installed" in notes[0] and str(exe) in notes[0]


@pytest.mark.parametrize("path, version, flavour", [
    ("/x/GIMP/2.10/plug-ins", "2.10", "custom"),
    ("/x/GIMP/3.2/plug-ins", "3.2", "custom"),
    ("/x/plug-ins", "3", "custom"),
    ("/h/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins", "3.0", "flatpak"),
    ("/h/snap/gimp/current/.config/GIMP/3.0/plug-ins", "3.0", "snap"),
])
def test_gimp_dir_version_and_kind_from_the_path(path, version, flavour):
    t = gimp.target_from_dir(path, None)
    assert (t.version, t.flavour) == (version, flavour)
    assert gimp.target_from_dir(path, "2.10").gimp2


# -- the manifest and the atomic write ------------------------------------------------------------


def test_manifest_round_trip_in_a_private_folder(tmp_path):
    path = tmp_path / "data" / "sub" / "install-manifest.json"
    m = Manifest(str(path))
    assert not m.exists and m.state == "none"
    m.files["/p/a.py"] = {"sha256": "ab" * 32, "backup": None}
    m.add("dirs_created", "/p")
    m.add("dirs_created", "/p")
    m.save("installing")
    again = Manifest(str(path))
    assert again.exists and again.state == "installing"
    assert again.files == {"/p/a.py": {"sha256": "ab" * 32, "backup": None}}
    assert again.data["dirs_created"] == ["/p"]
    # The folders it made are recorded (uninstall removes them) and only the user may enter.
    assert again.data["data_dirs_created"] == [str(tmp_path / "data"), str(path.parent)]
    if os.name != "nt":
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no temp file left


def test_read_only_manifest_is_never_written(tmp_path):
    path = tmp_path / "data" / "install-manifest.json"
    m = Manifest(str(path), read_only=True)
    m.add("dirs_created", "/p")
    m.save("complete")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"files": []}'])
def test_unreadable_manifest_is_one_clear_error(tmp_path, text):
    path = tmp_path / "install-manifest.json"
    path.write_text(text)
    with pytest.raises(InstallError) as e:
        Manifest(str(path))
    assert str(path) in e.value.message and "Move it away" in e.value.message
    assert path.read_text() == text


def test_atomic_write_replaces_a_symlink_not_its_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's")
    link = tmp_path / "nst-core.json"
    link.symlink_to(victim)
    write_atomic(str(link), b"ours", 0o644)
    assert victim.read_text() == "the user's"
    assert not link.is_symlink() and link.read_bytes() == b"ours"


def test_atomic_write_never_writes_through_a_planted_temp_name(tmp_path):
    """The names the old installer used (.NAME.nst-tmp-PID), planted as symlinks: untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's")
    for pid in {os.getpid(), os.getppid()}:
        (tmp_path / f".nst_bridge.py{TMP_MARK}{pid}").symlink_to(victim)
    write_atomic(str(tmp_path / "nst_bridge.py"), b"ours", 0o644)
    assert victim.read_text() == "the user's"
    assert (tmp_path / "nst_bridge.py").read_bytes() == b"ours"


def test_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "nst-core.json"
    target.write_text("old")

    def no_rename(src, dst):
        raise OSError(errno.EIO, "I/O error", dst)

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        write_atomic(str(target), b"new", 0o644)
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nst-core.json"]


# -- the dry-run object ---------------------------------------------------------------------------


def test_dry_run_actions_record_everything_and_touch_nothing(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_text("f")
    (tmp_path / "empty").mkdir()
    before = snapshot(tmp_path)
    act = Actions(dry=True)
    assert not act.mkdir(str(tmp_path / "new"))
    assert not act.write(str(tmp_path / "a.txt"), b"changed", 0o600)
    assert not act.move(str(tmp_path / "a.txt"), str(tmp_path / "b.txt"))
    assert not act.remove(str(tmp_path / "a.txt"))
    assert not act.rmdir(str(tmp_path / "empty"))
    assert not act.rmtree(str(tmp_path / "tree"), "the environment")
    marker = tmp_path / "ran"
    assert act.run([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], "run it") == (0, [])
    assert snapshot(tmp_path) == before
    assert len(act.log) == 7 and act.failed == []
    out = capsys.readouterr().out
    assert out.count("[dry run] would ") == 7
    assert f"would write {tmp_path / 'a.txt'} (mode 600)" in out
    assert "would delete the environment" in out


def test_real_actions_make_the_same_changes(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_text("f")
    act = Actions(dry=False)
    assert act.mkdir(str(tmp_path / "new"), 0o755)
    assert act.write(str(tmp_path / "new" / "a.txt"), b"data", 0o600)
    assert act.move(str(tmp_path / "new" / "a.txt"), str(tmp_path / "b.txt"))
    assert act.remove(str(tmp_path / "b.txt"))
    assert act.rmdir(str(tmp_path / "new"))
    assert act.rmtree(str(tmp_path / "tree"), "the environment")
    rc, tail = act.run([sys.executable, "-c", "print('hello')"], "say hello")
    assert (rc, tail) == (0, ["hello"])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError):
        act.remove(str(tmp_path / "missing"))


def test_keep_going_actions_note_a_failure_and_carry_on(tmp_path):
    (tmp_path / "b").write_text("b")
    act = Actions(dry=False, keep_going=True)
    assert not act.remove(str(tmp_path / "missing"))
    assert act.remove(str(tmp_path / "b"))
    assert len(act.failed) == 1 and str(tmp_path / "missing") in act.failed[0]


def test_a_dry_install_changes_nothing_and_runs_only_read_only_probes(tmp_path, home,
                                                                      quiet_system, capsys,
                                                                      monkeypatch):
    """The whole flow (environment, PyTorch, core, plug-ins, weights) in a dry run."""
    (home / ".config/GIMP/3.0/plug-ins").mkdir(parents=True)
    before = snapshot(tmp_path)
    ran, real_popen = [], subprocess.Popen

    def recording(cmd, *a, **k):
        ran.append(cmd)
        return real_popen(cmd, *a, **k)

    def no_network(url, *a, **k):
        raise AssertionError(f"a dry run asked {url}")

    monkeypatch.setattr(subprocess, "Popen", recording)
    monkeypatch.setattr(torch_build, "reachable", no_network)
    code = run_main("--home", str(home), "--dry-run")
    monkeypatch.undo()
    out = capsys.readouterr().out
    assert code == 0, out
    assert snapshot(tmp_path) == before
    # Only the base Python was asked its version; venv, pip and the weights were only said.
    assert ran == [[sys.executable, "-c", "import sys; print(sys.version_info[:3])"]]
    for words in ("would create a Python", "would install PyTorch", "would install the core",
                  "would write", "would fetch and verify the weights"):
        assert words in out


def test_a_dry_uninstall_changes_nothing_and_says_what_the_real_one_does(tmp_path, home,
                                                                         quiet_system, capsys):
    plugins = home / ".config/GIMP/3.0/plug-ins"
    plugins.mkdir(parents=True)
    assert run_main("--home", str(home), "--skip-env", "--skip-weights") == 0
    data = home / ".local/share/neural-style-gimp"
    # What a full install leaves: an environment, a marker, fetched weights, byte-code.
    (data / "venv").mkdir()
    (data / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (data / "weights.h5").write_bytes(b"w")
    (tmp_path / "other-env").mkdir()
    (tmp_path / "other-env" / "nst-install.json").write_text("{}")
    (plugins / "neural-style" / "__pycache__").mkdir()
    (plugins / "neural-style" / "__pycache__" / "nst_bridge.cpython-312.pyc").write_bytes(b"")
    manifest = data / "install-manifest.json"
    m = json.loads(manifest.read_text())
    m.update(venvs_created=[str(data / "venv")], weights={"path": str(data / "weights.h5"),
                                                          "fetched": True},
             env_markers=[str(tmp_path / "other-env" / "nst-install.json")])
    manifest.write_text(json.dumps(m))
    capsys.readouterr()
    before = snapshot(tmp_path)
    assert run_main("--home", str(home), "--uninstall", "--dry-run") == 0
    dry = capsys.readouterr().out
    assert snapshot(tmp_path) == before
    would = [line.split("would ", 1)[1] for line in dry.splitlines() if "[dry run]" in line]
    assert run_main("--home", str(home), "--uninstall") == 0
    done = [line[4:] for line in capsys.readouterr().out.splitlines()
            if line.startswith("    ") and not line.startswith("     ")]
    assert would == done and f"remove the empty folder {data}" in would
    assert not (home / ".local").exists() and not (plugins / "neural-style").exists()


# -- bad command lines: one error before any work -------------------------------------------------


SKIP = ("--skip-env", "--skip-weights")


@pytest.mark.parametrize("make_args, words", [
    (lambda t: ["--skip-env", "--from", str(t / "missing.h5")], "--from"),
    (lambda t: [*SKIP, "--gimp-dir", str(t / "afile")], "is a file"),
    (lambda t: [*SKIP, "--venv", str(t / "afile")], "is a file"),
    (lambda t: [*SKIP, "--source", str(t / "nowhere")], "--source"),
    (lambda t: ["--skip-weights", "--python", str(t / "nopython"), "--gimp-dir", str(t / "g")],
     "--python"),
])
def test_bad_paths_are_one_error_before_any_work(tmp_path, home, quiet_system, capsys,
                                                 make_args, words):
    (tmp_path / "afile").write_text("x")
    (home / ".config/GIMP/3.0/plug-ins").mkdir(parents=True)
    before = snapshot(tmp_path)
    code = run_main("--home", str(home), *make_args(tmp_path))
    out = capsys.readouterr().out
    assert code == EXIT_USAGE
    assert out.count("ERROR: ") == 1 and words in out and "Traceback" not in out
    assert snapshot(tmp_path) == before


def test_a_folder_that_is_not_an_environment_is_refused_untouched(tmp_path, home, quiet_system,
                                                                 capsys):
    venv = tmp_path / "mystuff"
    venv.mkdir()
    (venv / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    code = run_main("--home", str(home), "--venv", str(venv), "--gimp-dir", str(tmp_path / "g"))
    assert code == 4
    assert "not a Python virtual environment" in capsys.readouterr().out
    assert snapshot(tmp_path) == before


def test_a_file_where_the_plugin_folder_goes_is_refused_untouched(tmp_path, home, quiet_system,
                                                                  capsys):
    plugins = home / ".config/GIMP/3.0/plug-ins"
    plugins.mkdir(parents=True)
    (plugins / "neural-style").write_text("someone's file")
    before = snapshot(tmp_path)
    code = run_main("--home", str(home), "--skip-env", "--skip-weights")
    out = capsys.readouterr().out
    assert code == EXIT_ERROR and "not a folder" in out and "Traceback" not in out
    assert snapshot(tmp_path) == before


# -- failures midway ------------------------------------------------------------------------------


def test_failure_midway_says_what_is_left_and_uninstall_undoes_it(tmp_path, home, quiet_system,
                                                                  capsys, monkeypatch):
    plugins = home / ".config/GIMP/3.0/plug-ins"
    plugins.mkdir(parents=True)
    before = snapshot(home)
    real_write, calls = actions.write_atomic, []

    def second_write_denied(path, data, mode):
        calls.append(path)
        if len(calls) == 2:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        real_write(path, data, mode)

    monkeypatch.setattr(actions, "write_atomic", second_write_denied)
    code = run_main("--home", str(home), "--skip-env", "--skip-weights")
    out = capsys.readouterr().out
    assert code == EXIT_ERROR and "Traceback" not in out
    assert f"no permission to write {calls[1]}" in out
    assert "install-manifest.json" in out and "--uninstall" in out
    monkeypatch.undo()
    assert run_main("--home", str(home), "--uninstall") == 0
    assert snapshot(home) == before


def test_an_unexpected_error_is_one_message_and_leaves_nothing(tmp_path, home, quiet_system,
                                                               capsys, monkeypatch):
    (home / ".config/GIMP/3.0/plug-ins").mkdir(parents=True)
    before = snapshot(home)

    def bug(*args):
        raise ValueError("a bug")

    monkeypatch.setattr(installation, "sandbox_notes", bug)
    monkeypatch.setattr(installation.PluginCopier, "install", lambda self, t: None)
    code = run_main("--home", str(home), "--skip-env", "--skip-weights")
    out = capsys.readouterr().out
    assert code == EXIT_ERROR
    assert "ERROR: Unexpected failure (ValueError: a bug)" in out and "Traceback" not in out
    assert snapshot(home) == before          # nothing was installed: no manifest is left


# -- uninstall: exactly what the manifest lists ---------------------------------------------------


def test_uninstall_removes_exactly_the_manifest_and_keeps_the_users(tmp_path, home,
                                                                    quiet_system, capsys):
    plugins = home / ".config/GIMP/3.0/plug-ins"
    plugins.mkdir(parents=True)
    (plugins / "my-filter.py").write_text("the user's own plug-in")
    assert run_main("--home", str(home), "--skip-env", "--skip-weights") == 0
    folder = plugins / "neural-style"
    (folder / "my-notes.txt").write_text("the user's notes")
    config = folder / "nst-core.json"
    config.write_text('{"version": 1, "command": ["ssh", "gpu-box", "nst", "worker"]}\n')
    manifest = home / ".local/share/neural-style-gimp/install-manifest.json"
    listed = set(json.loads(manifest.read_text())["files"])
    shared = [p.name for p in [*(REPO / "gimp_plugin").glob("nst_*.py"),
                               *(REPO / "gimp_plugin" / "neural-style").glob("nst_*.py")]]
    assert listed == {str(folder / n) for n in ["neural-style.py", "nst-core.json", *shared]}
    capsys.readouterr()

    assert run_main("--home", str(home), "--uninstall") == 0
    out = capsys.readouterr().out
    assert sorted(os.listdir(plugins)) == ["my-filter.py", "neural-style"]
    assert (plugins / "my-filter.py").read_text() == "the user's own plug-in"
    # The user's notes and the config they edited stay (and the summary says so).
    assert sorted(os.listdir(folder)) == ["my-notes.txt", "nst-core.json"]
    assert "ssh" in config.read_text() and f"Kept {config}" in out
    assert not manifest.exists() and not (home / ".local").exists()


def test_uninstall_that_cannot_remove_a_file_keeps_the_manifest(tmp_path, home, quiet_system,
                                                                capsys, monkeypatch):
    (home / ".config/GIMP/3.0/plug-ins").mkdir(parents=True)
    assert run_main("--home", str(home), "--skip-env", "--skip-weights") == 0
    manifest = home / ".local/share/neural-style-gimp/install-manifest.json"
    real_remove = os.remove

    def stuck(path, *a, **k):
        if path.endswith("nst_bridge.py"):
            raise PermissionError(errno.EBUSY, "Device or resource busy", path)
        real_remove(path, *a, **k)

    monkeypatch.setattr(os, "remove", stuck)
    code = run_main("--home", str(home), "--uninstall")
    monkeypatch.undo()
    out = capsys.readouterr().out
    assert code == EXIT_LEFTOVER and "nst_bridge.py" in out and "run --uninstall" in out
    assert manifest.is_file()
    assert run_main("--home", str(home), "--uninstall") == 0
    assert not (home / ".config/GIMP/3.0/plug-ins/neural-style").exists()


def test_bad_input_after_an_install_changes_nothing_and_claims_nothing(tmp_path, home,
                                                                       quiet_system, capsys):
    (home / ".config/GIMP/3.0/plug-ins").mkdir(parents=True)
    assert run_main("--home", str(home), "--skip-env", "--skip-weights") == 0
    installed = snapshot(home)
    capsys.readouterr()
    code = run_main("--home", str(home), "--skip-env", "--from", str(tmp_path / "none.h5"))
    out = capsys.readouterr().out
    assert code == EXIT_USAGE and out.count("ERROR: ") == 1
    assert "installed so far" not in out
    assert snapshot(home) == installed
