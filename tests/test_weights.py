"""Weight conversion (on a small HDF5 file the test writes), hash rejection, storage, loading."""

import hashlib

import h5py
import numpy as np
import pytest

from nst_core import weights
from nst_core.errors import WeightsError


def write_keras_like_h5(path, channels=2):
    """The Keras layout (blockB_convK/blockB_convK_W_1:0, HWIO) with tiny channel counts."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for name in weights.conv_names():
            g = f.create_group(name)
            g[f"{name}_W_1:0"] = rng.standard_normal((3, 3, channels, channels + 1), np.float32)
            g[f"{name}_b_1:0"] = rng.standard_normal(channels + 1).astype(np.float32)
    return path


def test_keras_names_map_to_torchvision_indices():
    names = weights.conv_names()
    assert len(names) == 16
    assert names["block1_conv1"] == 0 and names["block2_conv1"] == 5
    assert names["block4_conv2"] == 21 and names["block5_conv4"] == 34


def test_conversion_transposes_hwio_to_oihw_without_pickle(tmp_path):
    h5 = write_keras_like_h5(tmp_path / "w.h5")
    sha = hashlib.sha256(h5.read_bytes()).hexdigest()
    out = weights.convert(h5, tmp_path / "w.safetensors", expected_sha256=sha)
    from safetensors.numpy import load_file

    converted = load_file(str(out))
    with h5py.File(h5) as f:
        w = np.asarray(f["block3_conv2/block3_conv2_W_1:0"])
    assert converted["features.12.weight"].shape == (3, 2, 3, 3)
    np.testing.assert_array_equal(converted["features.12.weight"], w.transpose(3, 2, 0, 1))
    assert out.read_bytes()[:8] != b"\x80\x02"  # not a pickle


def test_a_file_with_the_wrong_hash_is_rejected_and_nothing_is_stored(tmp_path):
    h5 = write_keras_like_h5(tmp_path / "w.h5")
    out = tmp_path / "store" / "w.safetensors"
    with pytest.raises(WeightsError, match="sha256 is .* expected bde7da0d"):
        weights.convert(h5, out)
    assert not out.exists()


def test_fetch_from_a_wrong_file_names_the_problem(tmp_path):
    bad = tmp_path / "not-vgg.h5"
    bad.write_bytes(b"hello")
    with pytest.raises(WeightsError, match="not the VGG19 weights file"):
        weights.fetch(str(bad), out_path=tmp_path / "w.safetensors")


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_HOME", str(tmp_path))
    assert weights.weights_path() == tmp_path / weights.STORE_NAME
    with pytest.raises(WeightsError, match="not installed.*nst weights fetch"):
        weights.load()


def test_corrupt_stored_weights_are_detected(tmp_path, real_weights):
    damaged = tmp_path / "w.safetensors"
    data = bytearray(real_weights.read_bytes())
    data[-100] ^= 0xFF  # flip bits inside the last tensor
    damaged.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt"):
        weights.verify(damaged)
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(WeightsError, match="damaged"):
        weights.load(truncated)


def test_installed_weights_verify(real_weights):
    assert weights.verify(real_weights)["source_sha256"] == weights.H5_SHA256
