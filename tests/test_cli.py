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
from tests.test_weights import flip_byte, vgg_like_tensors, write_store

FAST = ["--size", "32", "--iterations", "2"]


def nst(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "nst_core", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def interrupt(proc: subprocess.Popen) -> int:
    """Ctrl-C to a running `nst`: its exit code, which must come within 10 s (generous: one
    64 px iteration takes ~0.1 s); a process still there then is killed and the wait fails."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=10)
    finally:
        proc.kill()


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
    (["--max-memory", "-1"], 2, ["max_memory must be at least 0.75"]),
    (["--max-memory", "0"], 2, ["max_memory must be at least 0.75"]),
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


def nst_here(capsys, *args):
    """`nst` in this process (no interpreter and torch start-up): (exit code, stderr)."""
    from nst_core import cli

    code = cli.main(list(map(str, args)))
    return code, capsys.readouterr().err


def one_error_line(done):
    """The lines of stderr that are not argparse's usage: the error itself."""
    return [line for line in done.stderr.splitlines()
            if line.strip() and not line.startswith((" ", "usage:"))]


@pytest.mark.parametrize("value", ["-1", "-100", "often"])
def test_a_negative_save_every_is_a_usage_error(tmp_path, image_files, value):
    out = tmp_path / "out.png"
    done = nst("stylize", *image_files, "-o", out, "--save-every", value)
    assert_fails(done, 2, "--save-every", f"{value!r} is not 0 (off) or a number of iterations",
                 output=out)
    assert len(one_error_line(done)) == 1


def test_output_problems_are_found_before_any_work(tmp_path, image_files, capsys):
    content, style = image_files
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "a-file").write_text("x")
    cases = [
        (tmp_path / "folder.png", "is a folder; give a file name such as"),
        (tmp_path, "is a folder"),
        (tmp_path / "missing" / "out.png", "does not exist"),
        (tmp_path / "a-file" / "out.png", "is a file, not a folder"),
        (tmp_path / ("x" * 300 + ".png"), "is too long"),
        (tmp_path / "out.xyz", "unknown image type"),
    ]
    for output, words in cases:
        # A missing style would fail later: an output problem must be found first.
        code, err = nst_here(capsys, "stylize", content, tmp_path / "gone.png", "-o", output)
        assert code == 3 and words in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["a-file", "content.png", "folder.png", "style.png"]


def test_the_output_can_never_be_an_input(tmp_path, image_files, capsys, monkeypatch):
    content, style = image_files
    originals = {p: p.read_bytes() for p in (content, style)}
    os.link(content, tmp_path / "hardlink.png")
    os.symlink(style, tmp_path / "symlink.png")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for output, what in [(content, "content image"), (style, "style image"),
                         ("../content.png", "content image"),
                         (tmp_path / "hardlink.png", "content image"),
                         (tmp_path / "symlink.png", "style image")]:
        code, err = nst_here(capsys, "stylize", content, style, "-o", output, *FAST)
        assert code == 3 and f"is the {what}" in err and "would replace your original" in err
    step = tmp_path / "result-step2.png"
    step.write_bytes(originals[content])
    code, err = nst_here(capsys, "stylize", step, style, "-o", tmp_path / "result.png",
                         "--save-every", "2")
    assert code == 3
    assert "--save-every would write" in err and "result-stepN.png over the content image" in err
    assert {p: p.read_bytes() for p in originals} == originals
    # And through the real command line: the exit code and the one message.
    assert_fails(nst("stylize", content, style, "-o", content), 3, "would replace your original")
    assert {p: p.read_bytes() for p in originals} == originals


def test_a_bad_log_level_is_reported_and_ignored(tmp_path, image_files):
    env = dict(os.environ, NST_LOG_LEVEL="LOUD")
    done = nst("weights", "path", env=env)
    assert done.returncode == 0 and done.stdout.strip()
    assert "NST_LOG_LEVEL='LOUD' is not one of DEBUG, INFO, WARNING, ERROR" in done.stderr
    done = nst("stylize", tmp_path / "gone.png", image_files[1], "-o", tmp_path / "o.png",
               env=env)
    assert_fails(done, 3, "gone.png does not exist")
    assert len(done.stderr.strip().splitlines()) == 2  # the warning, then the one error
    done = nst("weights", "path", env=dict(os.environ, NST_LOG_LEVEL="debug"))
    assert done.returncode == 0 and "warning" not in done.stderr


