"""`nst batch`: every good image painted once, the bad ones named, nothing redone that is done,
everything redone when the options change, and Ctrl-C leaves only complete results."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path, PurePath

import numpy as np
import pytest
import tifffile
from PIL import Image

from nst_core.batch import inputs, manifest
from nst_core.batch.run import plan
from nst_core.errors import ImageError, OptionError
from nst_core.options import Options
from tests.conftest import picture, stripes
from tests.test_cli import interrupt, nst

QUICK = ["--preset", "draft", "--size", "64", "--iterations", "3", "--precision", "fp32", "-q"]


def make_inputs(root: Path) -> Path:
    """photos/ with a subfolder, a corrupt JPEG and a text file; style.png beside it."""
    photos = root / "photos"
    (photos / "trip").mkdir(parents=True)
    picture(80, 64, 1).save(photos / "a.png")
    picture(72, 96, 2).save(photos / "trip" / "b.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "notes.txt").write_text("shopping list")
    stripes().save(root / "style.png")
    return photos


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under folder (the manifest aside) -> (inode, mtime): a rewrite changes it."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".nst-batch")}


# -- end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_batch_paints_each_good_image_once_names_the_bad_and_resumes(tmp_path, real_weights):
    photos, out = make_inputs(tmp_path), tmp_path / "out"
    first = nst("batch", photos, "--style", tmp_path / "style.png", "-o", out, *QUICK)
    assert first.returncode == 1, first.stderr  # some failed
    assert "Traceback" not in first.stderr
    assert "broken.jpg" in first.stderr + first.stdout
    assert "2 painted, 0 already done, 1 failed" in first.stdout
    assert "notes.txt" in first.stdout  # listed as ignored, not painted
    made = stamps(out)
    assert sorted(made) == ["a.png", "trip/b.png"]  # the folder structure is kept
    assert Image.open(out / "a.png").size == (64, 51)
    assert Image.open(out / "trip" / "b.png").size == (48, 64)

    again = nst("batch", photos, "--style", tmp_path / "style.png", "-o", out, *QUICK)
    assert "0 painted, 2 already done, 1 failed" in again.stdout
    assert stamps(out) == made  # nothing rewritten

    other = nst("batch", photos, "--style", tmp_path / "style.png", "-o", out, *QUICK,
                "--seed", "7")
    assert "2 painted, 0 already done" in other.stdout
    redone = stamps(out)
    assert sorted(redone) == sorted(made) and all(redone[k] != made[k] for k in made)


@pytest.mark.slow
def test_ctrl_c_leaves_only_complete_results_and_a_rerun_finishes(tmp_path, real_weights):
    photos = tmp_path / "frames"
    photos.mkdir()
    for i in range(4):
        picture(64, 64, i).save(photos / f"f{i}.png")
    stripes().save(tmp_path / "style.png")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "nst_core", "batch", str(photos), "--style",
            str(tmp_path / "style.png"), "-o", str(out), "--preset", "draft", "--size", "64",
            "--iterations", "40", "--precision", "fp32", "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / manifest.NAME).exists():  # the first result is written and recorded
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    code = interrupt(proc)
    stdout, stderr = proc.communicate()
    assert code == 130 and "Traceback" not in stderr
    assert "interrupted" in stdout and "Run the same command again" in stdout
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith(".nst-batch"))
    assert written and not any(n.endswith(".tmp") for n in written)
    assert len(written) < 4
    for name in written:  # each one whole
        Image.open(out / name).load()
    recorded = [json.loads(line)["key"] for line in (out / manifest.NAME).open()]
    assert sorted(recorded) == written

    rest = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert rest.returncode == 0, rest.stderr
    assert f"{4 - len(written)} painted, {len(written)} already done, 0 failed" in rest.stdout
    assert sorted(p.name for p in out.glob("*.png")) == [f"f{i}.png" for i in range(4)]


@pytest.mark.slow
def test_formats_several_styles_and_16_bit(tmp_path, real_weights):
    deep = (np.linspace(0, 65535, 64 * 80 * 3) % 65536).astype(np.uint16).reshape(64, 80, 3)
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "deep.tif", deep, photometric="rgb")
    picture(64, 48).save(folder / "flat.png")
    stripes().save(tmp_path / "stripes.png")
    Image.fromarray(np.full((64, 64, 3), (30, 200, 90), np.uint8)).save(tmp_path / "green.jpg")
    out = tmp_path / "out"
    done = nst("batch", folder, "--style", tmp_path / "stripes.png", "--style",
               tmp_path / "green.jpg", "-o", out, "--format", "tif", *QUICK)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith(".nst-batch"))
    assert names == ["deep.green.tif", "deep.stripes.tif", "flat.green.tif", "flat.stripes.tif"]
    assert tifffile.imread(out / "deep.stripes.tif").dtype == np.uint16  # stays 16-bit
    assert tifffile.imread(out / "flat.stripes.tif").dtype == np.uint8
    assert tifffile.imread(out / "deep.stripes.tif").shape == (51, 64, 3)

    jpg = nst("batch", folder / "flat.png", "--style", tmp_path / "stripes.png", "-o", out,
              "--format", "jpg", *QUICK)
    assert jpg.returncode == 0, jpg.stderr
    assert Image.open(out / "flat.jpg").format == "JPEG"


@pytest.mark.slow
def test_sequence_paints_frames_in_name_order_from_the_last(tmp_path, real_weights):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in (1, 2, 10):  # name order: 1, 2, 10 (not 1, 10, 2)
        picture(64, 64, 0).transform((64, 64), Image.AFFINE, (1, 0, -i, 0, 1, 0)).save(
            frames / f"frame{i}.png")
    stripes().save(tmp_path / "style.png")
    out = tmp_path / "out"
    done = nst("-v", "batch", frames, "--style", tmp_path / "style.png", "-o", out, "--sequence",
               *QUICK, "--min-size", "32")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["frame1.png", "frame10.png", "frame2.png"]
    # The first frame runs the full schedule (32, 45, 64 px); the others only the final scale,
    # starting from the frame before.
    plans = [re.findall(r"\d+x\d+:", line) for line in done.stderr.splitlines()
             if "scales " in line]
    assert plans == [["32x32:", "45x45:", "64x64:"], ["64x64:"], ["64x64:"]]


# -- what fails before any work ------------------------------------------------------------------


def test_missing_input_style_or_bad_options_fail_before_work(tmp_path):
    photos = make_inputs(tmp_path)
    style = tmp_path / "style.png"
    cases = [
        (["batch", tmp_path / "nope", "--style", style], "matches no file"),
        (["batch", photos, "--style", tmp_path / "nope.png"], "does not exist"),
        (["batch", photos, "--style", photos / "broken.jpg"], "broken.jpg"),
        (["batch", photos, "--style", style, "--style", style, "--style-blend", "1", "1"],
         "--style-blend"),
        (["batch", photos, "--style", style, "--init", style], "--init"),
        (["batch", photos, "--style", style, "--format", "gif"], "invalid choice"),
    ]
    for args, words in cases:
        done = nst(*args, "-o", tmp_path / "out")
        assert done.returncode != 0 and words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_result_that_would_replace_an_input_is_refused(tmp_path):
    photos = make_inputs(tmp_path)
    with pytest.raises(ImageError, match="would replace the input"):
        plan([str(photos / "a.png")], [str(tmp_path / "style.png")], photos, Options(), "png",
             False)


@pytest.mark.parametrize("where", [".", ".."])
def test_an_output_folder_that_is_or_holds_the_input_folder_is_refused(tmp_path, where):
    """nst batch DIR -o DIR would paint b.png again as b.png.png on the next run."""
    photos = make_inputs(tmp_path)
    outdir = (photos / where).resolve()
    with pytest.raises(ImageError, match="the next run would paint the results again"):
        plan([str(photos)], [str(tmp_path / "style.png")], outdir, Options(), "jpg", False)
    assert sorted(p.name for p in photos.iterdir()) == ["a.png", "broken.jpg", "notes.txt",
                                                        "trip"]


def test_output_places_are_checked_before_any_work(tmp_path):
    """A result name over the file system's limit, a file where a result's folder must go, a
    folder where a result or the batch's record must go: one error naming it, nothing painted."""
    photos = make_inputs(tmp_path)
    style = str(tmp_path / "style.png")
    out = tmp_path / "out"

    def refused(inputs_, words, styles=(style,)):
        with pytest.raises(ImageError, match=words):
            plan(inputs_, list(styles), out, Options(), "png", False)
        assert not [p for p in out.rglob("*") if p.is_file() and p.suffix == ".png"]

    long = tmp_path / ("x" * 249 + ".jpg")  # 253 bytes; its result x...x.style.png has 259
    picture(16, 16).save(long)
    refused([str(long)], "longer than the 255 bytes", [style, style])
    (out / "trip").write_text("a file where the folder trip/ must go")
    refused([str(photos)], "out/trip is a file, where the folder")
    (out / "trip").unlink()
    (out / "a.png").mkdir()
    refused([str(photos)], "out/a.png is a folder, where the result")
    (out / "a.png").rmdir()
    (out / manifest.NAME).mkdir()
    refused([str(photos)], "keeps its record")


