"""The block-wise objective equals the whole-image one: the proof that block runs have no seams.

With blocks forced small (several in each direction, borders that are not multiples of 16), the
loss and the gradient of each term, and of all together, must match the whole image's in fp32."""

import contextlib

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core import blockwise, losses, weights
from nst_core.engine import RANGE_WEIGHT
from nst_core.options import Options
from nst_core.vgg import VGG19

from .conftest import picture, stripes

pytestmark = pytest.mark.slow
STYLE = Options().style_layers
CONTENT = Options().content_layers


@pytest.fixture(scope="module")
def net(real_weights):
    return VGG19(dict.fromkeys(CONTENT + STYLE)).load_weights(weights.load())


@pytest.fixture(scope="module")
def problem(net):
    """An image in 0..255 (a little out of range, so the range penalty has work), its targets."""
    h, w = 200, 232  # not multiples of 16: the last blocks have ragged edges
    content = torch.from_numpy(np.asarray(picture(w, h, seed=1), np.float32)).permute(2, 0, 1)
    content = content[None].contiguous()
    style = torch.from_numpy(np.asarray(stripes(96, 80), np.float32)).permute(2, 0, 1)[None]
    x = (content + torch.randn(content.shape, generator=torch.Generator().manual_seed(0)) * 30)
    targets = blockwise.content_targets(net, content, CONTENT, contextlib.nullcontext, None)
    grams = blockwise.style_grams(net, style.contiguous(), STYLE, contextlib.nullcontext, None)
    stats = blockwise.style_stats(net, style.contiguous(), STYLE, contextlib.nullcontext, None,
                                  kind=losses.W2)
    return x, targets, grams, {k: losses.W2.target(st) for k, st in stats.items()}


def objective(net, problem, core, style_loss="gram", **weights_):
    _, targets, grams, w2_targets = problem
    values = dict(content_weight=5.0, style_weight=100.0, tv_weight=1e-3,
                  range_weight=RANGE_WEIGHT) | weights_
    if values.pop("hold", None):
        values["hold"] = hold_term(problem[0])
    styles = grams if style_loss == "gram" else w2_targets
    return blockwise.Objective(net, targets, styles, layer_weights=dict.fromkeys(STYLE, 1.0),
                               autocast=contextlib.nullcontext, core=core,
                               style_loss=losses.STYLE_LOSSES[style_loss], **values)


TERMS = {
    "content": dict(style_weight=0.0, tv_weight=0.0, range_weight=0.0),
    "style": dict(content_weight=0.0, tv_weight=0.0, range_weight=0.0),
    "tv": dict(content_weight=0.0, style_weight=0.0, range_weight=0.0),
    "range": dict(content_weight=0.0, style_weight=0.0, tv_weight=0.0),
    "hold": dict(content_weight=0.0, style_weight=0.0, tv_weight=0.0, range_weight=0.0,
                 hold="yes"),
    "all": dict(hold="yes"),
}


def hold_term(x: torch.Tensor) -> tuple:
    """--sequence's term: keep to a picture (here the image shifted) where a mask says."""
    mask = (torch.arange(x.shape[-1]) % 7 > 1).float().expand(1, 1, *x.shape[-2:])
    return 1e-2, x.roll(3, dims=-1), mask.contiguous()


@pytest.mark.parametrize("term", TERMS)
def test_blockwise_loss_and_gradient_equal_the_whole_images(net, problem, term):
    x = problem[0]
    whole_loss, whole_grad = objective(net, problem, None, **TERMS[term])(x.clone())
    core = 48  # 5 x 5 blocks on 200x232
    assert len(blockwise.blocks(*x.shape[-2:], core)) == 25
    loss, grad = objective(net, problem, core, **TERMS[term])(x.clone())
    assert whole_loss > 0
    assert abs(loss - whole_loss) <= 1e-4 * whole_loss
    rel = (grad - whole_grad).norm() / whole_grad.norm()
    assert rel <= 1e-3, f"gradient differs by {float(rel):.2e} (relative L2)"


@pytest.mark.parametrize("term", ["style", "all"])
def test_blockwise_w2_loss_and_gradient_equal_the_whole_images(net, problem, term):
    """The W2 style loss block by block (its statistics summed, each block's backward seeded
    with (2 D (f - mu) + g) / N) equals autograd through the whole image's W2 (measured: loss
    2e-8, gradient 8e-7 relative; the Gram's are alike)."""
    x = problem[0]
    whole_loss, whole_grad = objective(net, problem, None, "w2", **TERMS[term])(x.clone())
    loss, grad = objective(net, problem, 48, "w2", **TERMS[term])(x.clone())
    assert whole_loss > 0
    assert abs(loss - whole_loss) <= 1e-6 * whole_loss
    rel = (grad - whole_grad).norm() / whole_grad.norm()
    assert rel <= 1e-5, f"gradient differs by {float(rel):.2e} (relative L2)"


def test_a_margin_short_of_the_receptive_field_is_not_exact(net, problem):
    """The check above can fail: blocks whose margin is too small give another gradient."""
    x = problem[0]
    _, whole_grad = objective(net, problem, None, **TERMS["style"])(x.clone())
    obj = objective(net, problem, 48, **TERMS["style"])
    obj.margin = blockwise.MARGIN - 64
    _, grad = obj(x.clone())
    assert (grad - whole_grad).norm() / whole_grad.norm() > 1e-2


