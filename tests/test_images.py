"""Reading every kind of image users have, and refusing the ones that cannot work."""

import numpy as np
import pytest
from PIL import Image

from nst_core import images
from nst_core.errors import ImageError
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


def test_output_type_and_folder_are_checked_before_any_work(tmp_path):
    with pytest.raises(ImageError, match="unknown image type '.xyz'"):
        images.check_writable(tmp_path / "out.xyz")
    with pytest.raises(ImageError, match="folder .* does not exist"):
        images.check_writable(tmp_path / "missing" / "out.png")


def test_saving_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out.png"

    def broken_save(self, fp, *args, **kwargs):
        open(fp, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        images.save_image(picture(), path)
    assert list(tmp_path.iterdir()) == []


def test_fit_size_keeps_the_aspect_ratio():
    assert images.fit_size(1024, 768, 512) == (512, 384)
    assert images.fit_size(300, 1200, 600) == (150, 600)
