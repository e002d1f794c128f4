"""Full-resolution figures (not a pass/fail test), printed as Markdown tables for the README.

  1. The block path's cost per megapixel-iteration against the whole-image path's, at a size
     where both run, with the block size the planner picks for a 24 MP layer in 6 GB.
  2. tubingen.jpg upscaled to 1, 4, 12 and 24 MP (3:2) x starry_night.jpg at its own size,
     default preset, --size keep --max-memory 6: wall time, the whole process's peak resident
     memory, the estimate made before the run (what the GIMP dialog shows), and the scales that
     ran in blocks. Each run is a child `nst stylize`; results go to bench/out/.

    python bench/fullres.py                 # everything (about an hour on 2 CPU cores)
    python bench/fullres.py --mp 24         # one size
    python bench/fullres.py --ratio-only    # part 1 (a few minutes)
    python bench/fullres.py --crop          # docs/fullres-crop.jpg from the 24 MP result

The crop: a 100 % region of the 24 MP result beside the same region of the 512 px result (the
default size) upscaled to 24 MP, as the filter used to deliver it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst_core import blockwise, budget, estimate, weights  # noqa: E402
from nst_core.device import machine, select_dtype  # noqa: E402
from nst_core.options import Options  # noqa: E402
from nst_core.vgg import VGG19  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from objective import full_objective, load  # noqa: E402

from bench import times_of  # noqa: E402  (bench/bench.py)

SHARED = ROOT.parent / "shared" / "images"
CONTENT, STYLE = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
OUT = ROOT / "bench" / "out"
MEMORY_GB = 6.0


def size_of(mp: float) -> tuple[int, int]:
    """3:2, multiples of 16 near `mp` megapixels (24 MP: 6000x4000)."""
    w = round((mp * 1e6 * 1.5) ** 0.5 / 16) * 16
    return w, round(w / 1.5 / 16) * 16


# -- 1. block vs whole ---------------------------------------------------------------------------


def ratio(width=1536, height=1024, repeats=3) -> None:
    o = Options()
    dtype = select_dtype("auto", torch.device("cpu"))
    net = VGG19(dict.fromkeys(o.content_layers + o.style_layers)).load_weights(weights.load())
    net = net.to(memory_format=torch.channels_last)
    w24, h24 = size_of(24)
    margin = blockwise.margin_for(o.content_layers + o.style_layers)
    fixed = budget.FIXED_BYTES + budget.RUN_BYTES_PER_PIXEL * (w24 * h24 + 1024 * 811)
    plan = budget.plan_scale(w24, h24, 4, dtype, int(MEMORY_GB * budget.GB), fixed, "adam",
                             o.content_layers, margin)
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)) * 255

    def autocast():
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=dtype)

    targets = blockwise.content_targets(net, x, o.content_layers, autocast, plan.core, margin)
    grams = blockwise.style_grams(net, x.flip(-1), o.style_layers, autocast, plan.core, margin)
    rows = []
    for label, core in (("whole image", None), (f"blocks of {plan.core} px", plan.core)):
        obj = blockwise.Objective(net, targets, grams, content_weight=5.0, style_weight=100.0,
                                  layer_weights=dict.fromkeys(o.style_layers, 1.0),
                                  tv_weight=1e-3, range_weight=1.0, autocast=autocast,
                                  core=core, margin=margin)
        times = times_of(functools.partial(obj, x), repeats)
        rows.append((label, float(np.median(times)) / (width * height / 1e6)))
    print(f"\nBlock path vs whole image at {width}x{height} ({str(dtype)[6:]}; the block size "
          f"is what the planner picks for {w24}x{h24} in {MEMORY_GB:g} GB; median of {repeats}):")
    print("\n| path | s per megapixel-iteration | relative |\n|---|---|---|")
    for label, t in rows:
        print(f"| {label} | {t:.2f} | {t / rows[0][1]:.2f}x |", flush=True)


# -- 2. time and memory against size ---------------------------------------------------------------


def run_size(mp: float, schedule: str = "adam", score: bool = True) -> dict:
    """One `nst stylize --size keep` at `mp` megapixels, the detail scales painted by
    `schedule`'s optimiser (adam: the default; lbfgs: bounded L-BFGS)."""
    w, h = size_of(mp)
    OUT.mkdir(parents=True, exist_ok=True)
    content = OUT / f"tubingen-{w}x{h}.png"
    if not content.exists():
        Image.open(CONTENT).convert("RGB").resize((w, h), Image.BICUBIC).save(content)
    style = Image.open(STYLE)
    detail = schedule
    options = Options(size=None, max_memory=MEMORY_GB, detail_optimizer=detail)
    guess = estimate.seconds(options, w, h, [style.size])
    out = OUT / f"starry-{w}x{h}{'' if schedule == 'adam' else '-' + schedule}.png"
    wall, peak, log = child(["stylize", str(content), str(STYLE), "-o", str(out), "--size",
                             "keep", "--max-memory", str(MEMORY_GB), "--detail-optimizer", detail,
                             "-q"])
    plans = re.search(r"scales (.*)", log).group(1)
    blocks = sorted(set(re.findall(r"(\d+x\d+):\d+ \(blocks of (\d+)", plans)))
    objective = None
    if score:  # every layer at the output's size: what the schedule paints, not what it saw
        objective = full_objective(load(out), load(content), [load(STYLE)], options)["total"]
    return dict(mp=w * h / 1e6, size=f"{w}x{h}", wall=wall, peak=peak, guess=guess,
                schedule=schedule, objective=objective,
                blocks=", ".join(f"{s} (blocks of {c})" for s, c in blocks) or "none")


