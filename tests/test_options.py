"""Option validation and the coarse-to-fine schedule."""

import math

import pytest

from nst_core.errors import OptionError
from nst_core.options import PRESETS, Options


def test_defaults_are_the_standard_preset_at_512px():
    o = Options()
    assert (o.preset, o.size, o.seed) == ("standard", 512, 0)
    assert o.resolved("content_weight") == 5.0 and o.resolved("style_weight") == 100.0
    assert o.content_layers == ("relu4_2",)
    assert o.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def test_classic_preset_is_jcjohnson_neural_style():
    o = Options(preset="classic")
    assert o.schedule(512) == [(512, 1000)]
    assert (o.resolved("optimizer"), o.resolved("init"), o.resolved("precision")) == \
        ("lbfgs", "noise", "fp32")
    assert (o.resolved("content_weight"), o.resolved("style_weight"),
            o.resolved("tv_weight")) == (5.0, 100.0, 1e-3)


def test_explicit_values_override_the_preset():
    o = Options(preset="classic", init="content", style_weight=50.0)
    assert o.resolved("init") == "content" and o.resolved("style_weight") == 50.0


def test_schedule_grows_by_sqrt2_from_128_and_works_most_where_pixels_are_cheap():
    schedule = Options().schedule(512)
    sizes = [s for s, _ in schedule]
    assert sizes[0] == 128 and sizes[-1] == 512
    for a, b in zip(sizes, sizes[1:]):
        assert b / a == pytest.approx(math.sqrt(2), rel=0.02)
    # Most iterations run below the output size, where an iteration costs a fraction.
    assert sum(n for s, n in schedule if s < 512) > 2 * schedule[-1][1]


def test_iterations_option_sets_the_exact_total():
    for total in (1, 2, 5, 6, 7, 100, 1234):
        schedule = Options(iterations=total).schedule(512)
        assert sum(n for _, n in schedule) == total
        assert schedule[-1][0] == 512 and all(n >= 1 for _, n in schedule)


def test_size_keep_uses_the_content_size():
    assert Options(size=None, preset="classic").schedule(777) == [(777, 1000)]


@pytest.mark.parametrize("changes, words", [
    (dict(style_weight=-1.0), "style_weight must be at least 0"),
    (dict(content_weight="abc"), "content_weight must be a number"),
    (dict(tv_weight=float("nan")), "tv_weight must be a finite number"),
    (dict(iterations=0), "iterations must be at least 1"),
    (dict(size=8), "size must be at least 16"),
    (dict(size=100000), "size must be at most 16384, not 100000"),
    (dict(preset="best"), "preset must be one of draft, standard, high, classic"),
    (dict(device="gpu"), "unknown device 'gpu'"),
    (dict(precision="fp8"), "precision must be one of"),
    (dict(style_layers=("relu9_9",)), "vgg19 has no layer .relu9_9."),
    (dict(style_layer_weights=(1.0,)), "style_layer_weights needs 5 weights"),
    (dict(style_blend=(0.0, 0.0)), "must not all be zero"),
    (dict(seed=-3), "seed must be at least 0"),
    (dict(init="no-such-picture.png"), "init image no-such-picture.png does not exist"),
])
def test_bad_values_name_the_option(changes, words):
    """In words, and as the error's field, which front ends point at without reading the
    message (the web page's form, the GIMP dialog's labels)."""
    with pytest.raises(OptionError, match=words.replace("(", r"\(")) as e:
        Options(**changes)
    assert e.value.field == next(iter(changes))


def test_from_dict_rejects_unknown_names_and_accepts_lists():
    with pytest.raises(OptionError, match="unknown option.*colour"):
        Options.from_dict({"colour": True})
    o = Options.from_dict({"style_layers": ["relu1_1", "relu2_1"], "size": None})
    assert o.style_layers == ("relu1_1", "relu2_1") and o.size is None
    assert Options.from_dict(o.to_dict()) == o


def test_every_preset_is_valid():
    for name in PRESETS:
        assert Options(preset=name).schedule(512)


def test_keras_layer_names_and_the_vgg16_recipe_as_published():
    """The VGG16 recipe (content block2_conv2; style block1_conv2 ... block5_conv3) is written
    as it is published and means our relu names."""
    o = Options(model="vgg16", content_layers=("block2_conv2",),
                style_layers=("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3",
                              "block5_conv3"))
    assert o.content_layers == ("relu2_2",)
    assert o.style_layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    with pytest.raises(OptionError, match="vgg16 has no layer 'relu5_4'"):
        Options(model="vgg16", style_layers=("block5_conv4",))


def test_preserve_colors_is_an_alias_of_colors_luminance():
    assert Options.from_dict({"preserve_colors": True}).colors == "luminance"
    assert Options.from_dict({"preserve_colors": False}).colors == "style"
    assert Options.from_dict({"preserve_colors": True, "colors": "style"}).colors == "luminance"
    assert Options.from_dict({"preserve_colors": True, "colors": "histogram"}).colors == \
        "histogram"
    with pytest.raises(OptionError, match="preserve_colors"):
        Options.from_dict({"preserve_colors": "yes"})


def test_every_option_type_is_one_the_checks_understand():
    """The type checks read each field's annotation: a new kind of annotation must be taught
    to them, not fail at run time as an internal error."""
    from dataclasses import fields

    from nst_core import options

    for f in fields(Options):
        options._check_type(getattr(Options(), f.name), f.name, f.type)  # no KeyError


def test_every_style_loss_has_a_cost_in_the_time_estimate():
    from nst_core import estimate
    from nst_core.options import STYLE_LOSSES

    assert set(estimate.STYLE_LOSS_COST) == set(STYLE_LOSSES)


def test_every_numeric_option_has_a_finite_maximum_and_extremes_are_one_option_error():
    """1e308, -1e308, inf and nan for every numeric option: one OptionError naming it (no
    OverflowError later, no run with a loss that cannot be finite)."""
    import dataclasses
    import math

    from nst_core.errors import OptionError
    from nst_core.options import Options

    numeric = [f for f in dataclasses.fields(Options)
               if any(t in f.type for t in ("int", "float"))]
    assert len(numeric) >= 14
    for f in numeric:
        assert math.isfinite(f.metadata["maximum"]), f.name
        for value in (1e308, -1e308, math.inf, math.nan):
            given = (value,) * 5 if f.type.startswith("tuple") else value
            with pytest.raises(OptionError) as e:
                Options(**{f.name: given})
            assert e.value.message.startswith(f.name), (f.name, value, e.value.message)
            assert e.value.field == f.name


@pytest.mark.parametrize("flag", ["--strength 1e30", "--style-weight 1e300", "--tv-weight 1e308",
                                  "--max-memory 1e308", "--seed 1e308", "--size inf",
                                  "--style-blend nan"])
def test_cli_extremes_are_exit_2_and_one_line(flag, tmp_path):
    import subprocess
    import sys

    from tests.worker_client import ROOT

    r = subprocess.run([sys.executable, "-m", "nst_core", "stylize", "a.png", "b.png", "-o",
                        str(tmp_path / "o.png"), *flag.split()], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines()  # argparse's usage lines aside
              if line.strip() and not line.startswith((" ", "usage:"))]
    assert len(errors) == 1, r.stderr
