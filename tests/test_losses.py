"""Gram matrices and the three losses."""

import pytest
import torch

from nst_core import losses


def test_gram_is_normalised_by_channels_and_positions():
    f = torch.ones(1, 4, 3, 5)
    assert torch.allclose(losses.gram(f), torch.full((4, 4), 15 / (4 * 15)))


def test_gram_does_not_depend_on_resolution_for_the_same_texture():
    tile = torch.rand(1, 8, 4, 4)
    small, big = tile, tile.repeat(1, 1, 4, 4)
    assert torch.allclose(losses.gram(small), losses.gram(big), atol=1e-6)


def test_gram_matches_the_textbook_formula_and_accepts_channels_last():
    f = torch.rand(1, 6, 7, 9)
    flat = f.reshape(6, -1)
    expected = flat @ flat.T / f.numel()
    assert torch.allclose(losses.gram(f), expected, atol=1e-6)
    assert torch.allclose(losses.gram(f.contiguous(memory_format=torch.channels_last)), expected,
                          atol=1e-6)


def test_gram_of_low_precision_features_is_fp32_and_close_to_the_fp32_gram():
    f = torch.rand(1, 64, 48, 64) * 100
    exact = losses.gram(f)
    for dtype in (torch.bfloat16, torch.float16):
        g = losses.gram(f.to(dtype))
        assert g.dtype == torch.float32
        assert (g - exact).norm() / exact.norm() < 1e-2
    big = torch.full((1, 8, 64, 64), 1000.0).half()  # sums of 4096 x 1e6: beyond fp16's range
    assert torch.isfinite(losses.gram(big)).all()


def test_content_and_style_losses_are_zero_at_the_target_and_positive_elsewhere():
    f = torch.rand(1, 5, 6, 6)
    assert losses.content_loss(f, f) == 0
    assert losses.style_loss(f, losses.gram(f)) == 0
    g = f + 0.1 * torch.rand_like(f)
    assert losses.content_loss(g, f) > 0 and losses.style_loss(g, losses.gram(f)) > 0


def test_content_loss_is_the_mean_squared_error():
    f, t = torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), 3.0)
    assert losses.content_loss(f, t).item() == pytest.approx(9.0)


def test_tv_loss_is_zero_on_flat_images_and_counts_neighbour_differences():
    assert losses.tv_loss(torch.full((1, 3, 8, 8), 7.0)) == 0
    step = torch.zeros(1, 1, 3, 3)
    step[..., :, 2] = 2.0  # one vertical edge: 2 rows (of 2 compared) see a jump of 2
    assert losses.tv_loss(step).item() == pytest.approx(0.5 * 2 * 4)


def test_gram_gradient_matches_autograd_of_the_plain_formula():
    f = torch.rand(1, 5, 6, 7, requires_grad=True)
    target = torch.rand(5, 5)
    ours = torch.autograd.grad(losses.style_loss(f, target), f)[0]
    flat = f.reshape(5, -1)
    plain = torch.autograd.grad(((flat @ flat.T / f.numel() - target) ** 2).mean(), f)[0]
    assert torch.allclose(ours, plain, atol=1e-6)
