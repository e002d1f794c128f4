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


# -- the W2 style loss --------------------------------------------------------------------------


def w2_of(features, target_features):
    kind = losses.W2
    return kind.loss(losses.style_stats(features, kind),
                     kind.target(losses.style_stats(target_features, kind)))


def test_w2_is_zero_for_identical_statistics_and_positive_otherwise():
    f = torch.rand(1, 6, 8, 9) * 50
    assert abs(w2_of(f, f).item()) < 1e-9 * f.square().mean().item()
    # The same statistics from another arrangement of the same features: still zero.
    assert abs(w2_of(f.flip(-1).transpose(-1, -2), f).item()) < 1e-9 * f.square().mean().item()
    shifted, scaled = f + 3.0, f * 1.5
    shuffled = f.clone()  # channel 0's values moved around: only the cross-covariances change
    shuffled[:, 0] = f[:, 0].flatten()[torch.randperm(72)].view(8, 9)
    for other in (shifted, scaled, shuffled):
        assert w2_of(other, f).item() > 1e-3


def test_w2_of_a_shift_is_its_squared_length_per_channel():
    f = torch.rand(1, 4, 6, 6, dtype=torch.float64) * 10
    shift = torch.tensor([1.0, 2.0, 0.0, 2.0]).view(1, 4, 1, 1)
    assert w2_of(f + shift, f).item() == pytest.approx(losses.W2.SCALE * 9.0 / 4, rel=1e-5)


def test_w2_does_not_depend_on_resolution_for_the_same_texture():
    tile = torch.rand(1, 8, 4, 4)
    target = torch.rand(1, 8, 5, 5)
    assert w2_of(tile, target).item() == pytest.approx(
        w2_of(tile.repeat(1, 1, 4, 4), target).item(), rel=1e-5)


def test_w2_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(0)
    kind = losses.W2
    target = kind.target(kind.stats(torch.rand(40, 5, generator=gen) * 4, 40))
    stats = [s.double().requires_grad_(True)
             for s in kind.stats(torch.rand(30, 5, generator=gen) * 3 + 1, 30)]
    assert torch.autograd.gradcheck(lambda m, s: kind.loss((m, s), target), stats)


def test_w2_gradient_matches_finite_differences_for_flat_and_dead_channels():
    """A flat style (zero covariance) and a channel that is zero everywhere, as dead ReLUs are:
    the gradient is finite and right (the EPS on the diagonal keeps the roots away from 0)."""
    kind = losses.W2
    flat_style = kind.target(kind.stats(torch.full((20, 4), 2.0), 20))
    features = torch.rand(25, 4) * 3
    features[:, 2] = 0
    stats = [s.double().requires_grad_(True) for s in kind.stats(features, 25)]
    value = kind.loss(stats, flat_style)
    assert torch.isfinite(value) and value > 0
    assert torch.autograd.gradcheck(lambda m, s: kind.loss((m, s), flat_style), stats)


def test_matrix_square_root_and_its_gradient():
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(6, 6, generator=gen, dtype=torch.float64)
    a = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64)
    root = losses.sqrtm(a)
    assert torch.allclose(root @ root, a, atol=1e-10) and torch.allclose(root, root.T)
    assert torch.autograd.gradcheck(losses.sqrtm, (a.requires_grad_(True),))


@pytest.mark.parametrize("kind", [losses.GRAM, losses.W2], ids=["gram", "w2"])
def test_the_block_seed_is_the_feature_gradient(kind):
    """seed(): the per-position gradient that blockwise.py back-propagates, from the whole
    image's dL/dstats, equals autograd's gradient of the loss of the statistics."""
    gen = torch.Generator().manual_seed(2)
    flat = (torch.rand(60, 7, generator=gen) * 5).requires_grad_(True)
    target = kind.target(kind.stats(torch.rand(50, 7, generator=gen) * 4, 50))
    stats = kind.stats(flat, 60)
    expected = torch.autograd.grad(kind.loss(stats, target), flat)[0]
    leaves = [s.detach().requires_grad_(True) for s in stats]
    grads = torch.autograd.grad(kind.loss(leaves, target), leaves)
    seed = kind.seed(flat.detach(), tuple(s.detach() for s in stats), grads, 60)
    assert torch.allclose(seed, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())


def test_w2_statistics_of_two_styles_blend_as_their_mixture():
    """Blending adds the statistics with their weights: for W2 that is the Gaussian fit of the
    two feature sets pooled, not an average of their covariances."""
    kind = losses.W2
    a, b = torch.rand(30, 4) * 2, torch.rand(30, 4) * 5 + 1
    blended = [0.5 * x + 0.5 * y for x, y in zip(kind.stats(a, 30), kind.stats(b, 30))]
    pooled = kind.stats(torch.cat([a, b]), 60)
    for x, y in zip(blended, pooled):
        assert torch.allclose(x, y, rtol=1e-5)
    target = kind.target(blended)
    assert abs(kind.loss(pooled, target).item()) < 1e-6
