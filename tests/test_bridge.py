"""gimp_plugin/nst_bridge.py: Python 2.7 and 3, stdlib only, one readable BridgeError per
failure, never a zombie. Real core processes throughout (the real worker, or small python -c
scripts standing in for a broken core)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from .worker_client import (
    FAST,
    LONG,
    ROOT,
    from_samples,
    gradient,
    needs_weights,
    style_png,
    to_samples,
)

BRIDGE = ROOT / "gimp_plugin" / "nst_bridge.py"
sys.path.insert(0, str(BRIDGE.parent))
import nst_bridge  # noqa: E402

CORE = [sys.executable, "-m", "nst_core.worker"]


def test_plugin_choices_and_defaults_are_the_cores():
    """GIMP's Python cannot import nst_core (no torch), so the bridge repeats what the plug-ins
    show; this keeps it equal to the one definition in nst_core/options.py."""
    from nst_core.options import DEVICES, PRESETS, Options

    assert nst_bridge.PRESETS == tuple(PRESETS)
    assert nst_bridge.DEVICES == DEVICES
    defaults = Options()
    for name, value in nst_bridge.DEFAULTS.items():
        if name not in ("size_mode", "size", "max_memory"):  # the plug-ins' own size choices
            assert getattr(defaults, name) == value, name
    core = Options.from_dict(nst_bridge.core_options(nst_bridge.DEFAULTS))
    assert core.size is None and core.max_memory is None  # auto: the layer's size, free memory
    assert Options.from_dict(nst_bridge.core_options({"size": 0})).size is None
    assert Options.from_dict(nst_bridge.core_options({"size": 640})).size == 640
    assert Options.from_dict(nst_bridge.core_options(
        {"size_mode": "layer", "size": 640})).size is None
    assert nst_bridge.SIZE_MODES[0] == nst_bridge.DEFAULTS["size_mode"] == "auto"
    assert nst_bridge.MAX_SIZE == 16384  # Options' own limit


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Logs under this test's tmp dir; no NST_CORE_COMMAND unless a test sets one."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("NST_CORE_COMMAND", raising=False)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    leftovers = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not leftovers, f"processes (or zombies) left behind: {leftovers}"


def core_config(tmp_path, command) -> str:
    folder = tmp_path / "plugin"
    folder.mkdir(exist_ok=True)
    (folder / nst_bridge.CONFIG_NAME).write_text(json.dumps({"version": 1, "command": command}))
    return str(folder)


def fake_core(tmp_path, script: str) -> str:
    """A config folder whose core is `python -c script`."""
    return core_config(tmp_path, [sys.executable, "-c", script])


def style_file(tmp_path) -> str:
    path = tmp_path / "starry.png"
    path.write_bytes(style_png())
    return str(path)


def content(w=40, h=32, channels=3, fmt="u8"):
    return dict(width=w, height=h, channels=channels, format=fmt,
                data=to_samples(gradient(w, h, channels, fmt), fmt))


def log_folder() -> Path:
    """This user's private log folder (the autouse fixture puts it in the test's tmp dir)."""
    return Path(nst_bridge.log_dir())


def logs(tmp_path) -> list[Path]:
    return sorted(log_folder().glob("core-*.log"))


def assert_names_log(error, tmp_path) -> Path:
    assert error.log_path and error.message.endswith(error.log_path)
    assert str(error) == error.message
    path = Path(error.log_path)
    assert path.exists() and path.parent == log_folder()
    assert path.parent.parent == tmp_path
    assert path.name.startswith("core-") and f"-pid{os.getpid()}-" in path.name
    return path


# -- Python 2.7 and 3, stdlib only ---------------------------------------------------------------


def test_vermin_says_python_27_and_38():
    vermin = Path(sys.executable).parent / "vermin"
    done = subprocess.run([str(vermin), "-t=2.7-", "-t=3.8-", "--no-tips", str(BRIDGE)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_stdlib_only_and_no_nst_core():
    tree = ast.parse(BRIDGE.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    modules -= {"__future__", "Queue"}  # Python 2's name of queue
    assert modules <= sys.stdlib_module_names, modules - sys.stdlib_module_names
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import nst_bridge;"
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nst_core', 'torch',"
         " 'numpy')))", str(BRIDGE.parent)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def python27():
    for candidate in (shutil.which("python2.7"), "/root/.pyenv/versions/2.7.18/bin/python",
                      "/usr/bin/python2.7"):
        if candidate and os.path.exists(candidate):
            try:
                out = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            except OSError:
                continue
            if out.returncode == 0 and "2.7" in out.stdout + out.stderr:
                return candidate
    return None


PY27 = python27()
PY27_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import nst_bridge
seen = []
w, h = 24, 20
data = bytes(bytearray([(x * 10 + c * y * 12) % 256 for y in range(h) for x in range(w)
                       for c in (0, 1, 2)]))
try:
    r = nst_bridge.run(json.loads(sys.argv[3]), dict(width=w, height=h, channels=3, format="u8",
                       data=data), [sys.argv[2]], on_progress=lambda f, t: seen.append((f, t)))
    out = dict(ok=True, width=r["width"], height=r["height"], n=len(r["data"]),
               type=type(r["data"]).__name__, progress=len(seen), last=seen[-1][1])
except nst_bridge.BridgeError as e:
    out = dict(ok=False, kind=e.kind, message=e.message)
print(json.dumps(out))
"""


