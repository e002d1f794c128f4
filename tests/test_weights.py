"""Weight conversion (on a small HDF5 file the test writes), hash rejection, storage, loading."""

import functools
import hashlib

import h5py
import numpy as np
import pytest

from nst_core import weights
from nst_core.errors import WeightsError


def write_keras_like_h5(path, channels=2, model="vgg19"):
    """The Keras layout (blockB_convK/blockB_convK_W_1:0, HWIO) with tiny channel counts."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for name in weights.conv_names(model):
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
    assert weights.weights_path() == tmp_path / weights.SOURCES["vgg19"].store_name
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
    assert weights.verify(real_weights)["source_sha256"] == weights.SOURCES["vgg19"].h5_sha256


# -- the checks every run makes (weights.load) --------------------------------------------------


@functools.lru_cache(maxsize=1)
def vgg_like_tensors() -> dict:
    """Tensors in the VGG19 layout (random values: only the checks are under test)."""
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal(shape, np.float32) * 0.01
            for name, shape in weights.expected_shapes().items()}


@pytest.fixture
def vgg_like():
    return vgg_like_tensors()


def write_store(path, tensors, **metadata):
    """A store as `convert` writes it; `metadata` overrides its fields."""
    from safetensors.numpy import save_file

    vgg19 = weights.SOURCES["vgg19"]
    meta = {"source": vgg19.h5_name, "source_sha256": vgg19.h5_sha256,
            "tensor_sha256": weights.tensor_digest(tensors), **metadata}
    save_file(tensors, str(path), metadata=meta)
    return path


def flip_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_expected_shapes_are_vgg19s_conv_layers():
    shapes = weights.expected_shapes()
    assert len(shapes) == 32
    assert shapes["features.0.weight"] == (64, 3, 3, 3)
    assert shapes["features.5.weight"] == (128, 64, 3, 3)
    assert shapes["features.34.weight"] == (512, 512, 3, 3)
    assert shapes["features.34.bias"] == (512,)


def test_a_good_store_is_hashed_once_then_trusted_until_it_changes(tmp_path, vgg_like,
                                                                  monkeypatch):
    path = write_store(tmp_path / "w.safetensors", vgg_like)
    hashed = []
    real_digest = weights.tensor_digest
    monkeypatch.setattr(weights, "tensor_digest", lambda t: hashed.append(1) or real_digest(t))
    assert set(weights.load(path)) == set(vgg_like)
    assert set(weights.load(path)) == set(vgg_like)
    assert len(hashed) == 1  # the second run trusts the first check
    weights.verify(path)
    assert len(hashed) == 2  # `nst weights verify` always re-hashes
    flip_byte(path)  # a changed file is hashed again, and the change is caught
    with pytest.raises(WeightsError, match=r"corrupt \(checksum mismatch\).*fetch --force"):
        weights.load(path)


@pytest.mark.parametrize("offset", [-1, -4096, 20_000_000, 60_000_000])
def test_flipped_bytes_anywhere_in_the_tensors_are_caught(tmp_path, vgg_like, offset):
    path = write_store(tmp_path / "w.safetensors", vgg_like)
    weights.load(path)  # passes, and is remembered as passed
    flip_byte(path, offset)
    with pytest.raises(WeightsError, match=r"fetch --force") as e:
        weights.load(path)
    assert "corrupt" in e.value.message or "not numbers" in e.value.message


def test_wrong_shapes_missing_layers_and_wrong_types_are_named(tmp_path, vgg_like):
    wrong = dict(vgg_like, **{"features.0.weight": np.zeros((64, 3, 5, 5), np.float32)})
    with pytest.raises(WeightsError, match=r"features\.0\.weight as .*\(64, 3, 5, 5\), expected "
                                           r"float32 \(64, 3, 3, 3\).*fetch --force"):
        weights.load(write_store(tmp_path / "a.safetensors", wrong))
    halved = dict(vgg_like, **{"features.2.bias": np.zeros(64, np.float16)})
    with pytest.raises(WeightsError, match=r"features\.2\.bias as torch\.float16"):
        weights.load(write_store(tmp_path / "b.safetensors", halved))
    missing = {k: v for k, v in vgg_like.items() if k != "features.34.bias"}
    with pytest.raises(WeightsError, match="does not hold the 16 VGG19 conv layers"):
        weights.load(write_store(tmp_path / "c.safetensors", missing))
    extra = dict(vgg_like, classifier=np.zeros(3, np.float32))
    with pytest.raises(WeightsError, match="does not hold the 16 VGG19 conv layers"):
        weights.load(write_store(tmp_path / "d.safetensors", extra))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_weights_that_are_not_numbers_are_refused_before_a_run(tmp_path, vgg_like, bad):
    tensors = {k: v.copy() for k, v in vgg_like.items()}
    tensors["features.21.weight"][5, 7, 1, 1] = bad  # with a matching digest: only the check
    with pytest.raises(WeightsError, match=r"not numbers \(NaN or infinity\) in features\.21"):
        weights.load(write_store(tmp_path / "w.safetensors", tensors))


def test_weights_from_another_source_are_refused(tmp_path, vgg_like):
    path = write_store(tmp_path / "w.safetensors", vgg_like, source_sha256="0" * 64)
    with pytest.raises(WeightsError, match="not converted from the official VGG19 file"):
        weights.load(path)


def test_unreadable_truncated_empty_and_oversized_files_say_how_to_repair(tmp_path, vgg_like):
    good = write_store(tmp_path / "w.safetensors", vgg_like).read_bytes()
    for size in (len(good) // 2, 100, 8, 0):
        cut = tmp_path / f"cut{size}.safetensors"
        cut.write_bytes(good[:size])
        with pytest.raises(WeightsError, match=r"is damaged .*fetch --force"):
            weights.load(cut)
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    with pytest.raises(WeightsError, match=r"cannot read the weights file .*fetch --force"):
        weights.load(folder)
    huge = tmp_path / "huge.safetensors"
    with open(huge, "wb") as f:
        f.truncate(300 * 1024 ** 2)  # sparse: no disk used; never read
    with pytest.raises(WeightsError, match="not the VGG19 weights file"):
        weights.load(huge)


def test_a_stale_or_damaged_check_record_is_not_trusted(tmp_path, vgg_like):
    path = write_store(tmp_path / "w.safetensors", vgg_like)
    weights.load(path)
    record = tmp_path / "w.safetensors.verified"
    assert record.is_file()
    record.write_text("{not json")
    weights.load(path)  # re-hashed, and the record rewritten
    flip_byte(path)
    record.write_text(record.read_text())  # a record of the old version stays a record of it
    with pytest.raises(WeightsError, match="corrupt"):
        weights.load(path)


def test_conversion_remembers_its_check(tmp_path):
    h5 = write_keras_like_h5(tmp_path / "w.h5")
    sha = hashlib.sha256(h5.read_bytes()).hexdigest()
    out = weights.convert(h5, tmp_path / "w.safetensors", expected_sha256=sha)
    assert (tmp_path / "w.safetensors.verified").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["w.h5", "w.safetensors", "w.safetensors.verified"]  # no temporary file left
    assert out.stat().st_size > 0


def test_fetch_from_what_is_not_a_file_says_what_it_is(tmp_path, monkeypatch):
    import os

    from nst_core import weights

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    big = tmp_path / "big.h5"
    with open(big, "wb") as f:
        f.truncate(2 << 30)  # 2 GB, sparse: its size rules it out before any hashing
    monkeypatch.setattr(weights, "sha256_of", lambda p: pytest.fail("hashed"))
    for path, words in ((tmp_path, "is a folder"), ("/dev/null", "is a device"),
                        (fifo, "is a pipe"), (big, "2,147,483,648 bytes")):
        with pytest.raises(weights.WeightsError) as e:
            weights.convert(path, tmp_path / "out.safetensors")
        assert words in e.value.message and "does not exist" not in e.value.message


def test_nested_json_in_the_cache_or_header_is_not_a_crash(tmp_path):
    from nst_core import weights

    cache = tmp_path / "w.verified"
    cache.write_text("[" * 100_000)
    assert weights._read_cache(cache) is None
    header = b"[" * 100_000
    with pytest.raises(ValueError):
        weights._metadata(len(header).to_bytes(8, "little") + header)
