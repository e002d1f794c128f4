"""Faults from outside: the CLI killed while it loads, stylizes or writes; the disk full while
an image or the weights are written; the weights file changed while runs start. Whatever
happens, the user's files are whole (old or new, never half-written) and the next run works."""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_core import weights
from nst_core.errors import WeightsError
from tests.conftest import picture
from tests.test_weights import vgg_like_tensors, write_keras_like_h5, write_store

ROOT = Path(__file__).resolve().parent.parent

# `nst` with hooks: PAUSE_IN=loading|stylizing|writing:NAME makes it stop there (after touching
# MARKER) until killed; FAKE_ENGINE=1 replaces the optimisation by a random picture, so that
# loading and writing are tested without the VGG19 weights.
WRAPPER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from nst_core import cli, engine, images

    def pause(where):
        if os.environ.get("PAUSE_IN") == where:
            open(os.environ["MARKER"], "w").close()
            time.sleep(600)

    real_load, real_replace = images.load_image, os.replace

    def load_image(*args, **kwargs):
        pause("loading")
        return real_load(*args, **kwargs)

    def replace(source, target):  # the new file is complete beside the output, not yet renamed
        pause("writing:" + os.path.basename(target))
        real_replace(source, target)

    def stylize(content, styles, options, on_image=None, image_every=0, **kwargs):
        pause("stylizing")
        result = np.random.default_rng(0).random((24, 32, 3), dtype=np.float32)
        if on_image and image_every:
            on_image(result, image_every)
        return result

    images.load_image, os.replace = load_image, replace
    if os.environ.get("FAKE_ENGINE"):
        engine.stylize = stylize
    sys.exit(cli.main(sys.argv[1:]))
""")


@pytest.fixture
def wrapped(tmp_path):
    script = tmp_path / "wrapped_nst.py"
    script.write_text(WRAPPER)
    env = dict(os.environ, PYTHONPATH=str(ROOT), MARKER=str(tmp_path / "marker"))

    def command(*args):
        return [sys.executable, str(script), *map(str, args)]
    return command, env


def visible(folder: Path) -> dict:
    """The files a user sees (not hidden temporary files), with their contents."""
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".")}


def kill_when_paused(cmd, env, marker: Path) -> None:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no handler, no clean-up runs
    proc.wait(timeout=30)


@pytest.mark.parametrize("where, old_output", [
    ("loading", True), ("stylizing", True), ("writing:out-step2.png", True),
    ("writing:out.png", True), ("writing:out.png", False)])
def test_killed_at_any_point_leaves_the_old_output_whole_and_the_next_run_works(
        tmp_path, image_files, wrapped, where, old_output):
    command, env = wrapped
    out = tmp_path / "out.png"
    if old_output:
        picture(seed=3).save(out)
    before = visible(tmp_path)
    cmd = command("stylize", *image_files, "-o", out, "--save-every", "2", "-q")
    kill_when_paused(cmd, dict(env, FAKE_ENGINE="1", PAUSE_IN=where), tmp_path / "marker")
    after = visible(tmp_path)
    after.pop("marker")
    if where == "writing:out.png":  # the step image before it was written whole
        assert Image.open(io.BytesIO(after.pop("out-step2.png"))).size == (32, 24)
    assert after == before  # the old output (or none) as it was; nothing half-written
    done = subprocess.run(cmd, env=dict(env, FAKE_ENGINE="1"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (32, 24) and Image.open(tmp_path / "out-step2.png")


@pytest.mark.slow
def test_killed_while_really_stylizing_leaves_nothing_and_the_next_run_works(
        tmp_path, image_files, real_weights):
    out = tmp_path / "out.png"
    cmd = [sys.executable, "-m", "nst_core", "-v", "stylize", *map(str, image_files), "-o",
           str(out), "--size", "32", "--iterations", "10000"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    seen, deadline = "", time.monotonic() + 120
    while "scale 1/1" not in seen:  # the engine's log line: the optimisation starts
        seen += proc.stderr.read(1)
        assert proc.poll() is None and time.monotonic() < deadline, seen
    time.sleep(0.5)
    proc.kill()
    proc.wait(timeout=30)
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    done = subprocess.run(cmd[:-1] + ["2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (32, 24)


# -- the disk full -----------------------------------------------------------------------------


def limit_file_size(limit: int):
    """For a child process: files may not grow past `limit` bytes (RLIMIT_FSIZE); a write past it
    fails with EFBIG, as on a full disk, instead of killing the process (SIGXFSZ ignored)."""
    def set_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return set_limit


def test_an_output_too_big_to_write_is_one_error_and_the_old_file_stays(tmp_path, image_files,
                                                                       wrapped):
    command, env = wrapped
    out = tmp_path / "out.png"
    Image.new("RGB", (16, 16)).save(out)  # a small old file
    before = visible(tmp_path)
    cmd = command("stylize", *image_files, "-o", out, "-q")
    done = subprocess.run(cmd, env=dict(env, FAKE_ENGINE="1"), capture_output=True, text=True,
                          timeout=120, preexec_fn=limit_file_size(1024))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"nst: error: could not write {out}: the file would be larger than this process may "
        "write (file size limit)"]
    assert visible(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no temporary left
    done = subprocess.run(cmd, env=dict(env, FAKE_ENGINE="1"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and Image.open(out).size == (32, 24)


CONVERT = textwrap.dedent("""
    import sys
    from nst_core import weights
    from nst_core.errors import WeightsError
    try:
        weights.convert(sys.argv[1], sys.argv[2], expected_sha256=sys.argv[3])
    except WeightsError as e:
        print(e.message, file=sys.stderr)
        sys.exit(4)
