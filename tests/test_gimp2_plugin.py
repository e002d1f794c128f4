"""The GIMP 2.10 plug-in (gimp_plugin/neural_style_gimp2.py) against the fake gimpfu.

Three layers of tests: registration and Python 2.7 compatibility; the plug-in's logic with
nst_bridge.run replaced by a stand-in that checks what it is sent (fast); and real runs
through the bridge: its error paths need no engine, the end-to-end runs need the VGG19
weights (marked slow; missing weights fail the test).
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_PATH = ROOT / "gimp_plugin" / "neural_style_gimp2.py"
FAKES = Path(__file__).resolve().parent / "fakes"
PROC = "python-fu-neural-style"
PARAM_NAMES = ["image", "drawable", "style-file", "style-file-2", "style-weights", "preset",
               "size-mode", "size", "style-scale", "strength", "colors", "model", "style-loss",
               "device", "seed", "max-memory", "auto-minutes"]


@pytest.fixture(scope="module")
def modules():
    """(fake gimpfu, the plug-in module), imported the way GIMP 2.10 would run it."""
    saved = sys.modules.pop("gimpfu", None)
    sys.path.insert(0, str(FAKES))
    try:
        import gimpfu

        spec = importlib.util.spec_from_file_location("neural_style_gimp2", PLUGIN_PATH)
        plugin = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(plugin)
        yield gimpfu, plugin
    finally:
        sys.path.remove(str(FAKES))
        sys.modules.pop("gimpfu", None)
        if saved is not None:
            sys.modules["gimpfu"] = saved


@pytest.fixture
def fu(modules, monkeypatch):
    gimpfu, _ = modules
    gimpfu.reset()
    monkeypatch.delenv("NST_CORE_COMMAND", raising=False)
    return gimpfu


@pytest.fixture
def plugin(modules):
    return modules[1]


@pytest.fixture
def style_png(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    stripes = np.zeros((40, 40, 3), np.uint8)
    stripes[:, ::4] = (230, 40, 20)
    stripes[::5] = (20, 60, 220)
    stripes = np.clip(stripes + rng.integers(0, 30, stripes.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "stripes.png"
    Image.fromarray(stripes).save(path)
    return str(path)


def gradient(height, width, channels):
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)),
              ((x + y) * 127 // max(width + height - 2, 1))][:min(channels, 3)]
    if channels in (1, 2):
        planes = [(x * 3 + y * 5) % 256]
    if channels in (2, 4):
        planes.append(np.full_like(x, 255))
    return np.stack(planes, -1).astype(np.uint8)


def run(fu, image, layer, style, **values):
    """Run the procedure the way a script or "Repeat" does (RUN_NONINTERACTIVE)."""
    args = dict(style_file=style, style_file_2="", style_weights="", preset=0, size_mode=2,
                size=48, style_scale=1.0, strength=1.0, colors=0, model=0, style_loss=0,
                device=1, seed=0, max_memory=0.0, auto_minutes=10.0)
    # draft, custom 48 px, CPU: about a second with the real core
    args.update(values)
    return fu.run_noninteractive(PROC, image, layer,
                                 *[args[name.replace("-", "_")] for name in PARAM_NAMES[2:]])


def assert_untouched(fu, image, before):
    """No layer added, no undo group left open (a refusal before any work opens none)."""
    assert [layer.name for layer in image.layers] == before
    names = fu.state.names()
    assert names.count("pdb.gimp_image_undo_group_start") in (0, 1)
    assert names.count("pdb.gimp_image_undo_group_start") == names.count(
        "pdb.gimp_image_undo_group_end")
    assert image.fake_undo_depth == 0
    assert "pdb.gimp_image_insert_layer" not in names


# -- registration ----------------------------------------------------------------------------------


def test_registration_matches_the_contract(fu, plugin):
    import nst_options
    import nst_protocol

    proc = fu.state.registered[PROC]
    assert proc["menu"] == "<Image>/Filters/Artistic"
    assert proc["label"] == "Neural Style Transfer..."
    assert proc["imagetypes"] == "RGB*, GRAY*"
    assert proc["results"] == []
    assert proc["function"] is plugin.neural_style
    params = proc["params"]
    assert [p[1] for p in params] == PARAM_NAMES
    kinds = dict((p[1], p[0]) for p in params)
    assert kinds["image"] == fu.PF_IMAGE and kinds["drawable"] == fu.PF_DRAWABLE
    assert kinds["style-file"] == kinds["style-file-2"] == fu.PF_FILE
    assert kinds["style-weights"] == fu.PF_STRING
    for name in ("preset", "device", "colors", "model", "style-loss"):
        assert kinds[name] == fu.PF_OPTION, name
    assert kinds["size"] == fu.PF_SPINNER
    assert kinds["strength"] in (fu.PF_FLOAT, fu.PF_SLIDER)
    assert kinds["seed"] == fu.PF_INT

    by_name = dict((p[1], p) for p in params)
    defaults = nst_protocol.DEFAULTS
    preset = by_name["preset"]
    presets = nst_options.choice_values("preset")
    assert [item.split()[0].lower() for item in preset[4]] == list(presets)
    assert presets[preset[3]] == defaults["preset"]
    colors = by_name["colors"]
    assert len(colors[4]) == 3 and colors[4][colors[3]].startswith("No: the style")
    device = by_name["device"]
    assert len(device[4]) == len(nst_options.choice_values("device"))
    assert nst_options.choice_values("device")[device[3]] == defaults["device"]
    size = by_name["size"]
    assert size[3] == defaults["size"] and size[4][:2] == (0, 16384)
    strength = by_name["strength"]
    assert strength[3] == defaults["strength"]
    if strength[0] == fu.PF_SLIDER:
        assert strength[4][0] <= strength[3] <= strength[4][1]
    assert by_name["colors"][2] == "Keep the layer's colors"  # US English, as GIMP's own
    assert by_name["seed"][3] == defaults["seed"]
    assert fu.state.main_calls == 1


def test_parameters_are_the_option_tables(fu, plugin):
    """Both plug-ins' arguments come from nst_options: GIMP 2.10 shows its rows, in order."""
    import nst_options

    params = fu.state.registered[PROC]["params"][2:]
    rows = nst_options.for_gimp(2)
    assert [p[1] for p in params] == [o.arg for o in rows]
    for p, o in zip(params, rows):
        assert "_" not in p[2]  # gimpfu shows mnemonics' underscores as they are
        if o.kind == "choice":
            assert p[3] == o.values.index(o.default) and len(p[4]) == len(o.choices)
        elif o.kind != "file":
            assert p[3] == o.default, o.name


