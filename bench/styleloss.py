"""Gram vs W2 style loss: wall time and objectives, printed as one table (not a pass/fail test).

On ../shared/images/tubingen.jpg x starry_night.jpg at 512 px (standard preset): each loss paints
once, in a child process of its own (wall time, peak memory). Each result is then scored in fp32
on its saved 8-bit image by the same three measures: the content loss, the Gram style loss and
the W2 style loss (each with the standard preset's weights, 5 and 100), so neither result is
judged only by the objective it optimised. The two pictures go side by side, after the content,
into docs/styleloss.jpg.

    python bench/styleloss.py               # about 5 minutes on 2 CPU cores
    python bench/styleloss.py --size 256    # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst_core import images, losses, weights  # noqa: E402
from nst_core.device import cpu_name  # noqa: E402
from nst_core.options import Options  # noqa: E402
from nst_core.vgg import VGG19  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
CONTENT, STYLE = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
PICTURE = ROOT / "docs" / "styleloss.jpg"


def child(args) -> None:
    """Runs in a subprocess: stylize, save, print wall time and peak memory as JSON."""
    from nst_core.engine import stylize

    content, style = images.load_image(args.content), images.load_image(args.style)
    start = time.perf_counter()
    result = stylize(content, [style], Options(**json.loads(args.child)))
    wall = time.perf_counter() - start
    images.save_image(result, args.out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"wall_s": wall, "peak_bytes": peak}))


def run_child(options: dict, out: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(options), "--out", str(out),
           "--content", str(args.content), "--style", str(args.style)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def scores(result_path: Path, content_path: Path, style_path: Path) -> dict:
    """The result's content loss and both style losses, weighted as the standard preset does,
    in fp32 on the whole image; the style at the result's long side, as the engine sizes it."""
    o = Options()
    net = VGG19(o.content_layers + o.style_layers).load_weights(weights.load())

    def tensor(path, size=None):
        a = images.to_array(images.load_image(path))
        if size is not None:
            a = images.resize_array(a, size)
        return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous() * 255.0

    result = tensor(result_path)
    h, w = result.shape[-2:]
    style = images.load_image(style_path)
    with torch.no_grad():
        fr = net(result)
        fc = net(tensor(content_path, (w, h)), o.content_layers)
        fs = net(tensor(style_path, images.fit_size(*style.size, min(max(w, h),
                                                                    max(style.size)))))
    out = {"content": 5.0 * float(sum(losses.content_loss(fr[k], fc[k])
                                      for k in o.content_layers))}
    for kind in (losses.GRAM, losses.W2):
        out[kind.name] = 100.0 * float(sum(
            kind.loss(losses.style_stats(fr[k], kind),
                      kind.target(losses.style_stats(fs[k], kind)))
            for k in o.style_layers))
    return out


def side_by_side(paths: list[Path], labels: list[str], out: Path, height: int = 384) -> None:
    tiles = []
    for path in paths:
        img = images.load_image(path).convert("RGB")
        tiles.append(img.resize((round(img.width * height / img.height), height),
                                Image.Resampling.LANCZOS))
    sheet = Image.new("RGB", (sum(t.width for t in tiles), height), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for tile, label in zip(tiles, labels):
        sheet.paste(tile, (x, 0))
        draw.rectangle((x, 0, x + 8 + 7 * len(label), 18), fill="black")
        draw.text((x + 4, 3), label, fill="white")
        x += tile.width
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--content", type=Path, default=CONTENT)
    parser.add_argument("--style", type=Path, default=STYLE)
    parser.add_argument("--picture", type=Path, default=PICTURE)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if not args.content.exists() or not args.style.exists():
        sys.exit(f"styleloss needs the test images in {SHARED}")
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"Python {platform.python_version()}")
    print(f"{args.content.name} x {args.style.name}, {args.size} px, preset {args.preset}; "
          f"scores on the saved 8-bit results, fp32 (5 x content, 100 x style; lower is better)")
    print("\n| style loss | wall time | peak memory | content | Gram style | W2 style | "
          "content + Gram | content + W2 |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for loss in ("gram", "w2"):
            out = Path(tmp) / f"{loss}.png"
            r = run_child({"size": args.size, "preset": args.preset, "style_loss": loss}, out,
                          args)
            s = scores(out, args.content, args.style)
            paths.append(out)
            print(f"| {loss} | {r['wall_s']:.0f} s | {r['peak_bytes'] / 2**20:.0f} MiB | "
                  f"{s['content']:.4g} | {s['gram']:.4g} | {s['w2']:.4g} | "
                  f"{s['content'] + s['gram']:.4g} | {s['content'] + s['w2']:.4g} |", flush=True)
        side_by_side([args.content, *paths], ["content", "gram", "w2"], args.picture)
    print(f"\npictures: {args.picture}")


if __name__ == "__main__":
    main()
