"""End-to-end runs of the engine with the real VGG19 weights on small generated images."""

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core import images
from nst_core.colors import color_stats, rgb_to_ycc
from nst_core.engine import stylize
from nst_core.errors import DeviceError, OptionError, TooLargeError
from nst_core.options import Options

pytestmark = pytest.mark.slow
SMALL = dict(size=64, min_size=32, iterations=12)


@pytest.fixture(autouse=True)
def _weights(real_weights):
    return real_weights


def run(content, style, **changes):
    seen = []
    result = stylize(content, [style], Options(**dict(SMALL, **changes)), progress=seen.append)
    return result, seen


def test_losses_fall_and_the_image_moves_away_from_the_content(content_image, style_image):
    result, seen = run(content_image, style_image, min_size=0)  # one scale: one descent
    losses = [p.loss for p in seen if p.phase == "stylizing"]
    assert losses[-1] < 0.5 * losses[0]
    assert result.size == (64, 48)
    diff = np.abs(images.to_array(result) - images.to_array(content_image)).mean()
    assert diff > 0.04  # visibly repainted, on a 0..1 scale


def test_progress_runs_coarse_to_fine_and_ends_complete(content_image, style_image):
    _, seen = run(content_image, style_image)
    assert seen[0].phase == "loading" and seen[-1].phase == "finishing"
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    scales = [p.scale for p in seen if p.phase == "stylizing"]
    assert scales == sorted(scales) and scales[-1] == seen[-1].scales > 1
    assert sum(1 for p in seen if p.phase == "stylizing") == SMALL["iterations"]
    assert all(p.eta_s is not None and p.eta_s >= 0 for p in seen if p.phase == "stylizing")


def test_same_seed_gives_the_same_pixels_and_another_seed_does_not(content_image, style_image):
    a, _ = run(content_image, style_image, init="noise", seed=3)
    b, _ = run(content_image, style_image, init="noise", seed=3)
    c, _ = run(content_image, style_image, init="noise", seed=4)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_arrays_in_give_float_arrays_out_at_the_requested_size(content_image, style_image):
    content = images.to_array(content_image)
    result = stylize(content, [images.to_array(style_image)],
                     Options(size=32, iterations=2, precision="fp32"))
    assert result.dtype == np.float32 and result.shape == (24, 32, 3)
    assert 0.0 <= result.min() and result.max() <= 1.0


def test_stopping_early_returns_an_image_of_the_final_size(content_image, style_image):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 3

    result = stylize(content_image, [style_image], Options(**SMALL), should_stop=stop)
    assert result.size == (64, 48) and len(calls) == 4


def test_preserve_colors_keeps_the_content_chroma(content_image, style_image):
    # Muted colours, as in most photos: a new luminance with the old chroma mostly fits in RGB.
    content = Image.blend(content_image, Image.new("RGB", content_image.size, "grey"), 0.6)
    result, _ = run(content, style_image, colors="luminance")
    rgb = images.to_array(result)
    got = rgb_to_ycc(rgb)[..., 1:]
    want = rgb_to_ycc(images.to_array(content))[..., 1:]
    # Where the new luminance with the old chroma fits in RGB (not clipped), the colour is kept.
    inside = ((rgb > 0.01) & (rgb < 0.99)).all(axis=2)
    assert inside.mean() > 0.25
    assert np.abs(got - want)[inside].max() < 0.01


def test_with_luminance_every_picture_handed_out_has_the_contents_colours(content_image,
                                                                         style_image):
    """Step images (--save-every) and live pictures look as the result will: the content's
    colours, not the grey the run paints in."""
    content = Image.blend(content_image, Image.new("RGB", content_image.size, "grey"), 0.6)
    pictures = []
    stylize(content, [style_image], Options(**dict(SMALL, colors="luminance")),
            on_image=lambda rgb, step: pictures.append(rgb), image_every=4)
    assert len(pictures) >= 3
    for rgb in pictures:
        want = rgb_to_ycc(images.resize_array(images.to_array(content), rgb.shape[1::-1]))
        inside = ((rgb > 0.01) & (rgb < 0.99)).all(axis=2)
        assert np.abs(rgb_to_ycc(rgb)[..., 1:] - want[..., 1:])[inside].max() < 0.01


def test_two_styles_blend_and_weights_must_match(content_image, style_image):
    result = stylize(content_image, [style_image, content_image],
                     Options(size=32, iterations=2, style_blend=(1.0, 2.0)))
    assert result.size == (32, 24)
    with pytest.raises(OptionError, match="style_blend has 2 weights for 1 style"):
        stylize(content_image, [style_image], Options(size=32, style_blend=(1.0, 2.0)))


def test_adam_and_average_pooling_also_run(content_image, style_image):
    result, seen = run(content_image, style_image, optimizer="adam", pooling="avg",
                       learning_rate=5.0)
    losses = [p.loss for p in seen if p.phase == "stylizing" and p.scale == seen[-1].scales]
    assert losses[-1] < losses[0] and result.size == (64, 48)