""")


def test_weights_too_big_to_store_leave_the_old_store_and_no_temporary(tmp_path):
    import hashlib

    h5 = write_keras_like_h5(tmp_path / "w.h5")
    sha = hashlib.sha256(h5.read_bytes()).hexdigest()
    store = tmp_path / "store" / "w.safetensors"
    store.parent.mkdir()
    store.write_bytes(b"the old store")
    cmd = [sys.executable, "-c", CONVERT, str(h5), str(store), sha]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120,
                          preexec_fn=limit_file_size(1024))
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr
    assert "could not store the weights" in done.stderr and "File too large" in done.stderr
    assert "the weights stored before are untouched" in done.stderr
    assert [p.name for p in store.parent.iterdir()] == ["w.safetensors"]
    assert store.read_bytes() == b"the old store"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert store.stat().st_size > 1024


# A real full disk: a 256 KB tmpfs in a private mount namespace (root only), filled up.
FULL_DISK = textwrap.dedent("""
    import json, os, subprocess, sys
    disk, h5, sha, wrapper, content, style = sys.argv[1:]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", disk], check=True)
    out, store = os.path.join(disk, "out.png"), os.path.join(disk, "w.safetensors")
    open(out, "wb").write(b"old picture")
    open(store, "wb").write(b"old weights")
    with open(os.path.join(disk, "filler"), "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
    env = dict(os.environ, FAKE_ENGINE="1")
    run = lambda cmd: subprocess.run(cmd, capture_output=True, text=True, env=env)
    image = run([sys.executable, wrapper, "stylize", content, style, "-o", out, "-q"])
    convert = run([sys.executable, "-c", CONVERT, h5, store, sha])
    full = {"image": [image.returncode, image.stderr], "weights": [convert.returncode,
            convert.stderr], "files": sorted(os.listdir(disk)),
            "old": [open(out, "rb").read().decode(), open(store, "rb").read().decode()]}
    os.remove(os.path.join(disk, "filler"))
    again = [run([sys.executable, wrapper, "stylize", content, style, "-o", out, "-q"]).returncode,
             run([sys.executable, "-c", CONVERT, h5, store, sha]).returncode]
    print(json.dumps({"full": full, "again": again}))
""")


def test_a_full_disk_is_one_error_and_the_old_files_stay(tmp_path, image_files, wrapped):
    import hashlib

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to mount a small file system")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    command, env = wrapped
    disk = tmp_path / "disk"
    disk.mkdir()
    h5 = write_keras_like_h5(tmp_path / "w.h5")
    sha = hashlib.sha256(h5.read_bytes()).hexdigest()
    script = "CONVERT = " + repr(CONVERT) + "\n" + FULL_DISK
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c",
                           script, str(disk), str(h5), sha, command()[1], *map(str, image_files)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    code, message = result["full"]["image"]
    assert code == 3 and message.strip().splitlines() == [
        f"nst: error: could not write {disk / 'out.png'}: the disk is full; free some space and "
        "try again"]
    code, message = result["full"]["weights"]
    assert code == 4 and "No space left on device" in message
    assert "the weights stored before are untouched" in message
    assert result["full"]["files"] == ["filler", "out.png", "w.safetensors"]  # no temporary
    assert result["full"]["old"] == ["old picture", "old weights"]
    assert result["again"] == [0, 0]


# -- the weights changed while runs start ---------------------------------------------------------


def test_weights_rewritten_during_loads_give_good_tensors_or_one_weights_error(tmp_path):
    """In place and by rename, whole and truncated: every load either returns exactly the
    stored tensors or raises WeightsError (no crash, no half-read weights accepted)."""
    good = write_store(tmp_path / "good.safetensors", vgg_like_tensors())
    data = good.read_bytes()
    digest = weights.tensor_digest(vgg_like_tensors())
    path = tmp_path / "w.safetensors"
    shutil.copy(good, path)
    stop = threading.Event()

    def meddle():
        rng = np.random.default_rng(1)
        while not stop.is_set():
            cut = int(rng.integers(0, len(data)))
            with open(path, "r+b") as f:  # in place: truncated, then written back
                f.truncate(cut)
                f.seek(cut)
                f.write(data[cut:])
            flipped = tmp_path / "flipped"
            broken = bytearray(data)
            broken[cut] ^= 0xFF
            flipped.write_bytes(bytes(broken))
            os.replace(flipped, path)  # by rename: a damaged file, then the good one again
            shutil.copy(good, tmp_path / "back")
            os.replace(tmp_path / "back", path)
            time.sleep(0.05)  # leave the loads some of the machine

    thread = threading.Thread(target=meddle)
    thread.start()
    outcomes = set()
    try:
        for _ in range(6):
            try:
                tensors = weights.load(path)
            except WeightsError as e:
                assert "fetch --force" in e.message
                outcomes.add("error")
            else:
                assert weights.tensor_digest({k: v.numpy() for k, v in tensors.items()}) == digest
                outcomes.add("ok")
    finally:
        stop.set()
        thread.join()
    assert weights.tensor_digest({k: v.numpy() for k, v in weights.load(path).items()}) == digest
    assert outcomes, outcomes  # (which of the two happened depends on timing; both are right)


@pytest.mark.slow
def test_runs_while_the_stored_weights_change_succeed_or_say_how_to_repair(tmp_path, image_files,
                                                                           real_weights):
    home = tmp_path / "home"
    home.mkdir()
    store = home / weights.SOURCES["vgg19"].store_name
    shutil.copy(real_weights, store)
    good = real_weights.read_bytes()
    stop = threading.Event()

    def meddle():
        while not stop.is_set():
            time.sleep(0.3)
            store.write_bytes(good[: len(good) // 3])  # truncated in place
            time.sleep(0.3)
            damaged = home / "damaged"
            damaged.write_bytes(good[:-50] + bytes(50))
            os.replace(damaged, store)  # replaced by a damaged file
            time.sleep(0.3)
            shutil.copy(real_weights, home / "back")
            os.replace(home / "back", store)  # restored

    env = dict(os.environ, NST_HOME=str(home))
    cmd = [sys.executable, "-m", "nst_core", "stylize", *map(str, image_files), "--size", "32",
           "--iterations", "1", "-q", "-o"]
    thread = threading.Thread(target=meddle)
    thread.start()
    try:
        for i in range(4):
            out = tmp_path / f"out{i}.png"
            done = subprocess.run(cmd + [str(out)], env=env, capture_output=True, text=True,
                                  timeout=300)
            assert "Traceback" not in done.stderr
            if done.returncode == 0:
                assert Image.open(out).size == (32, 24)
            else:
                assert done.returncode == 4, done.stderr
                assert "nst weights fetch --force" in done.stderr and not out.exists()
    finally:
        stop.set()
        thread.join()
    shutil.copy(real_weights, store)  # what `nst weights fetch --force` does, offline
    done = subprocess.run(cmd + [str(tmp_path / "final.png")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