@pytest.mark.parametrize("damage, words", [
    ("flip", "corrupt (checksum mismatch)"),
    ("nan", "not numbers (NaN or infinity)"),
    ("shape", "expected float32 (64, 3, 3, 3)"),
])
def test_a_run_on_damaged_weights_fails_before_stylizing(tmp_path, image_files, damage, words):
    home = tmp_path / "home"
    home.mkdir()
    tensors = dict(vgg_like_tensors())
    if damage == "nan":
        tensors["features.0.bias"] = np.full(64, np.nan, np.float32)
    if damage == "shape":
        tensors["features.0.weight"] = np.zeros((64, 3, 5, 5), np.float32)
    store = write_store(home / "vgg19-caffe-conv.safetensors", tensors)
    if damage == "flip":
        flip_byte(store)
    out = tmp_path / "out.png"
    done = nst("stylize", *image_files, "-o", out, *FAST, env=dict(os.environ, NST_HOME=str(home)))
    assert_fails(done, 4, words, "nst weights fetch --force", output=out)
    assert "stylizing" not in done.stderr and "diverged" not in done.stderr


def test_an_image_declaring_a_huge_size_is_refused_before_decoding(tmp_path, image_files):
    from tests.test_images import png_declaring

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(50_000, 50_000))
    out = tmp_path / "out.png"
    assert_fails(nst("stylize", image_files[0], bomb, "-o", out), 6,
                 "style image", "declares 50000x50000 pixels", output=out)


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
    code = interrupt(proc)
    assert code == 130
    assert "interrupted; nothing was written" in proc.stderr.read()
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_after_step_images_names_them(tmp_path, image_files, real_weights):
    out = tmp_path / "out.png"
    proc = subprocess.Popen([sys.executable, "-m", "nst_core", "stylize", *map(str, image_files),
                             "-o", str(out), "--size", "32", "--iterations", "10000",
                             "--save-every", "1", "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "out-step2.png").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    code = interrupt(proc)
    message = proc.stderr.read()
    assert code == 130 and "Traceback" not in message
    assert f"{out} was not written" in message and "step image(s) were, the last" in message
    last = message.split("the last ")[-1].strip()
    assert Image.open(last).size == (32, 24)
    assert not out.exists()


def test_doctor_reports_what_a_bug_report_needs():
    out = nst("doctor").stdout
    for word in ("Python", "torch", "CPU", "CUDA", "MPS", "weights"):
        assert word in out


def test_weights_path_honours_nst_home(tmp_path):
    env = dict(os.environ, NST_HOME=str(tmp_path))
    assert nst("weights", "path", env=env).stdout.strip().startswith(str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("flags", [
    ["--colors", "histogram"], ["--preserve-colors"], ["--style-loss", "w2"],
    ["--content-layers", "block4_conv2", "--style-layers", "block1_conv1", "block2_conv1"],
])
def test_the_artistic_controls_run_from_the_command_line(tmp_path, image_files, real_weights,
                                                         flags):
    """Each new control end to end through the CLI on a small picture: a repainted result of
    the asked size, the original untouched."""
    content, style = image_files
    before = content.read_bytes()
    out = tmp_path / "out.png"
    done = nst("stylize", content, style, "-o", out, "--size", "48", "--preset", "draft",
               "--iterations", "3", "-q", *flags)
    assert done.returncode == 0, done.stderr
    result = np.asarray(Image.open(out).convert("RGB"), np.float32)
    original = np.asarray(Image.open(content).convert("RGB").resize(result.shape[1::-1]),
                          np.float32)
    assert max(result.shape[:2]) == 48
    assert np.abs(result - original).mean() > 1  # repainted (0..255; luminance keeps colors)
    assert content.read_bytes() == before
