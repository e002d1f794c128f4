"""Batch throughput: images per minute for 16 images at 256 px (preset draft), three ways:

  1. `nst batch` in one process (the network loaded once, torch on every core);
  2. the same batch with `--ray` across a two-node Ray cluster started here on 127.0.0.1 (one CPU
     per node, one image per node at a time, torch with one thread each): on one machine this
     shows Ray's overhead, not a gain;
  3. 16 single `nst stylize` runs, one after another (each starts Python, loads the network):
     what a batch saves per image.

Wall times of whole commands (the Ray cluster's own start is not counted: a cluster outlives its
batches). The content images are 16 crops of ../shared/images/tubingen.jpg, the style
starry_night.jpg.

    python bench/batch.py               # about 15 minutes on 2 CPU cores
    python bench/batch.py --repeats 3   # the median of 3 runs of each batch
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from nst_core.device import machine  # noqa: E402
from tests.ray_cluster import Cluster  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
CONTENT, STYLE = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
NST = [sys.executable, "-m", "nst_core"]


def make_inputs(folder: Path, n: int, size: int) -> None:
    """n different crops of the content photo (a 3:4 window sliding over it), long side `size`."""
    folder.mkdir(parents=True)
    with Image.open(CONTENT) as img:
        img = img.convert("RGB")
        w, h = img.size
        cw, ch = round(h * 4 / 3 * 0.8), round(h * 0.8)
        for k in range(n):
            x = round((w - cw) * k / max(n - 1, 1))
            y = round((h - ch) * (k % 4) / 3)
            crop = img.crop((x, y, x + cw, y + ch)).resize((size, round(size * ch / cw)))
            crop.save(folder / f"img{k:02d}.png")


def timed(args: list, env=None) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(map(str, args))}\n{done.stdout}"
                 f"{done.stderr}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--preset", default="draft")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each batch (median)")
    parser.add_argument("--skip-single", action="store_true", help="no single nst stylize runs")
    args = parser.parse_args()
    n = args.images
    print(f"machine: {machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    print(f"{n} images at {args.size} px ({CONTENT.name} crops) x {STYLE.name}, preset "
          f"{args.preset}; medians of {args.repeats} run(s) per batch", flush=True)
    common = ["--preset", args.preset, "--size", str(args.size)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="nst-bench-batch-") as tmp:
        tmp = Path(tmp)
        make_inputs(tmp / "in", n, args.size)

        def batch(extra, env, label, r):
            out = tmp / f"out-{label}-{r}"
            wall = timed([*NST, "batch", tmp / "in", "--style", STYLE, "-o", out, *common, "-q",
                          *extra], env)
            made = len(list(out.glob("*.png")))
            if made != n:
                sys.exit(f"{label}: {made} of {n} results written")
            print(f"  {label} run {r + 1}: {wall:.1f} s (load average {os.getloadavg()[0]:.1f})",
                  flush=True)
            return wall

        # Taken in turns, so that both see the same load on a shared machine.
        walls: dict[str, list[float]] = {"one": [], "ray": []}
        # Token authentication of its own (Ray 2.5x), given to the nodes and the `nst batch`s.
        cluster = Cluster({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)},
                          object_store=200 * 2**20)
        try:
            cluster.start("head", head=True)
            cluster.start("worker")
            for r in range(args.repeats):
                walls["one"].append(batch([], None, "one process", r))
                walls["ray"].append(batch(["--ray", cluster.address], cluster.env, "ray", r))
        finally:
            cluster.stop()
        one, on_ray = statistics.median(walls["one"]), statistics.median(walls["ray"])
        rows.append(("`nst batch`, one process", one, n))
        rows.append(("`nst batch --ray`, 2 local nodes x 1 CPU", on_ray, n))

        single = []
        if not args.skip_single:
            for k, path in enumerate(sorted((tmp / "in").iterdir())):
                single.append(timed([*NST, "stylize", path, STYLE, "-o", tmp / f"s{k}.png",
                                     *common, "-q"], None))
                print(f"  nst stylize {k + 1}/{n}: {single[-1]:.1f} s", flush=True)
            rows.append((f"{n} x `nst stylize`", sum(single), n))

    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print("\n| how | wall time | images per minute | s per image |")
    print("|---|---|---|---|")
    for label, wall, count in rows:
        print(f"| {label} | {wall:.0f} s | {count / wall * 60:.1f} | {wall / count:.1f} |")
    print(f"\nRay over one process: {(on_ray - one) / n:+.1f} s per image "
          f"({on_ray / one:.2f}x the wall time)")
    if single:
        med = statistics.median(single)
        print(f"single `nst stylize` runs: median {med:.1f} s per image; a batch in one process "
              f"{one / n:.1f} s per image, so a batch saves {med - one / n:.1f} s per image "
              f"(Python start, imports, the network's load)")


if __name__ == "__main__":
    main()