@pytest.mark.skipif(PY27 is None, reason="no Python 2.7 on this machine")
def test_python27_reports_a_missing_core(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NST_CORE_COMMAND"}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run([PY27, "-c", PY27_SCRIPT, str(BRIDGE.parent), style_file(tmp_path),
                           "{}"], capture_output=True, text=True, env=env, timeout=60)
    # The bridge beside no nst-core.json: a clear core_missing, also on Python 2.
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ok"] is False and out["kind"] == "core_missing", done.stderr
    assert "installer/install.py" in out["message"]


@pytest.mark.skipif(PY27 is None, reason="no Python 2.7 on this machine")
@pytest.mark.slow
@needs_weights
def test_python27_runs_the_core(tmp_path):
    """GIMP 2.10's Python 2.7 drives a real core through the bridge."""
    env = dict(os.environ, TMPDIR=str(tmp_path),
               NST_CORE_COMMAND=" ".join([sys.executable, "-m", "nst_core.worker"]))
    done = subprocess.run([PY27, "-c", PY27_SCRIPT, str(BRIDGE.parent), style_file(tmp_path),
                           json.dumps(FAST)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ok"], out
    assert (out["width"], out["height"], out["n"]) == (24, 20, 24 * 20 * 3)
    assert out["type"] == "str"  # bytes on Python 2
    assert out["progress"] >= 2 and out["last"].startswith("Neural style:")


PY27_UNICODE_SCRIPT = r"""
# -*- coding: utf-8 -*-
import json, sys
sys.path.insert(0, sys.argv[1])
import nst_bridge
out = {}
try:
    nst_bridge.run({}, dict(width=1, height=1, channels=3, format="u8", data=b"abc"),
                   [sys.argv[2]], config_dir=sys.argv[3])
except nst_bridge.BridgeError as e:
    out = dict(kind=e.kind, message=e.message, str_ok=len(str(e)) > 0,
               unicode=isinstance(e.message, unicode))
print(json.dumps(out))
"""


@pytest.mark.skipif(PY27 is None, reason="no Python 2.7 on this machine")
def test_python27_non_ascii_paths_and_messages(tmp_path):
    """GIMP 2.10 on Windows with a user name like "Jose" with an accent: the temp folder, the
    style path and the core's message are not ASCII; the user still gets one message."""
    home = tmp_path / "Jos\u00e9"
    home.mkdir()
    style = home / "\u00e9t\u00e9.png"
    style.write_bytes(style_png())
    script = ("import json, sys\nsys.stdin.readline()\n"
              "msg = {'type': 'error', 'kind': 'bad_image',"
              " 'message': u'le style \\u00e9t\\u00e9 est illisible'}\n"
              "sys.stdout.write(json.dumps(msg) + '\\n'); sys.exit(3)\n")
    env = {k: v for k, v in os.environ.items() if k != "NST_CORE_COMMAND"}
    env.update(TMPDIR=str(home), LC_ALL="C.UTF-8", LANG="C.UTF-8")
    done = subprocess.run([PY27, "-c", PY27_UNICODE_SCRIPT, str(BRIDGE.parent), str(style),
                           fake_core(tmp_path, script)], capture_output=True, text=True,
                          env=env, timeout=60)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["kind"] == "bad_image", done.stderr
    assert out["message"].startswith("Le style \u00e9t\u00e9 est illisible. Log: ")
    assert "Jos\u00e9" in out["message"] and out["unicode"] and out["str_ok"]


# -- finding the core ----------------------------------------------------------------------------


def test_core_missing_says_how_to_repair(tmp_path):
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.find_core_command(config_dir=str(tmp_path))
    assert e.value.kind == "core_missing"
    assert "installer/install.py" in e.value.message
    assert str(tmp_path / "nst-core.json") in e.value.message


def test_run_without_core_is_core_missing(tmp_path):
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [style_file(tmp_path)], config_dir=str(tmp_path))
    assert e.value.kind == "core_missing"


def test_damaged_config_is_core_missing(tmp_path):
    (tmp_path / "nst-core.json").write_text("{not json")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.find_core_command(config_dir=str(tmp_path))
    assert e.value.kind == "core_missing" and "installer/install.py" in e.value.message
    (tmp_path / "nst-core.json").write_text('{"version": 1, "command": []}')
    with pytest.raises(nst_bridge.BridgeError, match="command"):
        nst_bridge.find_core_command(config_dir=str(tmp_path))


def test_config_beside_the_bridge_and_env_override(tmp_path, monkeypatch):
    folder = core_config(tmp_path, ["/opt/nst/venv/bin/python", "-m", "nst_core.worker"])
    assert nst_bridge.find_core_command(folder) == [
        "/opt/nst/venv/bin/python", "-m", "nst_core.worker"]
    monkeypatch.setenv("NST_CORE_COMMAND", "ssh gpu-box '/srv/my venv/bin/nst' worker")
    assert nst_bridge.find_core_command(folder) == [
        "ssh", "gpu-box", "/srv/my venv/bin/nst", "worker"]


def test_core_program_that_does_not_exist(tmp_path):
    folder = core_config(tmp_path, [str(tmp_path / "gone" / "python"), "-m", "nst_core.worker"])
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [style_file(tmp_path)], config_dir=folder)
    assert e.value.kind == "core_missing"
    assert "gone" in e.value.message and "installer/install.py" in e.value.message


