"""What a batch paints and where each result goes: the inputs (files, folders, glob patterns)
and their output names under OUTDIR, keeping the folder structure."""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePath

from ..errors import ImageError

# Files a folder is searched for; anything else there is listed as ignored, not failed. A file
# named on the command line is always tried (and fails, named, if it is not an image).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}


@dataclass(frozen=True)
class Input:
    path: Path
    rel: PurePath  # where it sits under what the user named (a file's own name for a file)


@dataclass(frozen=True)
class Found:
    inputs: list[Input]
    ignored: list[Path]  # files in the folders given that are not images


def discover(patterns: list[str], outdir: Path) -> Found:
    """Every input once, in natural name order (frame2 before frame10). Hidden files and
    OUTDIR are skipped, and an input folder that is OUTDIR (or inside it) is refused. With
    several folders, each one's results go under its own name (day1/IMG_1.png,
    day2/IMG_1.png). A pattern that matches no image is an error before any work."""
    inputs, ignored, seen = [], [], set()
    folders = sum(Path(p).is_dir() for p in patterns)
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            if _inside(path, outdir):  # its results would be its inputs on the next run
                raise ImageError(f"the output folder {outdir} is the input folder {pattern} or "
                                 "holds it: the next run would paint the results again; choose "
                                 "another output folder (one inside the input folder is fine)")
            found = _walk(path, outdir, ignored)
            if folders > 1:
                found = [Input(i.path, PurePath(path.resolve().name) / i.rel) for i in found]
            if not found:
                raise ImageError(f"folder {pattern} holds no images "
                                 f"({' '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.is_file():
            found = [Input(path, PurePath(path.name))]
        elif glob.has_magic(pattern):
            base = _glob_base(pattern)
            found = []
            for p in glob.glob(pattern, recursive=True):
                p = Path(p)
                if not p.is_file() or _inside(p, outdir):
                    continue
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(Input(p, PurePath(os.path.relpath(p, base))))
                else:  # a sidecar (.xmp, .txt) beside the pictures, as in a folder
                    ignored.append(p)
            if not found:
                raise ImageError(f"input {pattern} matches no image")
        else:
            raise ImageError(f"input {pattern} is not a file or folder and matches no file")
        for item in found:
            key = _identity(item.path)
            if key not in seen:
                seen.add(key)
                inputs.append(item)
    inputs.sort(key=lambda i: natural_key(str(i.rel)))
    return Found(inputs, sorted(ignored))


def output_names(inputs: list[Input], style_labels: list[str] | None, fmt: str) \
        -> dict[tuple[int, int], PurePath]:
    """{(input index, style index): path under OUTDIR}. With several styles the style's label
    joins the name (photo.starry_night.png). Two inputs that would share a name (a.jpg, a.png)
    keep their own suffix in it (a.jpg.png, a.png.png); names that still meet (also in another
    letter case, one file on macOS and Windows) are an error before any work."""
    labels = style_labels or [None]
    stems = [i.rel.with_suffix("") for i in inputs]
    counts = Counter(stems)  # one pass: 10,000 inputs took 50 s with a count() per input
    clash = {s for s, n in counts.items() if n > 1}
    names = {}
    for n, (item, stem) in enumerate(zip(inputs, stems)):
        base = item.rel if stem in clash else stem
        for k, label in enumerate(labels):
            name = base.name if label is None else f"{base.name}.{label}"
            names[n, k] = base.with_name(f"{name}.{fmt}")
    first: dict[str, int] = {}
    for (n, _), name in names.items():
        other = first.setdefault(name.as_posix().casefold(), n)
        if other != n:
            raise ImageError(f"{inputs[other].path} and {inputs[n].path} would both be written "
                             f"as {name}; rename one or paint them in separate runs")
    return names


def style_labels(paths: list[str]) -> list[str] | None:
    """Each style's label for output names (its file's stem, made unique); None for one."""
    if len(paths) == 1:
        return None
    labels = []
    for p in paths:
        stem = re.sub(r"[^\w.-]+", "_", Path(p).stem) or "style"
        label, k = stem, 2
        while label in labels:
            label, k = f"{stem}-{k}", k + 1
        labels.append(label)
    return labels


def natural_key(text: str) -> list:
    """Name order as people count: frame2 before frame10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", text) if part]


def _walk(folder: Path, outdir: Path, ignored: list) -> list[Input]:
    found = []
    for root, dirs, files in os.walk(folder):
        root = Path(root)
        # Hidden folders and OUTDIR (results are not inputs) are not searched.
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _inside(root / d, outdir)]
        for name in files:
            path = root / name
            if name.startswith(".") or not path.is_file():
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.append(Input(path, PurePath(path.relative_to(folder))))
            else:
                ignored.append(path)
    return found


def _glob_base(pattern: str) -> str:
    """The folder part of a pattern before its first wildcard: names are kept relative to it."""
    parts = []
    for part in Path(pattern).parts[:-1]:
        if glob.has_magic(part):
            break
        parts.append(part)
    return str(Path(*parts)) if parts else "."


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _identity(path: Path):
    try:
        st = path.stat()
        return st.st_dev, st.st_ino
    except OSError:
        return str(path.resolve())