def test_plugin_source_is_python27_compatible():
    """GIMP 2.10 on Windows and macOS runs plug-ins with Python 2.7: what `vermin -t=2.7-
    -t=3.8- --violations gimp_plugin/neural_style_gimp2.py` checks, through vermin's API."""
    vermin = pytest.importorskip("vermin")
    assert vermin.detect('x = f"{1}"')[0] is None  # vermin sees Python-3-only code
    py2, py3 = vermin.detect(PLUGIN_PATH.read_text(encoding="utf-8"), path=str(PLUGIN_PATH))
    assert py2 is not None and py2 <= (2, 7), f"not Python 2.7 compatible: {py2!r}"
    assert py3 is not None and py3 <= (3, 8), f"needs Python {py3!r}"


# -- the plug-in's logic, with the bridge stood in for ------------------------------------------


class StandIn:
    """Replaces nst_bridge.run: records the request, checks its shape, answers like the core
    (inverted colours, alpha times the mask) or raises."""

    def __init__(self, error=None, answer=None):
        self.calls = []
        self.error = error
        self.answer = answer

    def __call__(self, options, content, style_paths, mask=None, result_format=None,
                 on_progress=None, should_cancel=None, config_dir=None):
        self.calls.append(dict(options=options, content=content, style_paths=style_paths,
                               mask=mask, result_format=result_format))
        assert isinstance(content["data"], bytes)
        if on_progress is not None:
            on_progress(0.0, "Neural style: loading")
            on_progress(0.5, "Neural style: scale 1/2, 50%")
        if self.error is not None:
            raise self.error
        if self.answer is not None:
            return self.answer(content)
        dtype = {"u8": "<u1", "u16": "<u2", "f32": "<f4"}[content["format"]]
        top = {"u8": 255, "u16": 65535, "f32": 1.0}[content["format"]]
        pixels = np.frombuffer(content["data"], dtype).reshape(
            content["height"], content["width"], content["channels"]).astype(np.float64)
        out = pixels.copy()
        out[..., :-1] = top - pixels[..., :-1]
        if mask is not None:
            mdtype = {"u8": "<u1", "u16": "<u2", "f32": "<f4"}[mask["format"]]
            mtop = {"u8": 255, "u16": 65535, "f32": 1.0}[mask["format"]]
            coverage = np.frombuffer(mask["data"], mdtype).reshape(
                mask["height"], mask["width"]).astype(np.float64) / mtop
            out[..., -1] = np.round(out[..., -1] * coverage) if top != 1.0 else (
                out[..., -1] * coverage)
        fmt = result_format or content["format"]
        assert fmt == content["format"]
        return dict(width=content["width"], height=content["height"],
                    channels=content["channels"], format=fmt,
                    data=out.astype(dtype).tobytes())


