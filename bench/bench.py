"""Speed and quality figures, printed as one table (not a pass/fail test).

On ../shared/images/tubingen.jpg x starry_night.jpg at 512 px long side (512x384):
  1. ms per iteration at 256 and 512 px, fp32 and bf16, beside the machine's convolution peak
     (a 512->512 3x3 conv at 64x64) measured just before, and the share of that peak reached;
  2. bf16 vs fp32: the objective after the same iterations (what `precision=auto` relies on);
  3. wall time, peak memory and the final classic objective (5 x content + 100 x style, as the
     classic preset defines it, scored on the saved 8-bit image) for `classic` and the default.
Each stylize run is a subprocess, so its peak memory (max RSS) is its own.

    python bench/bench.py                # everything (about 20 minutes on 2 CPU cores)
    python bench/bench.py --skip-classic # the rest (a few minutes)
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst_core import images, losses, weights  # noqa: E402
from nst_core.device import cpu_name, select_device  # noqa: E402
from nst_core.options import Options  # noqa: E402
from nst_core.vgg import VGG19  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
CONTENT, STYLE = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"


# -- the classic objective, scored on a saved 8-bit image ---------------------------------------


def classic_objective(result_path: Path, content_path=CONTENT, style_path=STYLE) -> float:
    o = Options(preset="classic")
    result = images.to_array(images.load_image(result_path))
    h, w = result.shape[:2]
    content = images.resize_array(images.to_array(images.load_image(content_path)), (w, h))
    style = images.to_array(images.load_image(style_path))
    style = images.resize_array(style, images.fit_size(style.shape[1], style.shape[0], max(w, h)))
    net = VGG19(o.content_layers + o.style_layers).load_weights(weights.load())

    def feats(a):
        with torch.no_grad():
            return net(torch.from_numpy(a).permute(2, 0, 1)[None] * 255.0)

    fr, fc, fs = feats(result), feats(content), feats(style)
    c = sum(losses.content_loss(fr[k], fc[k]) for k in o.content_layers)
    s = sum(losses.style_loss(fr[k], losses.gram(fs[k])) for k in o.style_layers)
    return float(o.resolved("content_weight") * c + o.resolved("style_weight") * s)


# -- one stylize run in a child process ----------------------------------------------------------


def child(args) -> None:
    """Runs in a subprocess: stylize, save, print wall time and peak memory as JSON."""
    from nst_core.engine import stylize

    options = Options(**json.loads(args.child))
    content = images.load_image(CONTENT)
    style = images.load_image(STYLE)
    start = time.perf_counter()
    result = stylize(content, [style], options)
    wall = time.perf_counter() - start
    images.save_image(result, args.out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"wall_s": wall, "peak_bytes": peak}))


def run_child(options: dict, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(options), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["objective"] = classic_objective(out)
    return figures


# -- speed -----------------------------------------------------------------------------------------


def times_of(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def conv_peak(dtype: torch.dtype) -> float:
    """GFLOP/s of one 512->512 3x3 convolution on 64x64, channels_last: the best of 30 runs
    (a peak; a median would let a moment of load on the shared machine lower it)."""
    conv = torch.nn.Conv2d(512, 512, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(1, 512, 64, 64).contiguous(memory_format=torch.channels_last)
    flops = 2 * 512 * 512 * 9 * 64 * 64

    def run():
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            conv(x)

    return flops / min(times_of(run, 30, warmup=3)) / 1e9


def vgg_flops(w: int, h: int, net: VGG19) -> float:
    """FLOPs of one iteration: the forward pass and the backward pass to the input (no weight
    gradients), each about the forward's conv FLOPs."""
    total = 0
    for m in net.features:
        if isinstance(m, torch.nn.Conv2d):
            total += 2 * m.in_channels * m.out_channels * 9 * w * h
        elif isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            w, h = w // 2, h // 2
    return 2.0 * total


def iteration_ms(long_side: int, dtype: torch.dtype) -> tuple[float, float]:
    """Median ms of one full iteration (forward, losses, backward; median of 5) and its GFLOP."""
    o = Options()
    net = VGG19(o.content_layers + o.style_layers).load_weights(weights.load())
    net = net.to(memory_format=torch.channels_last)
    w, h = images.fit_size(512, 384, long_side)
    x = (torch.rand(1, 3, h, w) * 255).requires_grad_(True)
    with torch.no_grad():
        target = {k: losses.gram(v) for k, v in net(x.contiguous(
            memory_format=torch.channels_last)).items()}

    def step():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            feats = net(x.contiguous(memory_format=torch.channels_last))
        loss = sum(losses.style_loss(feats[k], target[k]) for k in o.style_layers)
        loss = loss + losses.content_loss(feats["relu4_2"], feats["relu4_2"].detach().float())
        loss.backward()
        x.grad = None

    return float(np.median(times_of(step, 5))) * 1000, vgg_flops(w, h, net) / 1e9


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-classic", action="store_true", help="leave out the ~20 min run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if not CONTENT.exists():
        sys.exit(f"bench needs the test images in {SHARED}")
    device = select_device("auto")
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"Python {platform.python_version()}, device {device}")
    if device.type != "cpu":
        print("(the speed rows below measure the CPU)")

    # The machine is shared and its speed drifts: each row measures the conv peak right before
    # its iterations, so the share of the peak compares like with like.
    print("\n| size | precision | ms/iteration | GFLOP/iteration | GFLOP/s | conv peak GFLOP/s "
          "(512->512 3x3 at 64x64) | % of conv peak |")
    print("|---|---|---|---|---|---|---|")
    for long_side in (256, 512):
        for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            peak = conv_peak(dt)
            ms, gflop = iteration_ms(long_side, dt)
            rate = gflop / (ms / 1000)
            w, h = images.fit_size(512, 384, long_side)
            print(f"| {w}x{h} | {name} | {ms:.0f} | {gflop:.1f} | {rate:.0f} | {peak:.0f} | "
                  f"{100 * rate / peak:.0f}% |", flush=True)

    runs = [("default (standard), bf16", {}), ("default (standard), fp32", {"precision": "fp32"})]
    if not args.skip_classic:
        runs.append(("classic", {"preset": "classic"}))
    print("\n| run | wall time | peak memory | classic objective (8-bit output) |")
    print("|---|---|---|---|")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, opts in runs:
            r = run_child(dict(opts, size=512), Path(tmp) / f"{len(results)}.png")
            results[label] = r
            print(f"| {label} | {r['wall_s']:.1f} s | {r['peak_bytes'] / 2**20:.0f} MiB | "
                  f"{r['objective']:.4g} |", flush=True)
    bf16, fp32 = results[runs[0][0]], results[runs[1][0]]
    print(f"\nbf16 vs fp32 after the same iterations: objective ratio "
          f"{bf16['objective'] / fp32['objective']:.3f} (auto picks bf16 where within 2%), "
          f"speed-up {fp32['wall_s'] / bf16['wall_s']:.2f}x")
    if "classic" in results:
        c = results["classic"]
        print(f"default vs classic: {c['wall_s'] / bf16['wall_s']:.1f}x faster "
              f"(target at least 15x), objective {bf16['objective'] / c['objective']:.3f} x "
              f"classic's (target at most 1)")


if __name__ == "__main__":
    main()