def test_a_size_beyond_the_memory_is_refused_before_any_work_naming_one_that_fits(
        content_image, style_image):
    seen = []
    with pytest.raises(TooLargeError, match=r"does not fit in 2.0 GB.*at most about (\d+) px"
                       ) as refused:
        stylize(content_image, [style_image], Options(size=16384, max_memory=2),
                progress=seen.append)
    assert not seen  # refused while planning: nothing loaded, nothing run
    largest = int(refused.value.message.split("at most about ")[1].split()[0])
    assert 1000 < largest < 16384
    # The size it names does fit: the run plans, starts and is stopped at once.
    stylize(content_image, [style_image], Options(size=largest, max_memory=2),
            should_stop=lambda: True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_an_absent_cuda_device_says_so(content_image, style_image):
    with pytest.raises(DeviceError, match="'cuda' asked for"):
        stylize(content_image, [style_image], Options(size=32, device="cuda"))


def test_style_scale_sizes_the_style_with_the_output_but_never_past_its_own_size():
    from nst_core.engine import style_size

    assert style_size(1000, 800, 512) == (512, 410)  # the output's long side
    assert style_size(1000, 800, 512, scale=0.5) == (256, 205)  # smaller strokes
    assert style_size(1000, 800, 6000) == (1000, 800)  # a big output: the style's own size
    assert style_size(1000, 800, 6000, scale=2.0, upsample=True) == (12000, 9600)
    assert style_size(4000, 100, 64, scale=0.1) == (640, 16)  # a panorama: VGG's 16 px minimum


def test_style_scale_reaches_the_engine(content_image, style_image):
    a, _ = run(content_image, style_image, min_size=0, style_scale=0.5)
    b, _ = run(content_image, style_image, min_size=0, style_scale=1.0)
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_histogram_colours_keep_the_contents_palette(content_image, style_image):
    """--colors histogram paints with the content's palette: the result's mean colour and colour
    covariance are much closer to the content's than with the style's own colours (saturated
    red and blue stripes on a muted photo; measured: 4x closer)."""
    content = Image.blend(content_image, Image.new("RGB", content_image.size, "grey"), 0.5)
    want_mean, want_cov = color_stats(images.to_array(content))
    mean_off, cov_off = {}, {}
    for colors in ("style", "histogram"):
        result, _ = run(content, style_image, colors=colors)
        mean, cov = color_stats(images.to_array(result))
        mean_off[colors] = np.abs(mean - want_mean).max()
        cov_off[colors] = np.abs(cov - want_cov).max()
    assert mean_off["histogram"] < 0.5 * mean_off["style"]
    assert cov_off["histogram"] < 0.5 * cov_off["style"]


def test_w2_style_loss_runs_and_lowers_its_objective(content_image, style_image):
    # 96 px: at 64 px plain L-BFGS overshoots on the first steps with either loss (the engine
    # then recovers with Adam), which would leave few iterations to measure the descent.
    result, seen = run(content_image, style_image, size=96, min_size=0, style_loss="w2")
    losses = [p.loss for p in seen if p.phase == "stylizing"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]  # measured: 0.48
    assert result.size == (96, 72)
    diff = np.abs(images.to_array(result) - images.to_array(content_image.resize((96, 72)))).mean()
    assert diff > 0.04  # visibly repainted, on a 0..1 scale


def test_an_overlong_lbfgs_step_is_cut_back_and_the_first_is_a_few_pixels():
    """Plain L-BFGS's unit step can throw pixels thousands of units out of range (a blow-up
    and a restart); _bound_step cuts it where it lands, and records the shorter step so the
    next curvature pair stays true. A scale's first step moves the most-moved pixel
    FIRST_STEP units, not the 1/|g| sliver torch takes."""
    from nst_core import engine

    target = torch.zeros(1, 3, 8, 8)
    x = torch.full((1, 3, 8, 8), 100.0, requires_grad=True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=5, tolerance_grad=-1,
                            tolerance_change=-1)

    def closure():
        opt.zero_grad()
        loss = 1e-3 * (x - target).square().sum()  # the unit step overshoots 500x
        loss.backward()
        return loss

    before = x.detach().clone()
    opt.step(closure)
    engine._bound_step(opt, x)
    assert float((x.detach() - before).abs().max()) == pytest.approx(engine.FIRST_STEP)
    for _ in range(3):
        before = x.detach().clone()
        opt.step(closure)
        engine._bound_step(opt, x)
        moved = float((x.detach() - before).abs().max())
        assert moved <= engine.MAX_STEP + 1e-3
        state = opt.state[x]
        assert float((state["d"] * state["t"]).abs().max()) == pytest.approx(moved, rel=1e-4)
    assert float(x.detach().abs().max()) < 100.0  # it still went downhill