@pytest.fixture
def stand_in(plugin, monkeypatch):
    stand = StandIn()
    monkeypatch.setattr(plugin.nst_bridge, "run", stand)
    return stand


def test_rgb_layer_becomes_a_new_layer_above_it(fu, stand_in, style_png):
    image = fu.new_image(40, 30)
    fu.add_layer(image, "Background", gradient(30, 40, 3))
    source_pixels = gradient(20, 24, 3)
    source = fu.add_layer(image, "Photo", source_pixels, offsets=(5, 4))
    fu.add_layer(image, "Top", gradient(30, 40, 4), position=0)

    run(fu, image, source, style_png, preset=1, size=300, strength=2.5, colors=2, model=1,
        style_loss=1, device=0, seed=7, style_scale=1.5, max_memory=3)

    assert fu.state.messages == []
    (call,) = stand_in.calls
    assert call["options"] == dict(preset="standard", size_mode="custom", size=300,
                                   style_scale=1.5, strength=2.5, colors="histogram",
                                   model="vgg16", style_loss="w2", device="auto", seed=7,
                                   max_memory=3.0, style_weights="", auto_minutes=10.0)
    assert call["style_paths"] == [style_png]
    assert call["mask"] is None
    content = call["content"]
    assert (content["width"], content["height"], content["channels"], content["format"]) == (
        24, 20, 4, "u8")
    sent = np.frombuffer(content["data"], np.uint8).reshape(20, 24, 4)
    assert np.array_equal(sent[..., :3], source_pixels) and (sent[..., 3] == 255).all()

    assert [layer.name for layer in image.layers] == [
        "Top", "Photo (stripes)", "Photo", "Background"]
    new = image.layers[1]
    assert (new.width, new.height, new.offsets) == (24, 20, (5, 4))
    assert new.type == fu.RGBA_IMAGE and new.opacity == 100.0
    assert new.mode == fu.LAYER_MODE_NORMAL
    result = fu.pixels(new)
    assert np.array_equal(result[..., :3], 255 - source_pixels)
    assert (result[..., 3] == 255).all()
    assert np.array_equal(fu.pixels(source), source_pixels)  # the source is never modified

    names = fu.state.names()
    assert names.count("pdb.gimp_image_undo_group_start") == 1
    assert names.count("pdb.gimp_image_undo_group_end") == 1
    start, end = (names.index("pdb.gimp_image_undo_group_start"),
                  names.index("pdb.gimp_image_undo_group_end"))
    assert start < names.index("pdb.gimp_image_insert_layer") < names.index(
        "drawable.flush") < end
    assert image.fake_undo_depth == 0 and image.fake_undo_groups == 1
    assert fu.state.progress[-1] == 1.0 and 0.5 in fu.state.progress
    assert image.active_drawable is new  # the result is what the user works on next
    assert "Neural style: scale 1/2, 50%" in fu.state.progress_texts
    # nothing wrote to the source: its only pixel region was read-only
    for name, args in fu.state.calls:
        if name == "drawable.get_pixel_rgn" and args[0] is source:
            assert args[5] == 0 and args[6] == 0


def test_interactive_values_are_converted(fu, stand_in, style_png):
    """The gimpfu dialog hands PF_SPINNER over as a float and PF_TOGGLE as a bool."""
    image = fu.new_image(16, 16)
    layer = fu.add_layer(image, "L", gradient(16, 16, 4))
    fu.run_interactive(PROC, image, layer, style_file=style_png, size=96, colors=1)
    (call,) = stand_in.calls
    assert call["options"] == dict(preset="standard", size_mode="auto", size=96, strength=1.0,
                                   style_scale=1.0, colors="luminance", model="vgg19",
                                   style_loss="gram", device="auto", seed=0, max_memory=0.0,
                                   style_weights="", auto_minutes=10.0)
    assert isinstance(call["options"]["size"], int)
    assert len(image.layers) == 2


def test_selection_confines_the_result(fu, stand_in, style_png):
    """The selection over the layer's area becomes the mask; parts of the layer outside the
    canvas count as unselected."""
    image = fu.new_image(32, 24)
    layer = fu.add_layer(image, "Layer", gradient(20, 20, 4), offsets=(-6, 10))
    selection = np.zeros((24, 32))
    selection[12:20, 0:8] = 1.0
    selection[14, 3] = 0.5
    fu.set_selection(image, selection)

    run(fu, image, layer, style_png)

    (call,) = stand_in.calls
    mask = call["mask"]
    assert (mask["width"], mask["height"], mask["format"]) == (20, 20, "u8")
    got = np.frombuffer(mask["data"], np.uint8).reshape(20, 20)
    expected = np.zeros((20, 20), np.uint8)
    expected[2:10, 6:14] = 255  # canvas (0..8, 12..20) in layer coordinates
    expected[4, 9] = 128
    assert np.array_equal(got, expected)
    alpha = fu.pixels(image.layers[0])[..., 3]
    assert np.array_equal(alpha, expected)  # alpha 0 outside the selection


