"""The `nst` command line: every bad input gets one clear message, a non-zero exit code and no
output file; good inputs of every kind give an image."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from nst_core.options import option_fields
from tests.conftest import picture

FAST = ["--size", "32", "--iterations", "2"]


def nst(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "nst_core", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def assert_fails(done, code, *words, output=None):
    assert done.returncode == code, done.stderr
    assert "nst: error:" in done.stderr or "error:" in done.stderr
    assert "Traceback" not in done.stderr
    for w in words:
        assert w in done.stderr
    if output is not None:
        assert not output.exists()
        assert not any(p.name.endswith(".tmp") for p in output.parent.iterdir())


def test_help_explains_every_option_and_its_default():
    out = nst("stylize", "--help").stdout
    for name, _, _ in option_fields():
        assert "--" + name.replace("_", "-") in out
    assert out.count("(default:") >= len(list(option_fields()))
    assert "--save-every" in out


@pytest.mark.parametrize("bad, code, words", [
    (["--style-weight", "-1"], 2, ["style_weight must be at least 0"]),
    (["--content-weight", "lots"], 2, ["invalid float value: 'lots'"]),
    (["--iterations", "0"], 2, ["iterations must be at least 1"]),
    (["--device", "tpu"], 2, ["unknown device 'tpu'"]),
    (["--preset", "ultra"], 2, ["invalid choice: 'ultra'"]),
    (["--size", "huge"], 2, ["not a number of pixels or \"keep\""]),
    (["--max-memory", "-1"], 2, ["max_memory must be greater than 0"]),
    (["--max-memory", "0"], 2, ["max_memory must be greater than 0"]),
    (["--max-memory", "plenty"], 2, ["invalid float value: 'plenty'"]),
    (["--max-memory", "0.1"], 2, ["max_memory of 0.1 GB is too small for anything"]),
    (["--style-scale", "0"], 2, ["style_scale must be greater than 0"]),
    (["--block-size", "100"], 2, ["block_size must be a multiple of 16"]),
])
def test_bad_option_values_are_refused(tmp_path, image_files, bad, code, words):
    out = tmp_path / "out.png"
    assert_fails(nst("stylize", *image_files, "-o", out, *bad), code, *words, output=out)


def test_missing_corrupt_and_tiny_images_are_named(tmp_path, image_files):
    content, style = image_files
    out = tmp_path / "out.png"
    assert_fails(nst("stylize", tmp_path / "gone.jpg", style, "-o", out), 3,
                 "content image", "gone.jpg does not exist", output=out)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    assert_fails(nst("stylize", content, broken, "-o", out), 3, "style image", "broken.jpg",
                 output=out)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    assert_fails(nst("stylize", tiny, style, "-o", out), 3, "1x1 pixels", output=out)
    assert_fails(nst("stylize", content, style, "-o", tmp_path / "out.xyz"), 3,
                 "unknown image type")


def test_missing_weights_say_how_to_get_them(tmp_path, image_files):
    env = dict(os.environ, NST_HOME=str(tmp_path / "empty"))
    out = tmp_path / "out.png"
    assert_fails(nst("stylize", *image_files, "-o", out, *FAST, env=env), 4,
                 "not installed", "nst weights fetch", output=out)


def test_a_weights_file_that_fails_its_hash_is_refused(tmp_path):
    bad = tmp_path / "vgg.h5"
    bad.write_bytes(os.urandom(1000))
    env = dict(os.environ, NST_HOME=str(tmp_path / "home"))
    assert_fails(nst("weights", "fetch", "--from", bad, env=env), 4, "sha256", "expected")
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


@pytest.mark.slow
def test_a_size_beyond_the_memory_budget_is_refused_naming_one_that_fits(tmp_path, image_files,
                                                                         real_weights):
    out = tmp_path / "out.png"
    done = nst("stylize", *image_files, "-o", out, "--size", "16384", "--max-memory", "1")
    assert_fails(done, 6, "does not fit in 1.0 GB", "even block by block",
                 "choose a size of at most about", output=out)


@pytest.mark.slow
def test_an_absent_cuda_device_is_refused(tmp_path, image_files, real_weights):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out.png"
    assert_fails(nst("stylize", *image_files, "-o", out, *FAST, "--device", "cuda"), 5,
                 "'cuda' asked for", output=out)


def _variants(tmp_path):
    base = picture(48, 40)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((48, 40)))  # 0 at the top, 255 at the bottom
    grey16 = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the output must come out upright (40x48)
    files = {"alpha.png": rgba, "grey.png": base.convert("L"), "palette.gif": base.convert("P"),
             "grey16.png": grey16}
    for name, img in files.items():
        img.save(tmp_path / name)
    base.save(tmp_path / "rotated.jpg", exif=exif)
    return list(files) + ["rotated.jpg"]


@pytest.mark.slow
def test_images_of_every_kind_give_a_result(tmp_path, image_files, real_weights):
    _, style = image_files
    for name in _variants(tmp_path):
        out = tmp_path / f"out-{name}.png"
        done = nst("stylize", tmp_path / name, style, "-o", out, "--size", "keep",
                   "--iterations", "2", "-q")
        assert done.returncode == 0, done.stderr
        result = Image.open(out)
        assert result.size == ((40, 48) if name == "rotated.jpg" else (48, 40)), name
        if name == "alpha.png":  # the content's transparency comes back
            assert result.mode == "RGBA"
            alpha = np.asarray(result)[..., 3]
            assert alpha[0].mean() < 20 and alpha[-1].mean() > 235  # transparent at the top


@pytest.mark.slow
def test_save_every_writes_intermediate_images(tmp_path, image_files, real_weights):
    out = tmp_path / "out.png"
    done = nst("stylize", *image_files, "-o", out, "--size", "32", "--iterations", "4",
               "--save-every", "2", "-q")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("out*.png")) == \
        ["out-step2.png", "out-step4.png", "out.png"]


@pytest.mark.slow
def test_ctrl_c_stops_within_an_iteration_and_writes_nothing(tmp_path, image_files, real_weights):
    out = tmp_path / "out.png"
    proc = subprocess.Popen([sys.executable, "-m", "nst_core", "-v", "stylize",
                             *map(str, image_files), "-o", str(out), "--size", "64",
                             "--iterations", "10000"], stderr=subprocess.PIPE, text=True)
    seen, deadline = "", time.monotonic() + 120
    while "stylizing on" not in seen:  # the engine's log line: the optimisation has started
        seen += proc.stderr.read(1)
        assert proc.poll() is None and time.monotonic() < deadline, seen
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=10)  # generous: one 64 px iteration takes ~0.1 s
    finally:
        proc.kill()
    assert code == 130
    assert "interrupted; nothing was written" in proc.stderr.read()
    assert not out.exists()


def test_doctor_reports_what_a_bug_report_needs():
    out = nst("doctor").stdout
    for word in ("Python", "torch", "CPU", "CUDA", "MPS", "weights"):
        assert word in out


def test_weights_path_honours_nst_home(tmp_path):
    env = dict(os.environ, NST_HOME=str(tmp_path))
    assert nst("weights", "path", env=env).stdout.strip().startswith(str(tmp_path))