def test_the_margin_covers_the_deepest_layers_reach():
    assert blockwise.margin_for(STYLE) == blockwise.MARGIN == 80
    assert blockwise.margin_for(("relu4_2",)) == 48
    assert blockwise.margin_for(("relu1_1",)) == 16


def test_blockwise_targets_equal_the_whole_images(net, problem):
    x = problem[0]
    whole = blockwise.content_targets(net, x, CONTENT + STYLE, contextlib.nullcontext, None)
    parts = blockwise.content_targets(net, x, CONTENT + STYLE, contextlib.nullcontext, 32)
    for k in whole:
        assert torch.allclose(parts[k], whole[k], rtol=1e-4, atol=1e-3 * whole[k].abs().max())
    g_whole = blockwise.style_grams(net, x, STYLE, contextlib.nullcontext, None)
    g_parts = blockwise.style_grams(net, x, STYLE, contextlib.nullcontext, 32)
    for k in STYLE:
        assert torch.allclose(g_parts[k], g_whole[k], rtol=1e-4, atol=1e-5 * g_whole[k].abs().max())


def test_a_stop_request_ends_an_evaluation_between_blocks(net, problem):
    calls = []
    obj = objective(net, problem, 48)
    obj.should_stop = lambda: calls.append(1) or len(calls) > 3
    with pytest.raises(blockwise.Stopped):
        obj(problem[0].clone())
    assert len(calls) == 4


# -- end to end: a run forced into blocks paints the same picture --------------------------------


def objective_of(path, content, style, net):
    """The engine's objective (fp32, classic weights) of a saved result."""
    from nst_core import images

    def tensor(img):
        return torch.from_numpy(images.to_array(img)).permute(2, 0, 1)[None].contiguous() * 255

    result = tensor(images.load_image(path))
    h, w = result.shape[-2:]
    c = tensor(content.resize((w, h)))
    sw, sh = images.fit_size(*style.size, min(max(w, h), max(style.size)))
    s = tensor(style.resize((sw, sh)))
    targets = blockwise.content_targets(net, c, CONTENT, contextlib.nullcontext, None)
    grams = blockwise.style_grams(net, s, STYLE, contextlib.nullcontext, None)
    loss, _ = blockwise.Objective(
        net, targets, grams, content_weight=5.0, style_weight=100.0,
        layer_weights=dict.fromkeys(STYLE, 1.0), tv_weight=1e-3, range_weight=RANGE_WEIGHT,
        autocast=contextlib.nullcontext)(result)
    return loss


def test_a_run_forced_into_blocks_paints_the_whole_images_picture(tmp_path, net):
    """768 px in fp32: --max-memory 1 makes the last scale run in blocks; the picture and its
    objective match the whole-image run's, and no row or column at a block edge stands out."""
    from tests.test_cli import nst

    content, style = picture(768, 576, seed=2), stripes(256, 256)
    content.save(tmp_path / "c.png")
    style.save(tmp_path / "s.png")
    common = ["--size", "768", "--min-size", "384", "--iterations", "6", "--precision", "fp32",
              "-q", "--optimizer", "lbfgs"]
    runs = {}
    for name, extra in (("whole", []), ("blocks", ["--max-memory", "1"])):
        out = tmp_path / f"{name}.png"
        done = nst("-v", "stylize", tmp_path / "c.png", tmp_path / "s.png", "-o", out,
                   *common, *extra)
        assert done.returncode == 0, done.stderr
        runs[name] = (out, done.stderr)
    assert "768x576:2 (whole" in runs["whole"][1]
    core = int(runs["blocks"][1].split("768x576:2 (blocks of ")[1].split()[0].rstrip(","))
    assert core < 576  # several blocks in each direction
    for name in runs:  # the same optimiser: only the path differs
        assert "768x576:2 (" in runs[name][1] and ", lbfgs5, " in runs[name][1], runs[name][1]

    a = np.asarray(Image.open(runs["whole"][0]), np.float32) / 255
    b = np.asarray(Image.open(runs["blocks"][0]), np.float32) / 255
    # L-BFGS can amplify fp32 rounding at a few pixels; the picture as a whole is the same.
    assert np.abs(a - b).mean() < 2e-3 and np.quantile(np.abs(a - b), 0.999) < 0.02
    ja, jb = (objective_of(runs[k][0], content, style, net) for k in ("whole", "blocks"))
    assert abs(ja - jb) <= 0.01 * ja

    # A seam would show at the rows/columns where blocks meet (cores tile the image from 0): their
    # neighbour difference would stand out from the other rows'. (L-BFGS moves every row a
    # little, the image's own border most; that is not a seam.)
    for axis in (0, 1):
        edge_a = np.abs(np.diff(a, axis=axis)).mean(axis=(1 - axis, 2))
        edge_b = np.abs(np.diff(b, axis=axis)).mean(axis=(1 - axis, 2))
        change = np.abs(edge_b - edge_a)
        seams = [i for edge in range(core, a.shape[axis], core) for i in (edge - 2, edge - 1, edge)]
        assert change[seams].max() < np.median(change) + 2e-3, (seams, change[seams])