def test_selection_missing_the_layer_is_a_message(fu, stand_in, style_png):
    image = fu.new_image(30, 30)
    layer = fu.add_layer(image, "Small", gradient(10, 10, 3), offsets=(0, 0))
    selection = np.zeros((30, 30))
    selection[20:, 20:] = 1.0
    fu.set_selection(image, selection)
    run(fu, image, layer, style_png)
    (message,) = fu.state.messages
    assert "selection does not touch" in message and "Small" in message
    assert stand_in.calls == []
    assert_untouched(fu, image, ["Small"])


def test_grey_layer(fu, stand_in, style_png):
    image = fu.new_image(12, 10, fu.GRAY)
    grey = gradient(10, 12, 1)
    layer = fu.add_layer(image, "Grey", grey)
    run(fu, image, layer, style_png)
    content = stand_in.calls[0]["content"]
    assert content["channels"] == 2
    new = image.layers[0]
    assert new.type == fu.GRAYA_IMAGE and new.name == "Grey (stripes)"
    assert np.array_equal(fu.pixels(new)[..., 0], 255 - grey[..., 0])


def test_grey_layer_with_alpha_keeps_its_alpha(fu, stand_in, style_png):
    image = fu.new_image(12, 10, fu.GRAY)
    values = gradient(10, 12, 2)
    values[..., 1] = np.arange(12, dtype=np.uint8) * 20
    layer = fu.add_layer(image, "GreyA", values)
    run(fu, image, layer, style_png)
    sent = np.frombuffer(stand_in.calls[0]["content"]["data"], np.uint8).reshape(10, 12, 2)
    assert np.array_equal(sent, values)
    assert np.array_equal(fu.pixels(image.layers[0])[..., 1], values[..., 1])


def test_layer_in_a_group_gets_its_sibling_above_it(fu, stand_in, style_png):
    image = fu.new_image(16, 16)
    fu.add_layer(image, "Bottom", gradient(16, 16, 3))
    group = fu.add_group(image, "Group")
    fu.add_layer(image, "Lower", gradient(16, 16, 4), parent=group)
    inner = fu.add_layer(image, "Inner", gradient(16, 16, 4), parent=group, position=0)
    run(fu, image, inner, style_png)
    assert [layer.name for layer in group.children] == ["Inner (stripes)", "Inner", "Lower"]
    assert [layer.name for layer in image.layers] == ["Group", "Bottom"]


@pytest.mark.parametrize("precision, fmt, dtype", [(250, "u16", np.uint16),
                                                   (650, "f32", np.float32)])
def test_high_bit_depth_stays_high(fu, stand_in, style_png, precision, fmt, dtype):
    """16-bit and float perceptual images are read and written at their own depth."""
    image = fu.new_image(10, 8, precision=precision)
    values = np.linspace(0.0, 1.0, 10 * 8 * 3).reshape(8, 10, 3)
    layer = fu.add_layer(image, "Deep", values)
    selection = np.zeros((8, 10))
    selection[:, 5:] = 0.25
    fu.set_selection(image, selection)

    run(fu, image, layer, style_png)

    assert fu.state.precision_enabled
    call = stand_in.calls[0]
    assert call["content"]["format"] == fmt and call["result_format"] == fmt
    assert call["mask"]["format"] == fmt
    sent = np.frombuffer(call["content"]["data"], dtype).reshape(8, 10, 4)
    assert np.array_equal(sent[..., :3], fu.pixels(layer))
    result = fu.pixels(image.layers[0])
    assert result.dtype == dtype
    top = 65535 if fmt == "u16" else 1.0
    assert np.allclose(result[..., :3], top - fu.pixels(layer).astype(np.float64))
    assert np.allclose(result[..., 3] / top, selection, atol=1e-4)


def test_linear_float_image_goes_through_8_bit(fu, stand_in, style_png):
    """Linear-light images are read as GIMP's 8-bit perceptual data (what the engine wants)
    and written back the same way; GIMP converts."""
    image = fu.new_image(6, 4, precision=fu.PRECISION_FLOAT_LINEAR)
    values = np.full((4, 6, 3), 0.2158, np.float32)  # 128/255 in sRGB
    layer = fu.add_layer(image, "Linear", values)
    run(fu, image, layer, style_png)
    assert not fu.state.precision_enabled
    content = stand_in.calls[0]["content"]
    assert content["format"] == "u8"
    assert (np.frombuffer(content["data"], np.uint8).reshape(4, 6, 4)[..., :3] == 128).all()
    result = fu.pixels(image.layers[0])
    assert result.dtype == np.float32
    assert np.allclose(result[..., :3], 0.2122, atol=2e-3)  # 127/255 in sRGB, linearised


