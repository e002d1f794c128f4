"""Reading every kind of image users have, and refusing the ones that cannot work."""

import errno
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from nst_core import images
from nst_core.errors import ImageError, TooLargeError
from tests.conftest import picture


def test_missing_corrupt_and_non_image_files_name_the_file(tmp_path):
    with pytest.raises(ImageError, match=r"style image .*nope\.jpg does not exist"):
        images.load_image(tmp_path / "nope.jpg", what="style image")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ImageError, match=r"notes\.png is not an image format"):
        images.load_image(text)
    good = tmp_path / "cut.jpg"
    picture(256, 256).save(good, quality=95)
    cut = tmp_path / "truncated.jpg"
    cut.write_bytes(good.read_bytes()[:600])
    with pytest.raises(ImageError, match=r"truncated\.jpg is corrupt"):
        images.load_image(cut)
    with pytest.raises(ImageError, match="is a folder"):
        images.load_image(tmp_path)


def test_a_1x1_image_is_refused_with_its_size(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    with pytest.raises(ImageError, match="1x1 pixels; it needs at least 16x16"):
        images.load_image(tiny)


def test_exif_rotated_photos_come_upright(tmp_path):
    img = picture(64, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    assert images.load_image(path).size == (32, 64)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "I;16", "CMYK"])
def test_every_common_mode_becomes_rgb_in_0_1(tmp_path, mode):
    base = picture(32, 32)
    if mode == "I;16":
        grey = (np.asarray(base.convert("L"), np.uint16) * 257)
        img = Image.fromarray(grey)
    else:
        img = base.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    img.save(path)
    rgb = images.to_array(images.load_image(path))
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.float32
    assert 0 <= rgb.min() and rgb.max() <= 1 and rgb.max() > 0.5


