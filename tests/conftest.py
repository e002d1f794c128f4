"""Shared fixtures: small generated images, and the real VGG19 weights (fetched by `make test`)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nst_core import weights
from nst_core.errors import WeightsError


def picture(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A small RGB test picture with edges and colour: gradients plus a few rectangles."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 5.0)], axis=2)
    for _ in range(4):
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        img[y0:y0 + height // 3, x0:x0 + width // 3] = rng.uniform(0, 1, 3)
    return Image.fromarray((img * 255).astype(np.uint8), "RGB")


def stripes(width: int = 64, height: int = 64) -> Image.Image:
    """A style picture: diagonal stripes in two strong colours."""
    y, x = np.mgrid[0:height, 0:width]
    on = ((x + y) // 6) % 2 == 0
    img = np.where(on[..., None], [220, 40, 30], [20, 30, 160]).astype(np.uint8)
    return Image.fromarray(img, "RGB")


@pytest.fixture
def content_image() -> Image.Image:
    return picture()


@pytest.fixture
def style_image() -> Image.Image:
    return stripes()


@pytest.fixture
def image_files(tmp_path, content_image, style_image):
    """(content.png, style.png) written in tmp_path."""
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    content_image.save(content)
    style_image.save(style)
    return content, style


@pytest.fixture(scope="session")
def real_weights():
    """The installed VGG19 weights. `make test` fetches them first (`nst weights fetch`)."""
    try:
        weights.verify()
    except WeightsError as e:
        pytest.fail(f"{e.message} (`make test` does this for you)")
    return weights.weights_path()