def test_gimp_2_8_without_precision(fu, stand_in, style_png):
    """GIMP 2.8 has no precision procedures: the plug-in asks before it calls (a call to a
    missing procedure would pop up a PDB error there) and reads 8-bit."""
    fu.state.fake_missing_procs.update({"gimp_image_get_precision",
                                        "gimp_plugin_enable_precision"})
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, layer, style_png)
    assert fu.state.messages == []
    assert "pdb.gimp_image_get_precision" not in fu.state.names()
    assert stand_in.calls[0]["content"]["format"] == "u8"
    assert len(image.layers) == 2


def test_bridge_error_is_one_message(fu, plugin, monkeypatch, style_png):
    error = plugin.nst_bridge.BridgeError("weights", "The VGG19 weights are missing. Run "
                                          "`nst weights fetch`.", "/tmp/core-1.log")
    monkeypatch.setattr(plugin.nst_bridge, "run", StandIn(error=error))
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, layer, style_png)
    assert fu.state.messages == [error.message]
    assert "/tmp/core-1.log" in fu.state.messages[0]
    assert_untouched(fu, image, ["L"])


def test_non_ascii_core_message_reaches_gimp(fu, plugin, monkeypatch, style_png):
    error = plugin.nst_bridge.BridgeError("bad_image", "Le style \u00ab\u00e9t\u00e9\u00bb "
                                          "est illisible.")
    monkeypatch.setattr(plugin.nst_bridge, "run", StandIn(error=error))
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, layer, style_png)
    assert fu.state.messages == [error.message]


def test_unexpected_error_is_one_message(fu, plugin, monkeypatch, style_png, capsys):
    monkeypatch.setattr(plugin.nst_bridge, "run", StandIn(error=ZeroDivisionError("boom")))
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, layer, style_png)
    (message,) = fu.state.messages
    assert "unexpectedly" in message and "ZeroDivisionError: boom" in message
    assert "Traceback" in capsys.readouterr().err
    assert_untouched(fu, image, ["L"])


def test_wrong_sized_result_adds_nothing(fu, plugin, monkeypatch, style_png):
    def small(content):
        return dict(width=2, height=2, channels=4, format="u8", data=b"\0" * 16)

    monkeypatch.setattr(plugin.nst_bridge, "run", StandIn(answer=small))
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, layer, style_png)
    (message,) = fu.state.messages
    assert "2x2" in message and "8x8" in message
    assert_untouched(fu, image, ["L"])


def test_failed_write_leaves_no_layer(fu, stand_in, style_png, monkeypatch):
    def broken(self, key, value):
        raise fu.error("could not write the tiles")

    monkeypatch.setattr(fu.PixelRgn, "__setitem__", broken)
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, layer, style_png)
    (message,) = fu.state.messages
    assert "could not write the tiles" in message
    assert [item.name for item in image.layers] == ["L"]
    names = fu.state.names()
    assert names.index("pdb.gimp_image_insert_layer") < names.index(
        "pdb.gimp_image_remove_layer") < names.index("pdb.gimp_image_undo_group_end")
    assert image.fake_undo_depth == 0


def test_channel_is_refused(fu, stand_in, style_png):
    image = fu.new_image(8, 8)
    fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, image.selection, style_png)
    (message,) = fu.state.messages
    assert "select a layer" in message
    assert stand_in.calls == []


@pytest.mark.parametrize("values, words", [
    (dict(preset=9), "Unknown preset"),
    (dict(device=-1), "Unknown device"),
    (dict(size=20000), "Custom size must be 0 to 16384"),
    (dict(size_mode=3), "Unknown size mode"),
    (dict(colors=3), "Unknown colors 3: use 0 to 2 (style, luminance, histogram)"),
    (dict(model=-1), "Unknown model"),
    (dict(style_loss=2), "Unknown style loss"),
    (dict(style_scale=9.0), "Style scale must be 0.1 to 8"),
    (dict(auto_minutes=0.0), "Time limit for Automatic must be 0.5 to 1440"),
    (dict(style_weights="1, 1"), "2 weight(s) for 1 style(s)"),
    (dict(style_weights="0"), "all zero"),
    (dict(style_weights="a lot"), "not all numbers"),
])
def test_bad_values_are_messages(fu, stand_in, style_png, values, words):
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, layer, style_png, **values)
    (message,) = fu.state.messages
    assert words in message
    assert stand_in.calls == []
    assert_untouched(fu, image, ["L"])