@pytest.mark.skipif(os.name != "posix", reason="execute permission is POSIX")
def test_core_program_not_executable(tmp_path):
    program = tmp_path / "python"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o644)
    folder = core_config(tmp_path, [str(program)])
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [style_file(tmp_path)], config_dir=folder)
    assert e.value.kind == "core_missing" and "not executable" in e.value.message


def test_core_found_on_path_but_failing_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CORE_COMMAND", "no-such-nst-core-program worker")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [style_file(tmp_path)])
    assert e.value.kind == "core_missing"
    assert "no-such-nst-core-program" in e.value.message
    assert_names_log(e.value, tmp_path)


# -- the request ---------------------------------------------------------------------------------


def test_plugin_options_map_to_core_options():
    assert nst_bridge.core_options({"size": 0, "strength": 2, "preserve_colors": 1,
                                    "seed": 7.0, "iterations": 3}) == {
        "preset": "standard", "size": None, "strength": 2.0, "preserve_colors": True,
        "device": "auto", "seed": 7, "iterations": 3, "style_scale": 1.0, "max_memory": None}
    assert nst_bridge.core_options({})["size"] == 1024  # a script's custom size
    assert nst_bridge.core_options({"size_mode": "auto", "max_memory": 2})["size"] is None
    assert nst_bridge.core_options({"max_memory": 2})["max_memory"] == 2.0


def test_no_style_chosen(tmp_path):
    folder = core_config(tmp_path, CORE)
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [], config_dir=folder)
    assert e.value.kind == "bad_image" and "Choose a style image" in e.value.message


def test_style_file_missing(tmp_path):
    folder = core_config(tmp_path, CORE)
    missing = str(tmp_path / "nowhere.jpg")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [missing], config_dir=folder)
    assert e.value.kind == "bad_image" and missing in e.value.message


def test_pixel_data_of_the_wrong_length(tmp_path):
    folder = core_config(tmp_path, CORE)
    bad = dict(content(), data=b"\x00" * 10)
    with pytest.raises(nst_bridge.BridgeError, match="holds 10 bytes"):
        nst_bridge.run({}, bad, [style_file(tmp_path)], config_dir=folder)
    assert logs(tmp_path) == []  # nothing was started


def test_progress_text():
    assert nst_bridge.progress_text({"phase": "stylizing", "scale": 2, "scales": 5,
                                     "fraction": 0.43, "eta_s": 35.2}) == (
        "Neural style: scale 2/5, 43%, about 0:35 left")
    assert nst_bridge.progress_text({"phase": "stylizing", "scale": 1, "scales": 1,
                                     "fraction": 0.5, "eta_s": 125}) == (
        "Neural style: 50%, about 2:05 left")
    assert nst_bridge.progress_text({"phase": "loading", "fraction": 0}) == (
        "Neural style: loading")


