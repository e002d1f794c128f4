"""Colour histogram matching (--colors histogram): the style recoloured to the content's colours."""

import numpy as np

from nst_core.colors import color_stats, match_colors


def gaussian_colours(seed: int, height: int, width: int, centre: float, spread: float):
    """An image of correlated colours around `centre`, well inside 0..1 (no clipping)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(3, 3)) * spread
    return (centre + rng.normal(size=(height, width, 3)) @ mix).clip(0, 1).astype(np.float32)


def test_the_result_has_the_contents_colour_mean_and_covariance():
    style = gaussian_colours(0, 40, 50, 0.5, 0.04)
    content = gaussian_colours(1, 30, 20, 0.4, 0.03)
    result = match_colors(style, content)
    assert result.shape == style.shape and result.dtype == np.float32
    assert 0 < result.min() and result.max() < 1  # clamping did not bite: the match is exact
    mean, cov = color_stats(result)
    want_mean, want_cov = color_stats(content)
    assert np.abs(mean - want_mean).max() < 1e-5
    assert np.abs(cov - want_cov).max() < 1e-4 * np.abs(want_cov).max()


def test_the_style_keeps_its_strokes():
    """A linear map of colours: the pattern (where it is light, where dark) is the style's."""
    style = gaussian_colours(2, 32, 32, 0.5, 0.05)
    result = match_colors(style, gaussian_colours(3, 16, 16, 0.6, 0.02))
    a, b = style.mean(axis=2).ravel(), result.mean(axis=2).ravel()
    assert abs(np.corrcoef(a, b)[0, 1]) > 0.5


def test_flat_and_grey_styles_give_no_nan_and_stay_in_range():
    content = gaussian_colours(4, 20, 20, 0.5, 0.1)
    flat = np.full((16, 16, 3), 0.3, np.float32)
    out = match_colors(flat, content)
    assert np.isfinite(out).all()
    assert np.allclose(out, color_stats(content)[0], atol=1e-5)  # flat, in the content's mean
    grey = np.repeat(np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16, 1), 3, axis=2)
    out = match_colors(grey, content)
    assert np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    assert out.std() > 0.01  # its light and dark are kept, in the content's colours
    black_content = np.zeros((8, 8, 3), np.float32)
    assert np.isfinite(match_colors(content, black_content)).all()


def test_large_images_are_matched_from_a_sample_of_their_pixels():
    from nst_core import colors

    big = gaussian_colours(5, 1100, 1000, 0.5, 0.05)  # 1.1 MP: a strided sample of 1 M
    mean, cov = color_stats(big)
    exact = big.reshape(-1, 3).astype(np.float64)
    assert colors.STATS_PIXELS < len(exact)
    assert np.abs(mean - exact.mean(axis=0)).max() < 1e-3
    assert np.abs(cov - np.cov(exact.T, bias=True)).max() < 0.02 * np.abs(cov).max()