# -- layer masks, indexed images, the active layer -------------------------------------------------


def visible_alpha(fu, layer):
    """How opaque each pixel of an 8-bit layer looks in the image: its alpha times its mask's
    value while the mask is applied (GIMP's compositing)."""
    values = fu.pixels(layer).astype(np.float64) / 255
    alpha = values[..., -1] if layer.has_alpha else np.ones(values.shape[:2])
    mask = fu.pdb.gimp_layer_get_mask(layer)
    if mask is not None and layer.fake_apply_mask:
        alpha = alpha * fu.pixels(mask)[..., 0] / 255
    return alpha


def masked_layer(fu, apply=True, show=False):
    """An image whose layer has a mask: the left third hidden, a ramp, the right third shown."""
    image = fu.new_image(24, 12)
    layer = fu.add_layer(image, "Masked", gradient(12, 24, 4), offsets=(0, 0))
    values = np.clip((np.arange(24) - 8) / 8.0, 0.0, 1.0)[None, :].repeat(12, 0)
    fu.add_mask(layer, values, apply=apply, show=show)
    return image, layer


def test_layer_mask_is_copied_so_hidden_pixels_stay_hidden(fu, stand_in, style_png):
    image, layer = masked_layer(fu)
    source_mask = fu.pixels(layer.mask)
    run(fu, image, layer, style_png)

    assert fu.state.messages == []
    new = image.layers[0]
    assert new.name == "Masked (stripes)"
    assert new.mask is not None, "the new layer lost the mask: the hidden part would show"
    assert new.mask is not layer.mask
    assert np.array_equal(fu.pixels(new.mask), source_mask)
    assert np.array_equal(fu.pixels(layer.mask), source_mask)  # the source's mask untouched
    assert np.array_equal(visible_alpha(fu, new) == 0, visible_alpha(fu, layer) == 0)
    assert (visible_alpha(fu, new)[:, :8] == 0).all()
    assert (new.fake_apply_mask, new.fake_show_mask) == (True, False)
    # The new layer is the active drawable, not its mask (adding a mask makes GIMP edit it).
    assert image.active_layer is new and image.active_drawable is new
    names = fu.state.names()
    assert names.index("pdb.gimp_layer_add_mask") < names.index(
        "pdb.gimp_image_undo_group_end")  # one undo step takes the layer and its mask


@pytest.mark.parametrize("apply, show", [(False, False), (True, True)])
def test_layer_mask_settings_are_copied(fu, stand_in, style_png, apply, show):
    """A mask switched off keeps the layer whole; a mask being shown is shown on the copy."""
    image, layer = masked_layer(fu, apply=apply, show=show)
    run(fu, image, layer, style_png)
    new = image.layers[0]
    assert (new.fake_apply_mask, new.fake_show_mask) == (apply, show)
    assert np.array_equal(visible_alpha(fu, new), visible_alpha(fu, layer))


def test_layer_mask_keeps_16_bits(fu, stand_in, style_png):
    image = fu.new_image(16, 4, precision=fu.PRECISION_U16_GAMMA)
    layer = fu.add_layer(image, "Deep", np.linspace(0, 1, 16 * 4 * 3).reshape(4, 16, 3))
    fu.add_mask(layer, np.linspace(0.0, 1.0, 64).reshape(4, 16))
    run(fu, image, layer, style_png)
    copied = fu.pixels(image.layers[0].mask)
    assert copied.dtype == np.uint16 and np.array_equal(copied, fu.pixels(layer.mask))
    assert (copied % 257 != 0).sum() > 32  # not squeezed through 8 bits


def test_failed_mask_copy_leaves_no_layer(fu, stand_in, style_png, monkeypatch):
    def refuse(*args):
        raise fu.error("execution error")

    monkeypatch.setattr(type(fu.pdb), "gimp_layer_add_mask", lambda self, *args: refuse())
    image, layer = masked_layer(fu)
    run(fu, image, layer, style_png)
    (message,) = fu.state.messages
    assert "execution error" in message
    assert [item.name for item in image.layers] == ["Masked"]
    assert image.fake_undo_depth == 0


def test_indexed_image_is_refused_before_any_work(fu, stand_in, style_png):
    """A script can pass an indexed image (the menu does not offer the filter there)."""
    image = fu.new_image(8, 6, fu.INDEXED)
    indices = (np.arange(48, dtype=np.uint8) % 5).reshape(6, 8, 1)
    layer = fu.add_layer(image, "Palette", indices)
    run(fu, image, layer, style_png)
    (message,) = fu.state.messages
    assert "indexed" in message and "Image > Mode > RGB" in message
    assert stand_in.calls == []
    assert_untouched(fu, image, ["Palette"])
    assert "pdb.gimp_image_undo_group_start" not in fu.state.names()
    assert np.array_equal(fu.pixels(layer), indices)