class _Instant:
    """An executor that 'paints' every job at once (a copy of its input): the driver's writing
    and failure handling without the engine."""

    slots = 1

    def run(self, jobs, on_update, keep_pictures=False):
        from nst_core.batch.task import Done
        for job in jobs:
            yield Done(job.key, job.content, (1, 1))

    def close(self):
        pass


def test_a_result_that_cannot_be_written_fails_that_image_and_the_batch_goes_on(tmp_path, capsys):
    from nst_core.batch.run import run
    photos = make_inputs(tmp_path)
    (photos / "broken.jpg").unlink()
    out = tmp_path / "out"
    batch = plan([str(photos)], [str(tmp_path / "style.png")], out, Options(), "png", False)
    (out / "trip").write_text("appeared after the checks")  # where trip/b.png must go
    assert run(batch, _Instant(), quiet=True) == 1
    printed = capsys.readouterr().out
    assert "1 painted, 0 already done, 1 failed" in printed
    assert "b.jpg: its result" in printed and "could not be written" in printed
    assert (out / "a.png").read_bytes() == (photos / "a.png").read_bytes()
    (out / "trip").unlink()  # mended: the re-run paints only what failed
    assert run(plan([str(photos)], [str(tmp_path / "style.png")], out, Options(), "png", False),
               _Instant(), quiet=True) == 0
    assert "1 painted, 1 already done, 0 failed" in capsys.readouterr().out


