"""The plan a run follows, decided before any work: which scales, at which layers, how many
iterations, the whole image or blocks, and which optimiser. A tight memory budget may cost time
(smaller blocks), never the preset's optimiser."""

from __future__ import annotations

import pytest
import torch

from nst_core import budget
from nst_core.errors import TooLargeError
from nst_core.options import Options

GB = budget.GB
CPU = torch.device("cpu")
STYLE = (1024, 811)


def plan(options, size, memory_gb, dtype=torch.bfloat16):
    return budget.plan_run(options, size, [STYLE], dtype, int(memory_gb * GB), CPU)[1]


@pytest.mark.parametrize("memory_gb", [16, 6, 3, 2, 1.5, 1.2])
def test_a_tight_budget_keeps_the_presets_optimiser_and_history(memory_gb):
    """The issue's pair: 1536x1024 content at 1024 px, draft, fp32. Every scale keeps L-BFGS
    with the history it has in 16 GB; only the path (whole or blocks) changes."""
    options = Options(size=1024, preset="draft", precision="fp32")
    roomy = plan(options, (1536, 1024), 16, torch.float32)
    tight = plan(options, (1536, 1024), memory_gb, torch.float32)
    assert [(s.plan.optimizer, s.plan.history) for s in tight] == [
        (s.plan.optimizer, s.plan.history) for s in roomy]
    assert all(s.plan.optimizer == "lbfgs" for s in tight)
    for s in tight:
        assert s.plan.need <= memory_gb * GB


def test_where_no_history_fits_beside_a_block_the_run_is_refused_or_uses_adam():
    """Below what L-BFGS's shortest history needs, Adam (2 image-sized vectors) paints rather
    than nothing; below even that, one error names a size that fits."""
    options = Options(size=None, preset="draft", precision="fp32")
    try:
        scales = plan(options, (6000, 4000), 0.9, torch.float32)
    except TooLargeError as e:
        assert "6000x4000" in e.message and "memory" in e.message
    else:
        assert scales[-1].plan.core is not None


def test_the_fastest_fitting_path_is_chosen_not_the_largest(monkeypatch):
    """If big regions cost more per pixel (memory traffic), a smaller block beats the whole
    image even where the whole image fits."""
    options = Options(size=2048, max_memory=16)
    whole = plan(options, (2048, 1365), 16)[-1]
    assert whole.plan.core is None
    monkeypatch.setattr(budget, "PASS_COST", ((64 * 64, 1.3), (512 * 384, 1.0),
                                               (1024 * 1024, 1.0), (4 << 20, 3.0)))
    faster = plan(options, (2048, 1365), 16)[-1]
    assert faster.plan.core is not None and faster.plan.core < 2048
    assert faster.plan.cost_factor(2048, 1365, 80) < budget.pass_cost(2048 * 1365)


@pytest.mark.parametrize("size, detail", [
    ((1232, 816), [(1232, 31)]),
    ((2448, 1632), [(1224, 28), (1731, 15), (2448, 8)]),
    ((6000, 4000), [(1061, 35), (1500, 18), (2121, 9), (3000, 5), (4243, 4), (6000, 4)]),
])
def test_the_default_schedule_for_1_4_and_24_mp(size, detail):
    """Coarse to fine by sqrt(2) from about 128 px, every layer at every scale, L-BFGS up to
    1024 px; above it (the detail scales) Adam, with as many pixel-iterations as at 1024 px and
    at least 4; in 6 GB the largest scales go into blocks."""
    scales = plan(Options(size=None, max_memory=6), size, 6)
    assert scales[0].size[0] in range(128, 160) and scales[-1].size == size
    assert [(s.size[0], s.iterations) for s in scales if max(s.size) > 1024] == detail
    assert all(s.iterations >= 30 for s in scales if max(s.size) <= 1024)
    for s in scales:
        assert s.plan.need <= 6 * GB
        assert s.plan.optimizer == ("adam" if max(s.size) > 1024 else "lbfgs")
    assert scales[0].plan.path == "whole"
    assert (scales[-1].plan.path == "blocks") == (size != (1232, 816))


def test_lbfgs_at_the_detail_scales_is_one_option_away_and_keeps_their_iterations():
    """--detail-optimizer lbfgs: the same scales and iterations, L-BFGS with the history that
    fits (in 6 GB a 24 MP layer's last scale cannot hold even 5 pairs: Adam paints it)."""
    options = Options(size=None, detail_optimizer="lbfgs", max_memory=6)
    assert options.schedule(2448) == Options(size=None).schedule(2448)
    scales = plan(options, (2448, 1632), 6)
    assert [s.plan.optimizer for s in scales[-3:]] == ["lbfgs"] * 3
    assert plan(options, (6000, 4000), 6)[-1].plan.optimizer == "adam"