def test_wrong_argument_counts_fail_like_pygimp(fu):
    """The fake is only worth something if it is strict."""
    image = fu.new_image(4, 4)
    with pytest.raises(TypeError):
        fu.pdb.gimp_image_insert_layer(image, None, 0)
    with pytest.raises(TypeError):
        fu.gimp.Layer(image, "x", 4, 4, fu.RGBA_IMAGE, 100.0, fu.NORMAL_MODE, 0)
    with pytest.raises(TypeError):
        fu.gimp.Layer(image, "x", 4, height=4)
    with pytest.raises(TypeError):
        fu.gimp.progress_update()
    with pytest.raises(AttributeError):
        fu.pdb.gimp_no_such_procedure(image)
    layer = fu.add_layer(image, "L", gradient(4, 4, 3))
    region = layer.get_pixel_rgn(0, 0, 4, 4, True, False)
    with pytest.raises(TypeError):
        region[0:4, 0:4] = b"\0" * 3
    with pytest.raises(TypeError):
        region[0:4, 0:4] = bytearray(4 * 4 * 3)


def test_fake_layer_masks_and_modes_are_checked_like_gimp(fu):
    image = fu.new_image(4, 4)
    layer = fu.add_layer(image, "L", gradient(4, 4, 3))
    with pytest.raises(fu.error):
        fu.pdb.gimp_layer_get_apply_mask(layer)  # no mask yet
    mask = fu.pdb.gimp_layer_create_mask(layer, fu.ADD_MASK_BLACK)
    assert fu.pdb.gimp_layer_get_mask(layer) is None  # created, not added
    fu.pdb.gimp_layer_add_mask(layer, mask)
    assert fu.pdb.gimp_layer_get_mask(layer) is mask and image.active_drawable is mask
    with pytest.raises(fu.error):
        fu.pdb.gimp_layer_add_mask(layer, fu.pdb.gimp_layer_create_mask(layer, 0))  # has one
    other = fu.add_layer(image, "Small", gradient(2, 2, 3))
    with pytest.raises(fu.error):
        fu.pdb.gimp_layer_add_mask(other, fu.pdb.gimp_layer_create_mask(layer, 0))  # 4x4 != 2x2
    with pytest.raises(TypeError):
        fu.pdb.gimp_layer_set_apply_mask(layer)
    indexed = fu.new_image(4, 4, fu.INDEXED)
    with pytest.raises(fu.error):
        fu.gimp.Layer(indexed, "x", 4, 4, fu.RGBA_IMAGE, 100.0, fu.NORMAL_MODE)
    with pytest.raises(fu.error):
        fu.pdb.gimp_image_set_active_layer(indexed, layer)  # a layer of another image


# -- through the real bridge -----------------------------------------------------------------------


def test_missing_style_file(fu, style_png, tmp_path):
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    missing = str(tmp_path / "no-such-painting.jpg")
    run(fu, image, layer, missing)
    (message,) = fu.state.messages
    assert "no-such-painting.jpg" in message and "does not exist" in message
    assert_untouched(fu, image, ["L"])


def test_no_style_chosen(fu):
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    fu.run_interactive(PROC, image, layer)  # PF_FILE left empty: the dialog gives None
    (message,) = fu.state.messages
    assert "Choose a style image" in message
    assert_untouched(fu, image, ["L"])


def test_core_missing(fu, style_png, tmp_path, monkeypatch):
    program = tmp_path / "not-installed" / "nst-core"
    monkeypatch.setenv("NST_CORE_COMMAND", f"{program} worker")
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, layer, style_png)
    (message,) = fu.state.messages
    assert str(program) in message and "does not exist" in message
    assert "installer" in message  # says how to repair
    assert_untouched(fu, image, ["L"])


def test_core_not_configured(fu, plugin, style_png, tmp_path, monkeypatch):
    """No NST_CORE_COMMAND and no nst-core.json beside nst_bridge.py."""
    import nst_process

    monkeypatch.setattr(nst_process, "config_path",
                        lambda config_dir=None: str(tmp_path / "nst-core.json"))
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, layer, style_png)
    (message,) = fu.state.messages
    assert "not installed" in message and "nst-core.json" in message
    assert_untouched(fu, image, ["L"])


real_core = pytest.mark.usefixtures("real_weights")  # `make test` fetches them; missing: fail


@pytest.fixture
def core(fu, monkeypatch):
    monkeypatch.setenv("NST_CORE_COMMAND",
                       f"{shlex.quote(sys.executable)} -m nst_core.worker")