def child(args: list) -> tuple[float, int, str]:
    """Run `nst` with args: (wall seconds, this child's peak resident bytes, its log)."""
    cmd = [sys.executable, "-m", "nst_core", "-v", *args]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not all children's
        err.seek(0)
        log = err.read()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{log[-3000:]}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024, log


def budget_pair(budgets=(16.0, 1.2)) -> None:
    """A tight budget costs time, never quality: 1536x1024 content at 1024 px, draft, fp32,
    in each budget: time, peak against the budget, the full objective, and the mean difference
    of each result from the first."""
    OUT.mkdir(parents=True, exist_ok=True)
    content = OUT / "tubingen-1536x1024.png"
    Image.open(CONTENT).convert("RGB").resize((1536, 1024), Image.BICUBIC).save(content)
    print("\n| --max-memory | wall time | peak (whole process) | peak / budget | full objective "
          "| mean difference from the first |\n|---|---|---|---|---|---|")
    first = None
    for gb in budgets:
        out = OUT / f"budget-{gb:g}.png"
        wall, peak, _ = child(["stylize", str(content), str(STYLE), "-o", str(out), "--size",
                               "1024", "--preset", "draft", "--precision", "fp32",
                               "--max-memory", str(gb), "-q"])
        result = load(out)
        score = full_objective(result, load(content), [load(STYLE)],
                               Options(size=1024, preset="draft", precision="fp32"))["total"]
        first = result if first is None else first
        diff = float(np.abs(result - first).mean() * 255)
        print(f"| {gb:g} GB | {wall:.0f} s | {peak / 2**30:.2f} GB | {peak / (gb * 2**30):.2f} | "
              f"{score:.4g} | {diff:.1f}/255 |", flush=True)


def crop_figure(box=(2700, 1500, 3500, 2100)) -> Path:
    """docs/fullres-crop.jpg: the same 800x600 region of the 512 px result upscaled to 24 MP
    (left) and of the 24 MP result (right), both at 100 %."""
    w, h = size_of(24)
    full = OUT / f"starry-{w}x{h}.jpg"
    if not full.exists():
        raise SystemExit(f"run the 24 MP size first ({full} is missing)")
    small = OUT / "starry-512.png"
    if not small.exists():
        subprocess.run([sys.executable, "-m", "nst_core", "stylize", str(CONTENT), str(STYLE),
                        "-o", str(small), "-q"], check=True)
    left = Image.open(small).convert("RGB").resize((w, h), Image.BICUBIC).crop(box)
    right = Image.open(full).convert("RGB").crop(box)
    gap = 16
    figure = Image.new("RGB", (left.width * 2 + gap, left.height), "white")
    figure.paste(left, (0, 0))
    figure.paste(right, (left.width + gap, 0))
    path = ROOT / "docs" / "fullres-crop.jpg"
    figure.save(path, quality=88)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mp", type=float, nargs="+", default=[1, 4, 12, 24])
    parser.add_argument("--ratio-only", action="store_true")
    parser.add_argument("--crop", action="store_true")
    parser.add_argument("--skip-ratio", action="store_true")
    parser.add_argument("--budget-pair", action="store_true",
                        help="only the 16 GB against 1.2 GB pair (a tight budget's cost)")
    parser.add_argument("--schedule", nargs="+", default=["adam"], choices=["adam", "lbfgs"],
                        help="the detail scales' optimiser: adam (the default) and/or lbfgs")
    parser.add_argument("--no-score", action="store_true",
                        help="skip the full objective (a few minutes at 24 MP)")
    args = parser.parse_args()
    if not CONTENT.exists():
        sys.exit(f"bench needs the test images in {SHARED}")
    if args.budget_pair:
        print(f"machine: {machine()}")
        budget_pair()
        return
    if args.crop:
        print(f"wrote {crop_figure()}")
        return
    print(f"machine: {machine()}")
    if not args.skip_ratio:
        ratio()
    if args.ratio_only:
        return
    print(f"\n| size | schedule | wall time | estimate before the run | peak memory (whole "
          f"process, budget {MEMORY_GB:g} GB) | full objective | scales in blocks |\n"
          "|---|---|---|---|---|---|---|")
    for mp in args.mp:
        for schedule in args.schedule:
            r = run_size(mp, schedule, score=not args.no_score)
            objective = "-" if r["objective"] is None else f"{r['objective']:.4g}"
            print(f"| {r['size']} ({r['mp']:.1f} MP) | {schedule} | {r['wall'] / 60:.1f} min | "
                  f"{r['guess'] / 60:.1f} min | {r['peak'] / 2**30:.2f} GB | {objective} | "
                  f"{r['blocks']} |", flush=True)


if __name__ == "__main__":
    main()
