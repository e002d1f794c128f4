"""gimp_plugin/nst_bridge.py: Python 2.7 and 3, stdlib only, one readable BridgeError per
failure, never a zombie. Real core processes throughout (the real worker, or small python -c
scripts standing in for a broken core)."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
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
import nst_logs  # noqa: E402
import nst_options  # noqa: E402
import nst_process  # noqa: E402
import nst_protocol  # noqa: E402
import nst_wording  # noqa: E402

CORE = [sys.executable, "-m", "nst_core.worker"]


OPTIONS_TABLE = BRIDGE.parent / "nst_options.py"


def test_the_plugin_table_agrees_with_the_cores_options():
    """GIMP's Python cannot import nst_core (no torch), so the plug-ins' table repeats what the
    dialogs offer; this keeps it equal to the one definition in nst_core/options.py: every
    choice is the core's, every default the core's (or the plug-ins' documented own), every
    range inside what the core accepts."""
    from nst_core import options as core

    defaults = core.Options()
    choices = {"preset": tuple(core.PRESETS), "device": core.DEVICES, "colors": core.COLORS,
               "model": core.MODELS, "style_loss": core.STYLE_LOSSES}
    sent = {o.name for o in nst_options.OPTIONS if o.core} - {"size_mode"}
    assert sent <= {f.name for f in dataclasses.fields(core.Options)}
    for o in nst_options.OPTIONS:
        if o.kind == "choice" and o.name != "size_mode":
            assert o.values == choices[o.name], o.name
        if o.core and o.name not in ("size_mode", "size", "max_memory"):
            assert getattr(defaults, o.name) == o.default, o.name
    assert nst_options.BY_NAME["size"].high == core.MAX_SIZE
    assert nst_options.MIN_SIZE == dataclasses.fields(core.Options)[0].metadata["minimum"]
    assert nst_options.MIN_MEMORY_GB == core.MIN_MEMORY_GB
    assert nst_options.BY_NAME["style_scale"].high == core.MAX_STYLE_SCALE
    assert nst_options.MAX_SEED <= core.MAX_SEED
    # Every value a dialog can give is one the core takes (0: "automatic", sent as None).
    for o in nst_options.OPTIONS:
        if o.core and o.kind in ("int", "float"):
            for value in (o.low, o.high, o.default):
                core.Options.from_dict(nst_protocol.core_options({o.name: value}))
    core_defaults = core.Options.from_dict(nst_protocol.core_options(nst_protocol.DEFAULTS))
    assert core_defaults.size is None and core_defaults.max_memory is None  # auto: layer, free
    assert core.Options.from_dict(nst_protocol.core_options({"size": 640})).size == 640
    assert core.Options.from_dict(nst_protocol.core_options(
        {"size_mode": "layer", "size": 640})).size is None
    assert nst_options.choice_values("size_mode")[0] == nst_protocol.DEFAULTS["size_mode"] == "auto"


def test_every_preset_says_what_it_costs():
    for value, _label, help_text in nst_options.BY_NAME["preset"].choices:
        assert "time" in help_text or " s " in help_text, value


def test_mnemonics_are_unique_and_clear_of_the_dialogs_buttons():
    """GIMP 3 prints a warning for two fields with one Alt+letter (Style _strength and _Save
    Settings shared Alt+S), and the keyboard reaches only one of them."""
    letters = []
    for o in nst_options.for_gimp(3):
        assert o.label.count("_") == 1, o.label
        letters.append(o.label[o.label.index("_") + 1].lower())
    assert len(set(letters)) == len(letters), letters
    assert not set(letters) & set(nst_options.BUTTON_MNEMONICS)
    for o in nst_options.OPTIONS:  # GIMP's own words are US English
        text = " ".join([o.label, o.label2, o.help] + [" ".join(c[1:]) for c in o.choices])
        assert "colour" not in text.lower() and "grey" not in text.lower(), o.name


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
    (folder / nst_process.CONFIG_NAME).write_text(json.dumps({"version": 1, "command": command}))
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
    return Path(nst_logs.log_dir())


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
    done = subprocess.run([str(vermin), "-t=2.7-", "-t=3.8-", "--no-tips", str(BRIDGE),
                           str(OPTIONS_TABLE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_stdlib_only_and_no_nst_core():
    modules = set()
    for path in BRIDGE.parent.glob("nst_*.py"):  # the bridge's modules and the options table
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module.split(".")[0])
    modules = {m for m in modules if not m.startswith("nst_")}  # each other
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
    assert out["message"].startswith("Le style \u00e9t\u00e9 est illisible.\nLog: ")
    assert "Jos\u00e9" in out["message"] and out["unicode"] and out["str_ok"]


PY27_HARDENING_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import nst_bridge, nst_logs
folder, style, fifo = sys.argv[2:5]
content = dict(width=2, height=1, channels=3, format="u8", data=b"abcdef")
RESULT = '{"type":"result","width":2,"height":1,"channels":3,"format":"u8","payload":6}\n'
cores = dict(
    nan=['{"type":"progress","fraction":NaN,"eta_s":Infinity,"scale":1e999}\n', RESULT, "abcdef"],
    junk=['{"type":"progress","fraction":{"a":[1]}}\n'],
    nested=["[" * 30000 + "]" * 30000 + "\n"],
    error=['{"type":"error","kind":"x","message":"caf\\u00e9 \\u202e\\u0007 bad"}\n'])
out = {}
for name, lines in sorted(cores.items()) + [("fifo", [])]:
    script = "import sys; sys.stdin.readline(); sys.stdout.write(%r)" % "".join(lines)
    with open(os.path.join(folder, "nst-core.json"), "w") as f:
        json.dump({"command": [sys.executable, "-c", script]}, f)
    try:
        r = nst_bridge.run({}, content, [fifo if name == "fifo" else style], config_dir=folder)
        out[name] = ["ok", len(r["data"])]
    except nst_bridge.BridgeError as e:
        out[name] = [e.kind, e.message]
try:
    nst_bridge.run({}, dict(content, format="u9"), [style], config_dir=folder)
except nst_bridge.BridgeError as e:
    out["format"] = [e.kind, e.message]
out["mode"] = oct(os.stat(nst_logs.log_dir()).st_mode & 0o777)
print(json.dumps(out))
"""


@pytest.mark.skipif(PY27 is None or not hasattr(os, "mkfifo"), reason="no Python 2.7 or FIFOs")
def test_python27_hardening(tmp_path):
    """The checks of what the core sends, and of style files and log folders, on Python 2."""
    os.mkfifo(tmp_path / "fifo")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run([PY27, "-c", PY27_HARDENING_SCRIPT, str(BRIDGE.parent),
                           str(tmp_path), style_file(tmp_path), str(tmp_path / "fifo")],
                          capture_output=True, text=True, env=env, timeout=60)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["nan"] == ["ok", 6], done.stderr
    assert out["junk"][0] == out["nested"][0] == "core_crashed"
    assert "fraction is an object" in out["junk"][1]
    assert out["error"][0] == "internal" and out["error"][1].startswith("Caf\u00e9")
    message, log_line = out["error"][1].rsplit("\n", 1)
    assert all(c.isprintable() for c in message) and log_line.startswith("Log: ")
    assert out["fifo"][0] == "bad_image" and "not an image file" in out["fifo"][1]
    assert out["format"][0] == "bad_request" and '"u9"' in out["format"][1]
    assert out["mode"] in ("0700", "0o700")


# -- finding the core ----------------------------------------------------------------------------


def test_core_missing_says_how_to_repair(tmp_path):
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_process.find_core_command(config_dir=str(tmp_path))
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
        nst_process.find_core_command(config_dir=str(tmp_path))
    assert e.value.kind == "core_missing" and "installer/install.py" in e.value.message
    (tmp_path / "nst-core.json").write_text('{"version": 1, "command": []}')
    with pytest.raises(nst_bridge.BridgeError, match="command"):
        nst_process.find_core_command(config_dir=str(tmp_path))


def test_config_beside_the_bridge_and_env_override(tmp_path, monkeypatch):
    folder = core_config(tmp_path, ["/opt/nst/venv/bin/python", "-m", "nst_core.worker"])
    assert nst_process.find_core_command(folder) == [
        "/opt/nst/venv/bin/python", "-m", "nst_core.worker"]
    monkeypatch.setenv("NST_CORE_COMMAND", "ssh gpu-box '/srv/my venv/bin/nst' worker")
    assert nst_process.find_core_command(folder) == [
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
    assert nst_protocol.core_options({"size": 0, "strength": 2, "preserve_colors": 1,
                                    "seed": 7.0, "iterations": 3, "style_weights": "2, 1",
                                    "style_file": "a.png"}) == {
        "preset": "standard", "size": None, "strength": 2.0, "colors": "style",
        "preserve_colors": True, "model": "vgg19", "style_loss": "gram", "device": "auto",
        "seed": 7, "iterations": 3, "style_scale": 1.0, "max_memory": None}
    assert nst_protocol.core_options({"colors": "histogram", "model": "vgg16",
                                    "style_loss": "w2"})["colors"] == "histogram"
    from nst_core.options import Options  # the core reads the earlier option, in one place
    for keep, colors, result in ((1, "style", "luminance"), (False, "style", "style"),
                                 (True, "histogram", "histogram")):
        sent = nst_protocol.core_options({"preserve_colors": keep, "colors": colors})
        assert Options.from_dict(sent).colors == result
    assert nst_protocol.core_options({})["size"] == 1024  # a script's custom size
    assert nst_protocol.core_options({"size_mode": "auto", "max_memory": 2})["size"] is None
    assert nst_protocol.core_options({"max_memory": 2})["max_memory"] == 2.0


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
    assert nst_wording.progress_text({"phase": "stylizing", "scale": 2, "scales": 5,
                                     "fraction": 0.43, "eta_s": 35.2}) == (
        "Neural style: scale 2/5, 43%, about 0:35 left")
    assert nst_wording.progress_text({"phase": "stylizing", "scale": 1, "scales": 1,
                                     "fraction": 0.5, "eta_s": 125}) == (
        "Neural style: 50%, about 2:05 left")
    assert nst_wording.progress_text({"phase": "loading", "fraction": 0}) == (
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


# -- a misbehaving core: one BridgeError, whatever it sends ---------------------------------------

W, H = 40, 32  # content()'s size: the result a run asks for
RESULT = dict(type="result", width=W, height=H, channels=3, format="u8", payload=W * H * 3)
NAN, INF = float("nan"), float("inf")


def line(**message) -> bytes:
    """One protocol line as Python's json writes it (NaN and Infinity included)."""
    return (json.dumps(message) + "\n").encode()


def replay_core(tmp_path, output: str, then: str = "sys.exit(0)") -> str:
    """A config folder whose core reads the request's first line, writes the bytes that the
    Python expression `output` gives, then runs `then`."""
    script = (f"import os, sys, time\nsys.stdin.readline()\n"
              f"sys.stdout.buffer.write({output}); sys.stdout.flush()\n{then}\n")
    return fake_core(tmp_path, script)


def assert_readable(error, tmp_path):
    """One sentence or two a user can read, then the log's path on its own line."""
    assert_names_log(error, tmp_path)
    text, log_line = error.message.rsplit("\n", 1)
    assert log_line.startswith("Log: ")
    assert text[:1].isupper() and len(text) < 1500, text
    assert all(c.isprintable() for c in text), repr(text)
    assert "Traceback" not in text


GOOD_ESTIMATE = dict(type="estimate", device="cpu", table={"draft": [[256, 0.0], [512, 3.5]]},
                     auto_size={"draft": 512}, auto_seconds=180)

BROKEN_RUNS = {
    # what the core writes (a Python expression), the words the user reads
    "shell banner": (repr(b"\x1b[31mWelcome\x00 to my shell\n"), "Welcome  to my shell"),
    "a JSON list": (repr(b"[1, 2]\n"), "instead of a protocol message"),
    "type not text": (repr(line(type=5)), "instead of a protocol message"),
    "not UTF-8": (repr(b'{"type": "progress\xff"}\n'), "instead of a protocol message"),
    "half a line": (repr(b'{"type": "progr'), "ended in the middle of a message"),
    "a line over 1 MiB": ("b'{\"type\": \"progress\", \"x\": \"' + b'a' * (1 << 20) + b'\"}\\n'",
                          "longer than"),
    "deeply nested": ("b'[' * 100000 + b']' * 100000 + b'\\n'", "instead of a protocol message"),
    "nested in a field": ("b'{\"type\": \"progress\", \"loss\": ' + b'[' * 100000"
                          " + b']' * 100000 + b'}\\n'", "instead of a protocol message"),
    "a 5000-digit int": ("b'{\"type\": \"progress\", \"scale\": ' + b'9' * 5000 + b'}\\n'",
                         "instead of a protocol message"),
    "fraction text": (repr(line(type="progress", fraction="half")), 'fraction is "half"'),
    "fraction junk": (repr(line(type="progress", fraction={"a": [1, {"b": None}]})),
                      "fraction is an object"),
    "phase a number": (repr(line(type="progress", phase=7)), "phase is 7"),
    "progress payload": (repr(line(type="progress", fraction=0.5, payload=10)),
                         "unexpected payload"),
    "negative payload": (repr(line(type="progress", payload=-1)), "unexpected payload"),
    "error text a list": (repr(line(type="error", kind="internal", message=["x"])),
                          'lacks a text "kind" or "message"'),
    "error kind a number": (repr(line(type="error", kind=5, message="m")),
                            'lacks a text "kind" or "message"'),
    "error without text": (repr(line(type="error", kind="internal")),
                           'lacks a text "kind" or "message"'),
    "channels as text": (repr(line(**dict(RESULT, channels="3"))), 'channels "3"'),
    "width as float": (repr(line(**dict(RESULT, width=40.0))), "not the image asked for"),
    "payload true": (repr(line(**dict(RESULT, payload=True))), "payload True"),
    "unknown format": (repr(line(**dict(RESULT, format="u9"))), 'format "u9"'),
    "other size": (repr(line(**dict(RESULT, width=41, payload=41 * H * 3))), "width 41"),
    "NaN size": (repr(line(**dict(RESULT, height=NAN))), "height nan"),
    "payload short": (repr(line(**RESULT) + b"x" * 100), "ended 3740 bytes before the end"),
    "payload long": (repr(line(**RESULT) + b"x" * (W * H * 3 + 5)), "more after its answer"),
    "answer twice": (repr(line(type="error", kind="internal", message="a") * 2),
                     "more after its answer"),
    "an estimate": (repr(line(**GOOD_ESTIMATE)), "estimate where a result was due"),
    "no answer": ("b''", "gave no answer: it exited with code 0"),
    "stdout closed": ("b''", "gave no answer: it exited with code 4"),
}
BROKEN_THEN = {"stdout closed": "os.close(1); time.sleep(0.3); sys.exit(4)"}


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("case", sorted(BROKEN_RUNS))
def test_a_broken_core_is_one_readable_error(tmp_path, case):
    output, words = BROKEN_RUNS[case]
    folder = replay_core(tmp_path, output, BROKEN_THEN.get(case, "sys.exit(0)"))
    progress = []
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(W, H), [style_file(tmp_path)], config_dir=folder,
                       on_progress=lambda f, t: progress.append(f))
    assert e.value.kind == "core_crashed", e.value.message
    assert words in e.value.message, e.value.message
    assert_readable(e.value, tmp_path)
    assert not progress  # nothing of a broken message reached the progress bar


BROKEN_ESTIMATES = {
    "NaN seconds": dict(GOOD_ESTIMATE, table={"draft": [[256, NAN]]}),
    "a row of text": dict(GOOD_ESTIMATE, table={"draft": ["256 px: 3 s"]}),
    "auto size text": dict(GOOD_ESTIMATE, auto_size={"draft": "512"}),
    "no table": {k: v for k, v in GOOD_ESTIMATE.items() if k != "table"},
    "device a list": dict(GOOD_ESTIMATE, device=["cpu"]),
    "a result": RESULT,
}


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("case", sorted(BROKEN_ESTIMATES))
def test_a_broken_estimate_is_one_readable_error(tmp_path, case):
    folder = replay_core(tmp_path, repr(line(**BROKEN_ESTIMATES[case])))
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.estimate({}, 800, 600, config_dir=folder)
    assert e.value.kind == "core_crashed" and "protocol" in e.value.message
    assert_readable(e.value, tmp_path)


def test_a_good_estimate_is_returned_and_usable(tmp_path):
    answer = nst_bridge.estimate({}, 800, 600,
                                 config_dir=replay_core(tmp_path, repr(line(**GOOD_ESTIMATE))))
    assert answer == dict({k: v for k, v in GOOD_ESTIMATE.items() if k != "type"}, busy=None)
    assert 0 < nst_wording.estimated_seconds(answer, "draft", 300) < 3.5  # a 0.0 s row: no crash


def test_a_core_that_never_estimates_times_out(tmp_path):
    folder = replay_core(tmp_path, "b''", "time.sleep(60)")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.estimate({}, 800, 600, config_dir=folder, timeout=1.0)
    assert e.value.kind == "core_crashed" and "no time estimate within 1 s" in e.value.message
    assert_readable(e.value, tmp_path)


def test_a_core_that_answers_but_never_exits_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(nst_bridge, "EXIT_WAIT_S", 0.5)
    folder = replay_core(tmp_path, repr(line(**RESULT) + b"x" * (W * H * 3)), "time.sleep(60)")
    t0 = time.monotonic()
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(W, H), [style_file(tmp_path)], config_dir=folder)
    assert time.monotonic() - t0 < 30
    assert "answered, but then did not exit" in e.value.message
    assert_readable(e.value, tmp_path)  # (the autouse fixture checks the core is gone)


def test_the_cores_error_text_is_shown_cleaned_and_bounded(tmp_path):
    text = "disk\x1b[2J full\x00 " + "x" * 10000
    folder = replay_core(tmp_path, repr(line(type="error", kind="quota", message=text)),
                         "sys.exit(2)")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(W, H), [style_file(tmp_path)], config_dir=folder)
    assert e.value.kind == "internal"  # a kind this bridge does not know
    assert e.value.message.startswith("Disk [2J full") and "\x1b" not in e.value.message
    assert_readable(e.value, tmp_path)