@pytest.mark.slow
@real_core
def test_real_core_rgb(fu, core, style_png):
    image = fu.new_image(64, 48)
    fu.add_layer(image, "Background", gradient(48, 64, 3))
    source_pixels = gradient(40, 56, 3)
    source = fu.add_layer(image, "Photo", source_pixels, offsets=(3, 5))

    run(fu, image, source, style_png)

    assert fu.state.messages == []
    assert [layer.name for layer in image.layers] == ["Photo (stripes)", "Photo", "Background"]
    new = image.layers[0]
    assert (new.width, new.height, new.offsets) == (56, 40, (3, 5))
    result = fu.pixels(new)
    assert (result[..., 3] == 255).all()
    assert np.abs(result[..., :3].astype(int) - source_pixels).mean() > 5  # it changed
    assert np.array_equal(fu.pixels(source), source_pixels)
    assert image.fake_undo_groups == 1 and image.fake_undo_depth == 0
    assert fu.state.names().count("pdb.gimp_image_undo_group_start") == 1
    assert any(text.startswith("Neural style") for text in fu.state.progress_texts)


@pytest.mark.slow
@real_core
def test_real_core_selection(fu, core, style_png):
    image = fu.new_image(48, 48)
    layer = fu.add_layer(image, "Photo", gradient(48, 48, 3))
    selection = np.zeros((48, 48))
    selection[8:30, 10:40] = 1.0
    fu.set_selection(image, selection)

    run(fu, image, layer, style_png)

    assert fu.state.messages == []
    alpha = fu.pixels(image.layers[0])[..., 3]
    assert (alpha[selection == 0] == 0).all()
    assert (alpha[selection == 1] == 255).all()


@pytest.mark.slow
@real_core
def test_real_core_grey(fu, core, style_png):
    image = fu.new_image(40, 32, fu.GRAY)
    grey = gradient(32, 40, 1)
    layer = fu.add_layer(image, "Grey", grey)

    run(fu, image, layer, style_png)

    assert fu.state.messages == []
    new = image.layers[0]
    assert new.type == fu.GRAYA_IMAGE
    result = fu.pixels(new)
    assert result.shape == (32, 40, 2) and (result[..., 1] == 255).all()
    assert np.abs(result[..., 0].astype(int) - grey[..., 0]).mean() > 2
    assert np.array_equal(fu.pixels(layer), grey)



# -- several styles --------------------------------------------------------------------------------


@pytest.fixture
def second_style(style_png, tmp_path):
    path = tmp_path / "mosaic.png"
    path.write_bytes(Path(style_png).read_bytes())
    return str(path)


def test_two_styles_with_weights(fu, stand_in, style_png, second_style):
    image = fu.new_image(16, 12)
    layer = fu.add_layer(image, "Photo", gradient(12, 16, 3))
    run(fu, image, layer, style_png, style_file_2=second_style, style_weights="2, 1")
    assert fu.state.messages == []
    (call,) = stand_in.calls
    assert call["style_paths"] == [style_png, second_style]
    assert call["options"]["style_weights"] == "2, 1"
    assert [lay.name for lay in image.layers] == ["Photo (stripes + mosaic)", "Photo"]


def test_the_second_style_alone_is_used(fu, stand_in, second_style):
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "Photo", gradient(8, 8, 3))
    fu.run_interactive(PROC, image, layer, style_file_2=second_style)
    assert fu.state.messages == []
    assert stand_in.calls[0]["style_paths"] == [second_style]


@pytest.mark.parametrize("weights, words", [
    ("2, 1, 1", "3 weight(s) for 2 style(s)"),
    ("3", "1 weight(s) for 2 style(s)"),
    ("0, 0", "all zero"),
    ("1, -2", "not all numbers of 0 or more"),
])
def test_style_weights_that_do_not_fit_are_one_message(fu, stand_in, style_png, second_style,
                                                       weights, words):
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    run(fu, image, layer, style_png, style_file_2=second_style, style_weights=weights)
    (message,) = fu.state.messages
    assert words in message and "style weights" in message
    assert stand_in.calls == []
    assert_untouched(fu, image, ["L"])


def test_a_missing_second_style_is_named(fu, stand_in, style_png, tmp_path):
    image = fu.new_image(8, 8)
    layer = fu.add_layer(image, "L", gradient(8, 8, 3))
    missing = str(tmp_path / "gone.jpg")
    run(fu, image, layer, style_png, style_file_2=missing)
    (message,) = fu.state.messages
    assert missing in message and "does not exist" in message
    assert stand_in.calls == []
    assert_untouched(fu, image, ["L"])
