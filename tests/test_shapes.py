"""Image shapes at every scale: panoramas, slivers and tiny images as content or style. Either
the run is planned with every scale, content and style, large enough for VGG's four poolings,
or it is refused before any work with one ImageError naming the size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nst_core import budget, images
from nst_core.engine import style_size, stylize
from nst_core.errors import ImageError, TooLargeError
from nst_core.options import Options

sides = st.integers(images.MIN_SIDE, 6000)
GB = 1 << 30


@settings(max_examples=400, deadline=None, database=None)
@given(content=st.tuples(sides, sides), style=st.tuples(sides, sides),
       size=st.one_of(st.none(), st.integers(16, 4096)),
       style_scale=st.floats(0.05, 8), preset=st.sampled_from(["draft", "standard", "classic"]))
def test_every_scale_fits_the_network_or_the_run_is_refused(content, style, size, style_scale,
                                                           preset):
    options = Options(size=size, style_scale=style_scale, preset=preset)
    try:
        _, scales = budget.plan_run(options, content, [style], torch.float32, 64 * GB,
                                    torch.device("cpu"), name_largest=False)
    except (ImageError, TooLargeError) as e:
        assert "px" in e.message or "pixels" in e.message
        return
    assert scales
    for s in scales:
        assert min(s.size) >= images.MIN_SIDE, s.size
        assert min(style_size(*style, max(s.size), style_scale)) >= images.MIN_SIDE


def _noise(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("content, style, size", [
    ((64, 64), (20, 3000), 512),  # a panorama style at the default size
    ((64, 48), (3000, 16), 64),  # a very tall, very thin style
    ((16, 600), (64, 64), None),  # a sliver of content at its own size: coarse scales skipped
    ((16, 16), (16, 16), 64),  # the smallest images there are
])
def test_extreme_shapes_paint(real_weights, content, style, size):
    out = stylize(_noise(*content), [_noise(*style, seed=1)],
                  Options(preset="draft", iterations=2, size=size))
    expected = content[::-1] if size is None else images.fit_size(content[1], content[0], size)
    assert out.shape == (expected[1], expected[0], 3)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("content, size", [((16, 600), 64), ((2000, 20), 512)])
def test_a_sliver_that_would_shrink_below_16_px_is_refused_before_any_work(content, size):
    with pytest.raises(ImageError, match="each side needs at least 16"):
        stylize(_noise(*content), [_noise(64, 64)], Options(size=size, device="cpu"))