def test_absurd_progress_numbers_are_clamped_and_the_run_succeeds(tmp_path):
    """A core's measurements may be NaN or infinite (Python's json writes and reads them): the
    progress bar and text stay sane and the result still arrives."""
    absurd = [dict(fraction=NAN, eta_s=INF), dict(fraction=-5, eta_s=-3.0),
              dict(fraction=INF, scale=3, scales=NAN), dict(fraction=10 ** 300, eta_s=1e12),
              dict(fraction=0.25, scale=10 ** 300, scales=2, loss=NAN, elapsed_s=-INF),
              dict(fraction=NAN, phase="stylizing", eta_s=None, scale=None)]
    output = b"".join(line(type="progress", **p) for p in absurd)
    output += line(type="novelty", note="a newer core's message") + line(**RESULT)
    output += bytes(range(256)) * (W * H * 3 // 256)
    seen = []
    result = nst_bridge.run({}, content(W, H), [style_file(tmp_path)],
                            on_progress=lambda f, t: seen.append((f, t)),
                            config_dir=replay_core(tmp_path, repr(output)))
    assert (result["width"], result["height"], len(result["data"])) == (W, H, W * H * 3)
    # Finite numbers are clamped; NaN and Infinity keep the bar where it was.
    assert [f for f, _ in seen] == [0.0, 0.0, 0.0, 1.0, 0.25, 0.25]
    for _, text in seen:
        assert text.startswith("Neural style: ") and "left" not in text and "scale" not in text
        assert not any(word in text.lower() for word in ("nan", "inf", "-"))


def test_progress_text_never_fails():
    for junk in ({}, {"fraction": "x"}, {"scale": [1], "scales": {"a": 1}}, {"eta_s": NAN},
                 {"eta_s": 10 ** 400}, {"phase": None, "fraction": -INF}):
        assert nst_wording.progress_text(junk).startswith("Neural style: ")
    assert nst_wording.progress_text({"fraction": 2, "eta_s": 59.6}) == (
        "Neural style: 100%, about 1:00 left")


# -- style files: only regular files, at most 256 MiB, never a hang -------------------------------


def refused_style(tmp_path, path) -> nst_bridge.BridgeError:
    """The error from a run with `path` as style (in a thread: a hang fails the test instead of
    blocking it); no core is started."""
    folder = core_config(tmp_path, CORE)
    errors = []

    def go():
        try:
            nst_bridge.run({}, content(), [str(path)], config_dir=folder)
        except nst_bridge.BridgeError as e:
            errors.append(e)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"reading the style {path} hangs"
    assert len(errors) == 1 and errors[0].kind == "bad_image"
    assert str(path) in errors[0].message
    assert logs(tmp_path) == []  # refused before anything started
    return errors[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_a_fifo_as_style_does_not_hang(tmp_path):
    fifo = tmp_path / "style.png"
    os.mkfifo(fifo)
    assert "not an image file" in refused_style(tmp_path, fifo).message


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_as_style_is_refused(tmp_path):
    assert "not an image file" in refused_style(tmp_path, "/dev/zero").message


def test_a_folder_as_style_is_refused(tmp_path):
    error = refused_style(tmp_path, tmp_path)
    assert "not an image file" in error.message or "cannot be read" in error.message


def test_an_empty_style_is_refused(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert "is empty" in refused_style(tmp_path, empty).message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_an_unreadable_style_is_refused(tmp_path):
    locked = tmp_path / "locked.png"
    locked.write_bytes(style_png())
    locked.chmod(0)
    assert "cannot be read" in refused_style(tmp_path, locked).message


def test_an_oversized_style_is_refused_without_being_read(tmp_path):
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(300 << 20)  # sparse: no disk used
    io = psutil.Process().io_counters
    before = getattr(io(), "read_chars", None)
    error = refused_style(tmp_path, huge)
    assert "300 MiB" in error.message and "limit of 256 MiB" in error.message
    if before is not None:  # Linux counts every byte read
        assert io().read_chars - before < 16 << 20


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="no /proc")
def test_the_limit_holds_while_reading(tmp_path, monkeypatch):
    """/proc files say they are empty and are not: the limit is enforced on what is read."""
    monkeypatch.setattr(nst_protocol, "MAX_STYLE_BYTES", 100)
    assert "grew past the limit" in refused_style(tmp_path, "/proc/self/maps").message


# -- the log folder: private to the user, never someone else's -----------------------------------


def failed_run_log(tmp_path) -> Path:
    """The log of a run whose core cannot start (quick: no process)."""
    with pytest.raises(nst_bridge.BridgeError) as e:
        with pytest.MonkeyPatch.context() as m:
            m.setenv("NST_CORE_COMMAND", "no-such-nst-core-program worker")
            nst_bridge.run({}, content(), [style_file(tmp_path)])
    assert e.value.kind == "core_missing" and e.value.message.endswith(e.value.log_path)
    return Path(e.value.log_path)


def assert_private(log: Path):
    if os.name == "posix":
        assert log.stat().st_mode & 0o777 == 0o600
        assert log.parent.stat().st_mode & 0o777 == 0o700
        assert not log.parent.is_symlink()
        assert log.parent.stat().st_uid == log.parent.parent.stat().st_uid  # ours, as tmp_path


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_log_files_are_0600_in_a_0700_folder_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        log = failed_run_log(tmp_path)
    finally:
        os.umask(old)
    assert log.parent == log_folder() and log_folder().name == f"neural-style-gimp-{os.getuid()}"
    assert_private(log)
    assert failed_run_log(tmp_path).parent == log.parent  # the next run uses it again


def assert_fallback(log: Path):
    """The run logged to a fresh private folder, and its log says why."""
    assert log.parent != log_folder() and log.parent.name.startswith("neural-style-gimp-")
    assert_private(log)
    assert "not a private folder of this user" in log.read_text()


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_a_planted_link_is_not_followed(tmp_path):
    trap = tmp_path / "attacker"
    trap.mkdir(mode=0o700)
    log_folder().symlink_to(trap, target_is_directory=True)
    assert_fallback(failed_run_log(tmp_path))
    assert list(trap.iterdir()) == [] and log_folder().is_symlink()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_folder_open_to_others_is_not_used_or_changed(tmp_path):
    log_folder().mkdir()
    log_folder().chmod(0o777)
    assert_fallback(failed_run_log(tmp_path))
    assert log_folder().stat().st_mode & 0o777 == 0o777 and list(log_folder().iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX owners")
def test_another_users_folder_is_not_used(tmp_path, monkeypatch):
    if os.geteuid() != 0:  # we cannot give a folder away: be another user instead
        real = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: real + 1)
    log_folder().mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(log_folder(), 65534, 65534)
    assert_fallback(failed_run_log(tmp_path))
    assert list(log_folder().iterdir()) == []


def test_a_file_where_the_folder_goes_is_left_alone(tmp_path):
    log_folder().write_text("not a folder")
    log = failed_run_log(tmp_path)
    assert log.parent != log_folder() and log.exists()
    assert log_folder().read_text() == "not a folder"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_pruning_deletes_only_our_own_old_regular_logs(tmp_path):
    folder = log_folder()
    folder.mkdir(mode=0o700)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    old = time.time() - 30 * 86400
    (folder / "core-old.log").write_text("old")
    (folder / "core-new.log").write_text("new")
    (folder / "core-link.log").symlink_to(precious)
    (folder / "core-dir.log").mkdir()
    (folder / "notes.txt").write_text("mine")
    for name in ("core-old.log", "core-dir.log", "notes.txt"):
        os.utime(folder / name, (old, old))
    os.utime(folder / "core-link.log", (old, old), follow_symlinks=False)
    log = failed_run_log(tmp_path)
    assert log.parent == folder
    left = {p.name for p in folder.iterdir()} - {log.name}
    assert left == {"core-new.log", "core-link.log", "core-dir.log", "notes.txt"}
    assert precious.read_text() == "keep me"


# -- bad values from a plug-in or a script --------------------------------------------------------


@pytest.mark.parametrize("options, words", [
    ({"strength": "strong"}, 'strength="strong" is not a number'),
    ({"seed": [1]}, "seed=a list is not a number"),
    ({"size": float("inf")}, "size=inf is not a number"),
])
def test_bad_option_values_are_one_error(options, words):
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_protocol.core_options(options)
    assert e.value.kind == "bad_option" and words in e.value.message


def test_options_json_cannot_carry_are_one_error(tmp_path):
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({"iterations": {1, 2}}, content(), [style_file(tmp_path)],
                       config_dir=core_config(tmp_path, CORE))
    assert e.value.kind == "bad_option" and "cannot be sent" in e.value.message
    assert logs(tmp_path) == []
    with pytest.raises(nst_bridge.BridgeError, match="Cannot estimate a 800x\"tall\" layer"):
        nst_bridge.estimate({}, 800, "tall", config_dir=core_config(tmp_path, CORE))


@pytest.mark.parametrize("image", [
    dict(content(), data=None), dict(content(), format=["u8"]), dict(content(), width="wide"),
    dict(content(), width=10 ** 6),
])
def test_bad_pixel_data_is_one_error(tmp_path, image):
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, image, [style_file(tmp_path)], config_dir=core_config(tmp_path, CORE))
    assert e.value.kind == "bad_request" and "layer's pixel data" in e.value.message
    assert logs(tmp_path) == []


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
    assert set(answer["table"]) == set(nst_options.choice_values("preset"))
    t_small = nst_wording.estimated_seconds(answer, "standard", 300)
    t_layer = nst_wording.estimated_seconds(answer, "standard", 800)
    assert 0 < t_small < t_layer
    assert nst_wording.estimated_seconds(answer, "standard", 100000) is None  # past the table


def test_estimate_interpolation_and_durations():
    answer = {"table": {"standard": [[256, 10.0], [512, 40.0], [1024, 160.0]]}}
    assert nst_wording.estimated_seconds(answer, "standard", 512) == 40.0
    assert abs(nst_wording.estimated_seconds(answer, "standard", 724) - 80.0) < 1.0  # log-log
    assert nst_wording.estimated_seconds(answer, "draft", 512) is None
    assert nst_wording.format_duration(42) == "about 40 s"
    assert nst_wording.format_duration(250) == "about 4 min"
    assert nst_wording.format_duration(4800) == "about 1 h 20 min"


# A 6000x4000 layer on a slow machine: 20 min at its own size, time growing with the pixels.
SLOW = {"device": "cpu (AMD EPYC, 2 threads), bfloat16", "auto_seconds": 600.0,
        "auto_size": {"standard": 4240}, "busy": None,
        "table": {"standard": [[s, round(1200.0 * (s / 6000.0) ** 2, 1)]
                               for s in (256, 512, 1024, 2048, 2896, 4096, 5792, 6000)]}}


def test_automatic_paints_the_layer_itself_unless_that_takes_longer_than_the_limit():
    """10 minutes by default: a 6000x4000 layer that takes 20 min here is painted at about
    4240 px (well above 3000) and the line says by how much it is enlarged; with a limit of
    half an hour it is painted at its own size, and says nothing of enlarging."""
    text = nst_wording.estimate_text(SLOW, {"size_mode": "auto"}, 6000, 4000)
    assert text.startswith("Layer 6000x4000 px, painted at 4240 px (the largest size that "
                           "takes at most 10 min here), enlarged 1.4x: softer at 100 %; about "
                           "10 min on cpu"), text
    assert nst_options.BY_NAME["auto_minutes"].default == 10
    own = nst_wording.estimate_text(SLOW, {"size_mode": "auto", "auto_minutes": 30}, 6000, 4000)
    assert "painted at 6000 px (the layer's own size): about 20 min on cpu" in own
    assert "enlarged" not in own


def test_a_changed_limit_is_answered_from_the_table_as_the_core_would():
    """The dialog asks the core once; a limit changed after that is read from its table."""
    for minutes, low, high in ((10, 4096, 4300), (5, 2896, 3100), (2.5, 2048, 2200)):
        size = nst_wording.auto_size(SLOW, "standard", 6000, minutes * 60.0)
        assert low <= size <= high and size % 16 == 0, (minutes, size)
        seconds = nst_wording.estimated_seconds(SLOW, "standard", size)
        assert seconds <= minutes * 60 < nst_wording.estimated_seconds(SLOW, "standard", size + 16)
    text = nst_wording.estimate_text(SLOW, {"size_mode": "auto", "auto_minutes": 5}, 6000, 4000)
    assert "takes at most 5 min here), enlarged 2.0x: softer at 100 %" in text


def test_every_size_smaller_than_the_layer_says_it_is_enlarged_and_a_busy_machine_is_named():
    custom = nst_wording.estimate_text(SLOW, {"size_mode": "custom", "size": 1024}, 6000, 4000)
    assert "painted at 1024 px (custom), enlarged 5.9x: softer at 100 %" in custom
    assert "enlarged" not in nst_wording.estimate_text(SLOW, {"size_mode": "layer"}, 6000, 4000)
    busy = dict(SLOW, busy="the computer is busy (load 150% of its 2 cores)")
    text = nst_wording.estimate_text(busy, {"size_mode": "layer"}, 6000, 4000)
    assert text.endswith("It may take longer: the computer is busy (load 150% of its 2 cores).")
    assert nst_wording.estimate_text("no core", {}, 60, 40) == (
        "Layer 60x40 px. No time estimate: no core")


def test_the_time_limit_is_sent_in_seconds_and_checked(tmp_path, monkeypatch):
    sent = []

    def exchange(command, parts, *args, **kwargs):
        sent.append(json.loads(parts[0]))
        return dict(SLOW, type="estimate") if sent[-1]["type"] == "estimate" else None

    monkeypatch.setattr(nst_bridge, "_exchange", exchange)
    folder = core_config(tmp_path, CORE)
    nst_bridge.estimate({"auto_minutes": 30}, 6000, 4000, config_dir=folder)
    nst_bridge.run({"size_mode": "auto", "auto_minutes": 2.5}, content(), [style_file(tmp_path)],
                   config_dir=folder)
    nst_bridge.run({"size_mode": "layer"}, content(), [style_file(tmp_path)], config_dir=folder)
    assert [m.get("auto_seconds") for m in sent] == [1800.0, 150.0, None]
    assert all("auto_minutes" not in m["options"] for m in sent)  # not a core option
    with pytest.raises(nst_bridge.BridgeError, match="time limit for Automatic must be 0.5 to"):
        nst_bridge.run({"size_mode": "auto", "auto_minutes": 0}, content(),
                       [style_file(tmp_path)], config_dir=folder)


def test_a_core_that_cannot_estimate_is_one_bridge_error(tmp_path):
    script = ("import sys, json; sys.stdin.readline(); "
              "print(json.dumps({'type': 'error', 'kind': 'weights', 'message': 'no weights'}))")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.estimate({}, 800, 600, config_dir=fake_core(tmp_path, script))
    assert e.value.kind == "weights" and "No weights" in e.value.message


# -- several styles, pixels as a style, the dialog's words ---------------------------------------

# A core that writes the request it got (header, and the payload's parts as hex digests) to the
# file named in its argv, then answers with an error: what the bridge sent, byte for byte.
RECORDER = r"""
import hashlib, json, sys
line = sys.stdin.buffer.readline()
header = json.loads(line)
data = sys.stdin.buffer.read(header["payload"])
json.dump({"header": header, "payload": data.hex()}, open(sys.argv[1], "w"))
sys.stdout.write(json.dumps({"type": "error", "kind": "bad_image", "message": "recorded"}) + "\n")
"""


def recorded_request(tmp_path, options, styles, c=None):
    record = tmp_path / "request.json"
    folder = core_config(tmp_path, [sys.executable, "-c", RECORDER, str(record)])
    with pytest.raises(nst_bridge.BridgeError, match="Recorded"):
        nst_bridge.run(options, c or content(), styles, config_dir=folder)
    got = json.loads(record.read_text())
    return got["header"], bytes.fromhex(got["payload"])


def test_a_layer_is_sent_as_pixels_after_the_files_with_the_weights(tmp_path):
    """Style files and a style layer's pixels in the agreed wire format: each style's entry in
    order, its bytes in the same order after the content's, and one blend weight per style."""
    path = style_file(tmp_path)
    c = content(8, 6, 4, "u8")
    layer = dict(width=5, height=3, channels=2, format="u16", data=bytes(range(60)),
                 name="Brush strokes")
    header, payload = recorded_request(tmp_path, {"style_weights": "2, 1"}, [path, layer], c)
    file_bytes = Path(path).read_bytes()
    assert header["styles"] == [
        {"name": "starry.png", "size": len(file_bytes)},
        {"name": "Brush strokes", "width": 5, "height": 3, "channels": 2, "format": "u16"}]
    assert header["options"]["style_blend"] == [2.0, 1.0]
    assert "style_weights" not in header["options"]
    assert payload == c["data"] + file_bytes + layer["data"]
    assert header["payload"] == len(payload)


def test_without_weights_the_styles_count_the_same(tmp_path):
    header, _ = recorded_request(tmp_path, {"style_weights": "  "}, [style_file(tmp_path)])
    assert "style_blend" not in header["options"]


def test_style_pixels_of_the_wrong_length_are_one_error(tmp_path):
    layer = dict(width=5, height=3, channels=4, format="u8", data=b"\0" * 59)
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({}, content(), [layer], config_dir=core_config(tmp_path, CORE))
    assert e.value.kind == "bad_request" and "style layer's pixel data" in e.value.message
    assert "holds 59 bytes" in e.value.message
    assert logs(tmp_path) == []  # nothing was started


@pytest.mark.parametrize("weights, count, words", [
    ("2, 1, 1", 2, "3 weight(s) for 2 style(s)"),
    ([1.0], 2, "1 weight(s) for 2 style(s)"),
    ("0, 0", 2, "all zero"),
    ("2, strong", 2, "not all numbers"),
    ("1, -1", 2, "not all numbers of 0 or more"),
    ("nan, 1", 2, "not all numbers"),
])
def test_bad_style_weights_are_one_error_before_anything_starts(tmp_path, weights, count, words):
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_protocol.style_blend(weights, count)
    assert e.value.kind == "bad_option" and words in e.value.message
    styles = [style_file(tmp_path)] * count
    with pytest.raises(nst_bridge.BridgeError, match="style weights"):
        nst_bridge.run({"style_weights": weights}, content(), styles,
                       config_dir=core_config(tmp_path, CORE))
    assert logs(tmp_path) == []


def test_style_weights_are_read_with_commas_or_spaces():
    assert nst_protocol.style_blend("2, 1", 2) == [2.0, 1.0]
    assert nst_protocol.style_blend("0.5 1;3", 3) == [0.5, 1.0, 3.0]
    assert nst_protocol.style_blend([0, 1], 2) == [0.0, 1.0]
    assert nst_protocol.style_blend("", 3) is None and nst_protocol.style_blend(None, 1) is None


def test_device_advice_is_in_the_dialogs_words(tmp_path):
    """The core tells a CLI user "Use --device cpu"; a GIMP user has a Device field."""
    message = ("device 'cuda' asked for, but this torch 2.13.0 is a CPU-only build. Use "
               "--device cpu or auto, or install a CUDA build.")
    script = ("import json, sys\nsys.stdin.readline()\n"
              "sys.stdout.write(json.dumps({'type': 'error', 'kind': 'device', "
              f"'message': {message!r}}}) + '\\n')\n")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.run({"device": "cuda"}, content(), [style_file(tmp_path)],
                       config_dir=fake_core(tmp_path, script))
    assert e.value.kind == "device"
    assert "--device" not in e.value.message
    assert "Choose Device: CPU or Automatic in the dialog" in e.value.message
    assert "free some memory or raise the Memory limit in the dialog" == nst_wording.plugin_wording(
        "free some memory or raise --max-memory")


def test_core_messages_use_the_dialogs_labels_and_the_full_nst_command():
    """What the core says about an option names the field the user sees, and the command it
    advises is one the user can paste: the installed core's own, not a bare `nst`."""
    wording = nst_wording.plugin_wording
    assert wording("max_memory of 0.5 GB is too small for anything", field="max_memory") == \
        '"Memory limit (GB)" of 0.5 GB is too small for anything'
    assert wording("size must be at least 16; choose a smaller size", field="size") == \
        '"Custom size (px)" must be at least 16; choose a smaller size'  # the option, once
    assert wording("preserve_colors must be true or false", field="colors") == \
        "preserve_colors must be true or false"  # a name that only contains the option's
    assert wording("size must be at least 16") == "size must be at least 16"  # no field named
    venv = ["/home/ann/My Tools/venv/bin/python", "-m", "nst_core.worker"]
    assert wording("Run `nst weights fetch --model vgg16`.", venv) == \
        'Run `"/home/ann/My Tools/venv/bin/python" -m nst_core weights fetch --model vgg16`.'
    remote = ["ssh", "gpu-box", "/opt/nst/bin/nst", "worker"]
    assert wording("Run `nst weights fetch`.", remote) == \
        "Run `ssh gpu-box /opt/nst/bin/nst weights fetch`."


@pytest.mark.parametrize("options, words", [
    ({"size_mode": "custom", "size": 8}, '"Custom size (px)" must be 0 (the layer\'s own size) '
                                         'or at least 16, not 8'),
    ({"max_memory": 0.5}, '"Memory limit (GB)" must be 0 (automatic) or at least 0.75, not 0.5'),
])
def test_values_the_core_never_takes_are_refused_before_it_starts(options, words):
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_protocol.core_options(options)
    assert e.value.kind == "bad_option" and words in e.value.message


# -- requests a script can get wrong, and the live preview -----------------------------------------


@pytest.mark.parametrize("call, words", [
    (lambda d, s: nst_bridge.run({}, content(), [s], result_format=["u8"], config_dir=d),
     "result format"),
    (lambda d, s: nst_bridge.run([("preset", "draft")], content(), [s], config_dir=d),
     "options must be a dict"),
    (lambda d, s: nst_bridge.run({}, dict(content(), data="not bytes"), [s], config_dir=d),
     "layer's pixel data"),
    (lambda d, s: nst_bridge.preview({}, dict(content(), data=12), [s], lambda *a: None,
                                     config_dir=d), "thumbnail"),
])
def test_a_request_a_script_gets_wrong_is_one_error_before_the_core_starts(tmp_path, call,
                                                                          words):
    """Wrong types from a script: one BridgeError naming the value, never a raw exception or
    a core left waiting for the rest of a request."""
    config = fake_core(tmp_path, "import sys, time; time.sleep(60)")  # must never be started
    with pytest.raises(nst_bridge.BridgeError) as e:
        call(config, style_file(tmp_path))
    assert words in e.value.message
    assert not logs(tmp_path)  # no core was started


def test_a_preview_with_a_fake_core_streams_pictures_then_the_finished_one(tmp_path):
    script = textwrap.dedent("""
        import json, sys
        header = json.loads(sys.stdin.buffer.readline())
        sys.stdin.buffer.read(header["payload"])
        out = sys.stdout.buffer
        for step, shade in ((1, 10), (2, 20)):
            out.write(json.dumps({"type": "image", "width": 4, "height": 2, "channels": 3,
                                  "format": "u8", "step": step, "steps": 3,
                                  "payload": 24}).encode() + b"\\n" + bytes([shade]) * 24)
        out.write(json.dumps({"type": "result", "width": 4, "height": 2, "channels": 3,
                              "format": "u8", "payload": 24}).encode() + b"\\n" + b"\\x1e" * 24)
        out.flush()
        sys.stderr.write(json.dumps(header["preview"]) + "\\n")
    """)
    seen = []
    result = nst_bridge.preview({"preset": "high"}, content(), [style_file(tmp_path)],
                                lambda w, h, data: seen.append((w, h, data[0])), size=64,
                                config_dir=fake_core(tmp_path, script))
    assert seen == [(4, 2, 10), (4, 2, 20), (4, 2, 30)]
    assert result["data"] == b"\x1e" * 24
    assert '{"size": 64}' in logs(tmp_path)[0].read_text()


@pytest.mark.parametrize("image", [
    {"type": "image", "width": 4, "height": 2, "channels": 4, "format": "u8", "payload": 32},
    {"type": "result", "width": 999, "height": 2, "channels": 3, "format": "u8", "payload": 5994},
    {"type": "image", "width": 4, "height": 2, "channels": 3, "format": "u16", "payload": 48},
])
def test_a_preview_picture_that_is_not_rgb_u8_of_the_size_is_one_error(tmp_path, image):
    script = ("import json, sys; h = json.loads(sys.stdin.buffer.readline()); "
              "sys.stdin.buffer.read(h['payload']); "
              f"sys.stdout.buffer.write(json.dumps({image!r}).encode() + b'\\n' "
              f"+ bytes({image['payload']})); sys.stdout.flush()")
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.preview({}, content(), [style_file(tmp_path)], lambda *a: None, size=64,
                           config_dir=fake_core(tmp_path, script))
    assert "preview picture" in e.value.message


@pytest.mark.slow
def test_a_preview_from_the_real_core_and_a_cancel_of_the_next(tmp_path):
    config = core_config(tmp_path, CORE)
    seen = []
    # min_size 32: three scales (32, 45 and 64 px) as a 256 px preview has (128, 181, 256).
    result = nst_bridge.preview({"preset": "standard", "seed": 3, "min_size": 32},
                                content(96, 64), [style_file(tmp_path)],
                                lambda w, h, d: seen.append((w, h)), size=64, config_dir=config)
    assert (result["width"], result["height"]) == (64, 43)
    assert len(result["data"]) == 64 * 43 * 3
    assert len(seen) >= 2 and seen[-1] == (64, 43)
    # A newer preview (or the dialog closing) cancels a running one: one "cancelled" error.
    started = []
    with pytest.raises(nst_bridge.BridgeError) as e:
        nst_bridge.preview({}, content(96, 64), [style_file(tmp_path)],
                           lambda *a: started.append(1), size=256, config_dir=config,
                           should_cancel=lambda: bool(started))
    assert e.value.kind == "cancelled"


def test_the_bridges_copy_of_the_wire_format_is_the_cores():
    """GIMP's Python cannot import nst_core, so the bridge repeats the protocol's constants;
    they must stay equal to the one definition in nst_core/protocol.py."""
    from nst_core import errors, protocol

    assert nst_protocol.PROTOCOL == protocol.VERSION
    assert nst_protocol.SAMPLE_BYTES == protocol.SAMPLE_BYTES
    assert nst_protocol.PROGRESS_FIELDS == protocol.PROGRESS_FIELDS
    assert (nst_protocol.MAX_HEADER, nst_protocol.MAX_STYLE_BYTES, nst_protocol.MAX_SIDE) == (
        protocol.MAX_HEADER, protocol.MAX_STYLE_BYTES, protocol.MAX_SIDE)
    assert protocol.PREVIEW_SIZES[0] <= nst_bridge.PREVIEW_SIZE <= protocol.PREVIEW_SIZES[-1]
    kinds = {c.kind for c in vars(errors).values()
             if isinstance(c, type) and issubclass(c, errors.NSTError)}
    assert set(nst_protocol.CORE_KINDS) == kinds