# -- the core's answers --------------------------------------------------------------------------


def test_core_error_message_reaches_the_user(tmp_path):
    folder = core_config(tmp_path, CORE)
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({"sharpness": 3}, content(), [style_file(tmp_path)], config_dir=folder)
    assert e.value.kind == "bad_option"
    assert "sharpness" in e.value.message
    log = assert_names_log(e.value, tmp_path)
    assert "sharpness" in log.read_text()  # the core's own log went there


def test_core_gets_no_pythonpath_or_pythonhome(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/gimp/lib/python")
    monkeypatch.setenv("PYTHONHOME", "/gimp")
    script = ("import json, os, sys\n"
              "sys.stdin.readline()\n"
              "seen = [k for k in ('PYTHONPATH', 'PYTHONHOME') if k in os.environ]\n"
              "msg = {'type': 'error', 'kind': 'internal', 'message': 'env has %s' % seen}\n"
              "sys.stdout.write(json.dumps(msg) + '\\n'); sys.exit(1)\n")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [style_file(tmp_path)], config_dir=fake_core(tmp_path,
                                                                                   script))
    assert "Env has []" in e.value.message


@pytest.mark.parametrize("script, words", [
    ("import sys\nsys.stdin.readline()\n"
     "sys.stderr.write('boom: the core fell over\\n')\nsys.exit(3)\n", "exited with code 3"),
    ("import os, signal, sys\nsys.stdin.readline()\n"
     "sys.stdout.write('{\"type\": \"progress\", \"phase\": \"stylizing\", \"fraction\": 0.1}\\n')"
     "\nsys.stdout.flush()\nsys.stderr.write('boom: the core fell over\\n')\nsys.stderr.flush()\n"
     "os.kill(os.getpid(), signal.SIGKILL)\n", "killed by SIGKILL"),
])
def test_core_crash_mid_run(tmp_path, script, words):
    if os.name != "posix" and "SIGKILL" in words:
        pytest.skip("POSIX signals")
    progress = []
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [style_file(tmp_path)],
                       on_progress=lambda f, t: progress.append(f),
                       config_dir=fake_core(tmp_path, script))
    assert e.value.kind == "core_crashed"
    assert words in e.value.message
    assert "boom: the core fell over" in e.value.message  # the log's last lines
    assert "boom" in assert_names_log(e.value, tmp_path).read_text()


def test_protocol_garbage_is_reported_and_the_core_killed(tmp_path):
    script = ("import sys, time\nsys.stdout.write('Welcome to my shell!\\n')\n"
              "sys.stdout.flush()\ntime.sleep(120)\n")
    t0 = time.monotonic()
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [style_file(tmp_path)],
                       config_dir=fake_core(tmp_path, script))
    assert time.monotonic() - t0 < 60  # did not wait for the sleeping core
    assert e.value.kind == "core_crashed"
    assert "Welcome to my shell" in e.value.message and "protocol" in e.value.message
    assert_names_log(e.value, tmp_path)


def test_a_result_of_the_wrong_size_is_garbage(tmp_path):
    script = ("import json, sys\nsys.stdin.readline()\n"
              "sys.stdout.write(json.dumps({'type': 'result', 'width': 1, 'height': 1,"
              " 'channels': 3, 'format': 'u8', 'payload': 3}) + '\\n')\n"
              "sys.stdout.write('abc'); sys.stdout.flush()\n")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [style_file(tmp_path)],
                       config_dir=fake_core(tmp_path, script))
    assert e.value.kind == "core_crashed" and "not the image asked for" in e.value.message


def test_a_hung_core_is_cancelled_and_killed(tmp_path):
    """A core that ignores cancel and stdin: killed 2 s after the cancel, reaped."""
    script = ("import signal, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "sys.stdout.write('{\"type\": \"progress\", \"phase\": \"loading\","
              " \"fraction\": 0}\\n'); sys.stdout.flush()\n"
              "time.sleep(120)\n")
    progress = []
    t0 = time.monotonic()
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [style_file(tmp_path)],
                       on_progress=lambda f, t: progress.append(t),
                       should_cancel=lambda: bool(progress),
                       config_dir=fake_core(tmp_path, script))
    assert e.value.kind == "cancelled"
    assert time.monotonic() - t0 < 60
    assert "killing it" in assert_names_log(e.value, tmp_path).read_text()


# -- real runs -----------------------------------------------------------------------------------