# -- the parts -----------------------------------------------------------------------------------


def test_discovery_keeps_structure_skips_hidden_and_outdir_and_orders_names(tmp_path):
    root = tmp_path / "in"
    for rel in ("b10.png", "b2.png", "sub/c.jpg", ".hidden.png", ".cache/x.png", "out/old.png",
                "readme.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    found = inputs.discover([str(root), str(root / "b2.png")], root / "out")
    assert [str(i.rel) for i in found.inputs] == ["b2.png", "b10.png", "sub/c.jpg"]
    assert found.ignored == [root / "readme.md"]
    globbed = inputs.discover([str(root / "**" / "*.jpg")], tmp_path / "out")
    assert [str(i.rel) for i in globbed.inputs] == ["sub/c.jpg"]


def test_output_names_follow_inputs_and_styles_without_clashes():
    found = [inputs.Input(Path(p), PurePath(p)) for p in ("a.jpg", "a.png", "d/b.tif")]
    assert {str(v) for v in inputs.output_names(found, None, "png").values()} == \
        {"a.jpg.png", "a.png.png", "d/b.png"}
    labels = inputs.style_labels(["x/starry night.jpg", "y/starry night.png"])
    assert labels == ["starry_night", "starry_night-2"]
    names = inputs.output_names(found[2:], labels, "tif")
    assert sorted(map(str, names.values())) == ["d/b.starry_night-2.tif", "d/b.starry_night.tif"]
    assert inputs.style_labels(["only.png"]) is None


def test_manifest_knows_what_is_done_and_what_changed(tmp_path):
    content, style, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "o.png"
    for p in (content, style, out):
        p.write_bytes(b"x")
    fp = manifest.fingerprint(Options(), content, style, "png")
    m = manifest.Manifest(tmp_path)
    assert not m.is_done("o.png", fp)
    m.record("o.png", fp)
    assert manifest.Manifest(tmp_path).is_done("o.png", fp)
    # Other options, another format or a changed input: not done.
    assert manifest.fingerprint(Options(seed=1), content, style, "png") != fp
    assert manifest.fingerprint(Options(), content, style, "jpg") != fp
    assert manifest.fingerprint(Options(device="cpu"), content, style, "png") == fp
    time.sleep(0.01)
    content.write_bytes(b"changed")
    assert manifest.fingerprint(Options(), content, style, "png") != fp
    # The output rewritten since (or deleted): not done.
    out.write_bytes(b"other")
    assert not manifest.Manifest(tmp_path).is_done("o.png", fp)
    # A line cut short by a crash, or garbage, is skipped; the lines before it count.
    m = manifest.Manifest(tmp_path)
    out.write_bytes(b"again")
    m.record("o.png", fp)
    with open(tmp_path / manifest.NAME, "a") as f:
        f.write('{"v": 1, "key": "o.png", "fingerpr')
    assert manifest.Manifest(tmp_path).is_done("o.png", fp)


def test_manifest_skips_nested_json_and_counts_a_copied_result_by_its_content(tmp_path):
    import shutil

    content, style = tmp_path / "c.png", tmp_path / "s.png"
    content.write_bytes(b"c")
    style.write_bytes(b"s")
    out = tmp_path / "out"
    out.mkdir()
    (out / "o.png").write_bytes(b"result")
    fp = manifest.fingerprint(Options(), content, style, "png")
    manifest.Manifest(out).record("o.png", fp)
    with open(out / manifest.NAME, "a") as f:  # 100,000 nested brackets: garbage, skipped
        f.write("[" * 100_000 + "]" * 100_000 + "\n")
    assert manifest.Manifest(out).is_done("o.png", fp)
    # `cp -r`: new inodes and times, the same bytes: still done, nothing to repaint.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, copy_function=shutil.copy)
    assert manifest.Manifest(copy).is_done("o.png", fp)
    # The same size and another picture: painted again.
    (copy / "o.png").write_bytes(b"RESULT")
    assert not manifest.Manifest(copy).is_done("o.png", fp)


def test_output_names_are_linear_and_planning_says_so(tmp_path, capsys):
    from nst_core import cli

    many = [inputs.Input(Path(f"d/p{i}.jpg"), PurePath(f"d/p{i}.jpg")) for i in range(20_000)]
    many += [inputs.Input(Path("d/p7.png"), PurePath("d/p7.png"))]  # a clash: own suffix kept
    start = time.monotonic()
    names = inputs.output_names(many, None, "png")
    assert time.monotonic() - start < 5  # count() per input took minutes here
    assert len(set(names.values())) == len(many) and names[7, 0] == PurePath("d/p7.jpg.png")
    photos = make_inputs(tmp_path)
    code = cli.main(["batch", str(photos), "--style", str(tmp_path / "nope.png"), "-o",
                     str(tmp_path / "out")])
    out = capsys.readouterr()
    assert code != 0 and "finding the inputs" in out.out and "does not exist" in out.err
    code = cli.main(["batch", str(photos), "--style", str(tmp_path / "style.png"), "-o",
                     str(tmp_path / "out"), "--ray="])
    err = capsys.readouterr().err
    assert code != 0 and "--ray= needs a cluster address" in err and " and  is" not in err


def test_one_batch_at_a_time_per_output_folder(tmp_path):
    with manifest.Manifest(tmp_path):
        with pytest.raises(ImageError, match="another nst batch is writing"):
            with manifest.Manifest(tmp_path):
                pass
    with manifest.Manifest(tmp_path):  # released
        pass


def test_two_folders_keep_their_names_and_clashing_names_are_refused(tmp_path):
    for day in ("day1", "day2"):
        (tmp_path / day).mkdir()
        (tmp_path / day / "IMG_1.jpg").write_bytes(b"x")
    found = inputs.discover([str(tmp_path / "day1"), str(tmp_path / "day2")], tmp_path / "o")
    assert sorted(map(str, inputs.output_names(found.inputs, None, "png").values())) == \
        ["day1/IMG_1.png", "day2/IMG_1.png"]
    clash = [inputs.Input(Path(p), PurePath(p)) for p in ("a.jpg", "a.png", "a.jpg.png")]
    with pytest.raises(ImageError, match="would both be written as a.jpg.png"):
        inputs.output_names(clash, None, "png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="holds no images"):
        inputs.discover([str(tmp_path / "empty")], tmp_path / "o")
    (tmp_path / "day1" / "IMG_1.xmp").write_bytes(b"x")
    globbed = inputs.discover([str(tmp_path / "day1" / "*")], tmp_path / "o")
    assert [i.path.name for i in globbed.inputs] == ["IMG_1.jpg"]
    assert [p.name for p in globbed.ignored] == ["IMG_1.xmp"]


def test_plan_refuses_blending_and_init_files(tmp_path):
    make_inputs(tmp_path)
    style = str(tmp_path / "style.png")
    with pytest.raises(OptionError, match="style-blend"):
        plan([str(tmp_path / "photos")], [style, style], tmp_path / "o",
             Options(style_blend=(1.0, 1.0)), "png", False)
    with pytest.raises(OptionError, match="--init"):
        plan([str(tmp_path / "photos")], [style], tmp_path / "o", Options(init=style), "png",
             False)


def test_sixteen_bit_files_round_trip(tmp_path):
    from nst_core import depth

    rgb = np.random.default_rng(0).random((20, 30, 3), dtype=np.float32)
    for fmt in ("png", "tif"):
        data = depth.encode(rgb, None, fmt, deep=True)
        assert depth.is_deep(data)
        back, alpha = depth.read(data, "x")
        assert alpha is None and np.abs(back - rgb).max() < 1e-4
    assert not depth.is_deep(depth.encode(rgb, None, "png"))
    assert Image.open(io.BytesIO(depth.encode(rgb, None, "jpg"))).format == "JPEG"


def test_motion_carries_the_last_result_along_and_lets_new_things_be_painted():
    from nst_core.batch.motion import carry

    rng = np.random.default_rng(0)
    scene = np.asarray(picture(140, 96, 3), dtype=np.float32) / 255
    then, now = scene[:, 8:120], scene[:, 12:124]  # the camera pans 4 px to the right
    now = now.copy()
    now[40:60, 40:60] = [1.0, 0.0, 1.0]  # and something new appears
    painted = rng.random(then.shape, dtype=np.float32)  # the last frame's result
    start, hold = carry(painted, then, now)
    # Where the new frame shows what the last one did, the last result moved 4 px left.
    inner = np.s_[8:-8, 8:-12]
    held = hold[inner] > 0
    assert held.mean() > 0.8
    moved = painted[8:-8, 12:-8]  # start[y, x] should be painted[y, x + 4]
    assert np.abs(start[inner] - moved)[held].mean() < 0.05
    # The new square is not held and starts from the new content.
    assert hold[44:56, 44:56].max() == 0
    assert np.allclose(start[44:56, 44:56], [1.0, 0.0, 1.0])


@pytest.mark.slow
def test_sequence_after_a_failed_frame_repaints_the_next_once_it_is_mended(tmp_path, real_weights):
    frames = tmp_path / "frames"
    frames.mkdir()
    picture(64, 64, 0).save(frames / "f1.png")
    (frames / "f2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    picture(64, 64, 2).save(frames / "f3.png")
    stripes().save(tmp_path / "style.png")
    out = tmp_path / "out"
    args = ["batch", frames, "--style", tmp_path / "style.png", "-o", out, "--sequence", *QUICK]
    first = nst(*args)
    assert first.returncode == 1 and "f2.png" in first.stdout
    assert "2 painted, 0 already done, 1 failed" in first.stdout  # f3 painted afresh
    again = nst(*args)
    assert "0 painted, 2 already done, 1 failed" in again.stdout  # nothing changed
    picture(64, 64, 1).save(frames / "f2.png")  # mended: f2 is painted, then f3 from it
    mended = nst(*args)
    assert mended.returncode == 0, mended.stderr
    assert "2 painted, 1 already done, 0 failed" in mended.stdout
