"""Frame-to-frame flicker of `nst batch` with and without --sequence (a figure for the README,
not a pass/fail test).

The sequence is made here: a window panning across ../shared/images/tubingen.jpg by SHIFT pixels
a frame, so where frame t shows what frame t-1 showed SHIFT pixels further right is known
exactly. Flicker is the mean absolute difference (0..255) between each result and the one
before, aligned by that shift: what a viewer sees jump in a still part of the scene. The content
frames' own figure (0: exact crops) is the floor.

    python bench/flicker.py                  # 8 frames of 192x144, draft: a few minutes
    python bench/flicker.py --preset standard
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst_core.batch.executor import LocalExecutor  # noqa: E402
from nst_core.batch.run import plan, run  # noqa: E402
from nst_core.device import machine  # noqa: E402
from nst_core.options import Options  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
SHIFT = 4


def make_frames(folder: Path, frames: int, width: int, height: int) -> None:
    source = Image.open(SHARED / "tubingen.jpg").convert("RGB")
    wide = width + SHIFT * (frames - 1)
    source = source.resize((wide, round(source.height * wide / source.width)), Image.LANCZOS)
    top = (source.height - height) // 2
    for t in range(frames):
        source.crop((t * SHIFT, top, t * SHIFT + width, top + height)).save(
            folder / f"frame{t:03d}.png")


def flicker(folder: Path) -> list[float]:
    """Aligned mean |frame t - frame t-1| for each pair, in 0..255."""
    frames = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64)
              for p in sorted(folder.glob("frame*.png"))]
    return [float(np.abs(now[:, :-SHIFT] - then[:, SHIFT:]).mean())
            for then, now in zip(frames, frames[1:])]


def paint(frames: Path, out: Path, options: Options, sequence: bool) -> float:
    batch = plan([str(frames)], [str(SHARED / "starry_night.jpg")], out, options, "png",
                 sequence)
    start = time.perf_counter()
    assert run(batch, LocalExecutor(), quiet=True) == 0
    return (time.perf_counter() - start) / len(batch.items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("--preset", default="draft")
    a = parser.parse_args()
    options = Options(preset=a.preset, size=None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = tmp / "frames"
        frames.mkdir()
        make_frames(frames, a.frames, a.width, a.height)
        rows = [("content frames", flicker(frames), None)]
        for sequence in (False, True):
            out = tmp / f"out-{sequence}"
            per_frame = paint(frames, out, options, sequence)
            rows.append(("--sequence" if sequence else "each frame alone", flicker(out),
                         per_frame))
    print(f"machine: {machine()}")
    print(f"{a.frames} frames of {a.width}x{a.height}, panning {SHIFT} px a frame; preset "
          f"{a.preset}; starry_night style")
    print(f"{'':18} {'flicker median':>15} {'mean':>7} {'max':>7} {'s/frame':>8}")
    for name, values, seconds in rows:
        print(f"{name:18} {statistics.median(values):15.2f} {statistics.fmean(values):7.2f} "
              f"{max(values):7.2f} {'' if seconds is None else f'{seconds:8.1f}'}")


if __name__ == "__main__":
    main()
