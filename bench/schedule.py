"""Schedules compared by what they paint: time per scale against the full objective.

tubingen.jpg upscaled to N megapixels (3:2) x starry_night.jpg, painted at its own size with
each variant in this process (one after the other, so all see the same machine), then scored
with bench/objective.py (every layer at the output's size). Prints a Markdown table; results go
to bench/out/schedule-*.png.

    python bench/schedule.py --mp 4                    # the default against bounded L-BFGS
    python bench/schedule.py --mp 1 --variants default "lb6:detail_iterations=6;detail_size=100"

A variant is "name:key=value;..." (Options fields, or Preset fields, which make a preset of
their own); "default" alone is the default schedule (Adam at the detail scales), "lbfgs" the
same with bounded L-BFGS there (--detail-optimizer lbfgs).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))
from fullres import size_of  # noqa: E402
from objective import full_objective  # noqa: E402

from nst_core import engine, images  # noqa: E402
from nst_core.device import machine  # noqa: E402
from nst_core.options import PRESETS, Options  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
OUT = ROOT / "bench" / "out"
PRESET_FIELDS = {f.name for f in dataclasses.fields(PRESETS["standard"])}


def variant(spec: str) -> tuple[str, Options]:
    """"name:key=value,..." -> Options; preset fields make a preset of their own."""
    name, _, rest = spec.partition(":")
    if not rest:
        rest = {"default": "", "lbfgs": "detail_optimizer='lbfgs'"}[name]
    preset, opts = {}, {}
    for item in filter(None, rest.split(";")):
        key, value = item.split("=")
        try:
            value = eval(value, {})  # numbers and tuples
        except (NameError, SyntaxError):
            pass
        (preset if key in PRESET_FIELDS else opts)[key] = value
    if preset:
        PRESETS[name] = dataclasses.replace(PRESETS[opts.get("preset", "standard")], **preset)
        opts["preset"] = name
    return name, Options(size=None, **opts)


def run(content: np.ndarray, style: np.ndarray, options: Options) -> tuple[np.ndarray, list]:
    """The result and each scale's (size, iterations, seconds)."""
    marks: dict = {}  # scale -> (iterations, when its last iteration ended)

    def progress(p):
        if p.phase == "stylizing":
            marks[p.scale] = (p.iterations, time.perf_counter())

    start = time.perf_counter()
    result = engine.stylize(content, style, options, progress=progress)
    per_scale, last = [], start
    for scale, (iterations, end) in sorted(marks.items()):
        per_scale.append((scale, iterations, end - last))
        last = end
    return result, per_scale


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mp", type=float, default=1.0)
    p.add_argument("--variants", nargs="+", default=["default", "lbfgs"])
    p.add_argument("--max-memory", type=float, default=6.0, help="GB, as bench/fullres.py")
    a = p.parse_args()
    w, h = size_of(a.mp)
    content = images.resize_array(images.to_array(images.load_image(SHARED / "tubingen.jpg")),
                                  (w, h))
    style = images.to_array(images.load_image(SHARED / "starry_night.jpg"))
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{w}x{h}; {machine()}")
    rows = []
    for spec in a.variants:
        name, options = variant(spec)
        options = options.replace(max_memory=options.max_memory or a.max_memory)
        t0 = time.perf_counter()
        result, per_scale = run(content, style, options)
        seconds = time.perf_counter() - t0
        images.to_pil(result).save(OUT / f"schedule-{a.mp:g}mp-{name}.png")
        terms = full_objective(images.to_array(images.to_pil(result)), content, [style],
                               options)
        rows.append((name, seconds, terms, per_scale))
        print(f"{name}: {seconds:.1f} s, objective {terms['total']:.4g}; "
              + " ".join(f"{k} {v:.3g}" for k, v in terms.items() if k != "total")
              + "; scales " + " ".join(f"{n}:{s:.1f}s" for _, n, s in per_scale), flush=True)
    base_t, base_o = rows[0][1], rows[0][2]["total"]
    print("\n| schedule | time | vs first | full objective | vs first |\n|---|---|---|---|---|")
    for name, seconds, terms, _ in rows:
        print(f"| {name} | {seconds:.0f} s | {seconds / base_t:.2f}x | {terms['total']:.4g} | "
              f"{terms['total'] / base_o:.3f}x |")


if __name__ == "__main__":
    main()