def test_16_bit_grey_keeps_its_depth(tmp_path):
    ramp = np.tile(np.arange(0, 65536, 64, dtype=np.uint16)[:1024], (16, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    rgb, alpha = images.split_alpha(images.load_image(path))
    assert alpha is None
    assert len(np.unique(rgb[0, :, 0])) == 1024  # 8 bits would leave 256 levels


def test_alpha_is_split_off_and_kept():
    img = picture(32, 32).convert("RGBA")
    img.putalpha(128)
    rgb, alpha = images.split_alpha(img)
    assert rgb.shape == (32, 32, 3) and np.allclose(alpha, 128 / 255)


def test_arrays_in_uint8_uint16_and_float_are_accepted():
    for a in (np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint16),
              np.full((20, 20, 1), 2.0, np.float32)):
        out = images.to_array(a)
        assert out.shape == (20, 20, 3) and out.max() <= 1.0
    with pytest.raises(ImageError, match="shape"):
        images.to_array(np.zeros((20, 20, 5)))


def test_fit_size_keeps_the_aspect_ratio():
    assert images.fit_size(1024, 768, 512) == (512, 384)
    assert images.fit_size(300, 1200, 600) == (150, 600)


# -- decoding no more than the run needs -----------------------------------------------------------


def png_declaring(width, height):
    """A PNG whose header declares width x height but holds almost no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0,
                                                            0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def close_after_resize(a, b, size):
    """Mean difference of two pictures brought to the same size, in 0..1."""
    a = images.resize_array(images.to_array(a), size)
    b = images.resize_array(images.to_array(b), size)
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize("name", ["big.jpg", "big.png", "big.webp"])
def test_big_files_are_reduced_while_decoding_to_what_the_run_needs(tmp_path, name):
    big = picture(160, 120).resize((1600, 1200), Image.BICUBIC)
    path = tmp_path / name
    big.save(path)
    img = images.load_image(path, max_side=200)
    assert 400 <= max(img.size) < 800  # at least twice the need: the engine's resize filters
    assert img.size[0] * 3 == img.size[1] * 4 or abs(img.size[0] / img.size[1] - 4 / 3) < 0.01
    assert close_after_resize(img, images.load_image(path), (200, 150)) < 0.01
    assert images.load_image(path, max_side=1000).size == (1600, 1200)  # nothing to gain
    assert images.load_image(path.read_bytes(), max_side=200).size == img.size  # the worker's way


def test_reduction_keeps_16_bits_transparency_and_orientation(tmp_path):
    ramp = np.tile(np.arange(0, 65536, 16, dtype=np.uint16), (64, 1))  # 4096 levels
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    rgb, _ = images.split_alpha(images.load_image(tmp_path / "deep.png", max_side=1000))
    assert rgb.shape[1] < 4096 and len(np.unique(rgb[0, :, 0])) > 1000  # 8 bits: 256 levels

    palette = picture(400, 400).convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png", transparency=0)
    img = images.load_image(tmp_path / "palette.png", max_side=50)
    assert img.size == (100, 100) and images.split_alpha(img)[1] is not None

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways
    picture(160, 80).resize((1600, 800)).save(tmp_path / "rotated.jpg", exif=exif)
    w, h = images.load_image(tmp_path / "rotated.jpg", max_side=100).size
    assert h > w and 200 <= h < 400


def test_long_thin_images_keep_enough_rows_for_the_network(tmp_path):
    Image.new("RGB", (8000, 200), "red").save(tmp_path / "strip.png")
    img = images.load_image(tmp_path / "strip.png", max_side=256)
    assert img.width < 2000 and img.height >= 2 * images.MIN_SIDE


@pytest.mark.parametrize("size", [(100_000, 100_000), (30_000, 20_000), (2**31 - 1, 16)])
def test_a_file_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, size):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(*size))
    with pytest.raises(TooLargeError, match=rf"style image .*bomb\.png declares {size[0]}x"
                                            rf"{size[1]} pixels .* over the 400 MP"):
        images.load_image(path, what="style image")
    with pytest.raises(TooLargeError, match="over the 400 MP"):
        images.load_image(path.read_bytes(), max_side=512)


def test_a_decode_that_cannot_fit_in_memory_names_the_size_and_memory(tmp_path, monkeypatch):
    path = tmp_path / "declared.png"
    path.write_bytes(png_declaring(12_000, 9_000))  # 108 MP: about 5 GB as arrays
    monkeypatch.setattr(images, "available_memory", lambda device: 2 * images.GB)
    with pytest.raises(TooLargeError, match=r"declared\.png is 12000x9000 pixels; decoding it "
                                            r"needs about \d+\.\d GB of memory but 2\.0 GB is "
                                            r"available"):
        images.load_image(path, what="content image")


def test_the_memory_check_counts_the_reduced_decode(tmp_path, monkeypatch):
    path = tmp_path / "photo.jpg"
    picture(200, 150).resize((4000, 3000)).save(path)
    full = images.decode_bytes((4000, 3000), "RGB")
    monkeypatch.setattr(images, "available_memory", lambda device: full // 4)
    with pytest.raises(TooLargeError, match="4000x3000"):
        images.load_image(path)
    assert images.load_image(path, max_side=256).size == (1000, 750)  # decoded at 1/4: fits


# -- writing: checked before any work, atomic, never over an input -----------------------------


def test_output_type_and_folder_are_checked_before_any_work(tmp_path):
    with pytest.raises(ImageError, match="unknown image type '.xyz'"):
        images.check_writable(tmp_path / "out.xyz")
    with pytest.raises(ImageError, match="folder .* does not exist"):
        images.check_writable(tmp_path / "missing" / "out.png")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="folder .*file is a file, not a folder"):
        images.check_writable(tmp_path / "file" / "out.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match=r"dir\.png is a folder; give a file name such as"):
        images.check_writable(tmp_path / "dir.png")
    with pytest.raises(ImageError, match="too long: this folder takes names of at most"):
        images.check_writable(tmp_path / ("x" * 300 + ".png"))
    assert images.check_writable(tmp_path / ("x" * 240 + ".png"))  # long but allowed: fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "file"]  # probe removed


def test_an_output_that_is_an_input_is_refused(tmp_path, monkeypatch):
    content = tmp_path / "photo.png"
    picture().save(content)
    before = content.read_bytes()
    inputs = [("content image", content), ("style image", tmp_path / "style.png")]
    (tmp_path / "sub").mkdir()
    os.link(content, tmp_path / "hardlink.png")
    os.symlink(content, tmp_path / "symlink.png")
    monkeypatch.chdir(tmp_path / "sub")
    for output in (content, "../photo.png", tmp_path / "sub" / ".." / "photo.png",
                   tmp_path / "hardlink.png", tmp_path / "symlink.png"):
        with pytest.raises(ImageError, match=r"is the content image .*photo\.png: writing there "
                                             "would replace your original"):
            images.check_writable(output, inputs)
    with pytest.raises(ImageError, match="is the style image"):
        images.check_writable(tmp_path / "style.png", inputs)
    assert content.read_bytes() == before


def test_a_folder_that_takes_no_new_files_is_found_before_any_work(tmp_path, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(images.os, "open", refuse)
    with pytest.raises(ImageError, match=r"could not write .*out\.png: permission denied"):
        images.check_writable(tmp_path / "out.png")


def test_saving_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out.png"

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError, match="could not write"):
        images.save_image(picture(), path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (OSError(errno.EIO, "Input/output error"), "input/output error"),
    (OSError(errno.EFBIG, "File too large"), "file size limit"),
    (KeyboardInterrupt(), None),
])
def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, error, words):
    path = tmp_path / "out.png"
    picture(seed=1).save(path)
    old = path.read_bytes()
    real_save = Image.Image.save

    def failing_save(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)  # half of the file is written ...
        raise error  # ... then the disk fills up, or the user presses Ctrl-C

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(ImageError if words else KeyboardInterrupt) as e:
        images.save_image(picture(), path)
    if words:
        assert words in e.value.message and "out.png" in e.value.message
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_saving_replaces_a_link_at_the_output_and_never_writes_through_it(tmp_path):
    precious = tmp_path / "precious.png"
    picture(seed=2).save(precious)
    old = precious.read_bytes()
    link = tmp_path / "out.png"
    link.symlink_to(precious)
    images.save_image(picture(), link)
    assert precious.read_bytes() == old
    assert not link.is_symlink() and Image.open(link).size == (64, 48)


def test_saving_onto_a_folder_is_one_clear_error(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(ImageError, match=r"could not write .*out\.png: it is a folder"):
        images.save_image(picture(), tmp_path / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