@pytest.mark.slow
@needs_weights
def test_run_returns_the_result_with_progress(tmp_path):
    folder = core_config(tmp_path, CORE)
    seen = []
    c = content(36, 30, 4, "u16")
    result = nst_bridge.run(dict(FAST, preset="draft"), c, [style_file(tmp_path)],
                            on_progress=lambda f, t: seen.append((f, t)), config_dir=folder)
    assert (result["width"], result["height"], result["channels"], result["format"]) == (
        36, 30, 4, "u16")
    out = from_samples(result["data"], "u16", 30, 36, 4)
    original = from_samples(c["data"], "u16", 30, 36, 4)
    assert np.array_equal(out[..., 3], original[..., 3])
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    texts = [t for _, t in seen]
    assert all(t.startswith("Neural style: ") for t in texts)
    assert any("%" in t for t in texts)
    assert any("left" in t for t in texts)
    assert len(logs(tmp_path)) == 1


@pytest.mark.slow
@needs_weights
def test_result_format_can_differ_from_the_layer(tmp_path):
    folder = core_config(tmp_path, CORE)
    result = nst_bridge.run(FAST, content(32, 32, 1, "u8"), [style_file(tmp_path)],
                            result_format="f32", config_dir=folder)
    assert result["format"] == "f32" and len(result["data"]) == 32 * 32 * 4


@pytest.mark.slow
@needs_weights
def test_cancel_through_the_bridge(tmp_path):
    folder = core_config(tmp_path, CORE)
    seen = []
    cancelled_at = []

    def should_cancel():
        if any("%" in t for t in seen) and not cancelled_at:
            cancelled_at.append(time.monotonic())
        return bool(cancelled_at)

    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run(LONG, content(), [style_file(tmp_path)],
                       on_progress=lambda f, t: seen.append(t), should_cancel=should_cancel,
                       config_dir=folder)
    assert e.value.kind == "cancelled"
    assert time.monotonic() - cancelled_at[0] < 10
    log = assert_names_log(e.value, tmp_path).read_text()
    assert "asked the core to stop" in log  # the core saw the cancel message
    # (the autouse fixture checks that no process is left)


@pytest.mark.slow
@needs_weights
def test_two_runs_at_once_do_not_collide(tmp_path):
    folder = core_config(tmp_path, CORE)
    style = style_file(tmp_path)
    results, errors = {}, []

    def one(name, w, h):
        try:
            results[name] = nst_bridge.run(FAST, content(w, h), [style], config_dir=folder)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=("a", 40, 32)),
               threading.Thread(target=one, args=("b", 30, 36))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    assert (results["a"]["width"], results["a"]["height"]) == (40, 32)
    assert (results["b"]["width"], results["b"]["height"]) == (30, 36)
    found = logs(tmp_path)
    assert len(found) == 2 and found[0] != found[1]
    for log in found:
        assert f"pid{os.getpid()}" in log.name
        assert "sent the result" in log.read_text()


@pytest.mark.slow
def test_estimate_asks_the_real_core(tmp_path):
    answer = nst_bridge.estimate({"device": "cpu"}, 800, 600,
                                 config_dir=core_config(tmp_path, CORE))
    assert set(answer["table"]) == set(nst_bridge.PRESETS)
    t_small = nst_bridge.estimated_seconds(answer, "standard", 300)
    t_layer = nst_bridge.estimated_seconds(answer, "standard", 800)
    assert 0 < t_small < t_layer
    assert nst_bridge.estimated_seconds(answer, "standard", 100000) is None  # past the table


def test_estimate_interpolation_and_durations():
    answer = {"table": {"standard": [[256, 10.0], [512, 40.0], [1024, 160.0]]}}
    assert nst_bridge.estimated_seconds(answer, "standard", 512) == 40.0
    assert abs(nst_bridge.estimated_seconds(answer, "standard", 724) - 80.0) < 1.0  # log-log
    assert nst_bridge.estimated_seconds(answer, "draft", 512) is None
    assert nst_bridge.format_duration(42) == "about 40 s"
    assert nst_bridge.format_duration(250) == "about 4 min"
    assert nst_bridge.format_duration(4800) == "about 1 h 20 min"


def test_a_core_that_cannot_estimate_is_one_bridge_error(tmp_path):
    script = ("import sys, json; sys.stdin.readline(); "
              "print(json.dumps({'type': 'error', 'kind': 'weights', 'message': 'no weights'}))")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.estimate({}, 800, 600, config_dir=fake_core(tmp_path, script))
    assert e.value.kind == "weights" and "No weights" in e.value.message
