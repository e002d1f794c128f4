"""`nst demo`: a built-in example whose pictures this program paints itself (no bundled files):
a small landscape as content, and a swirling brush-stroke pattern as style."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import images
from .options import Options


def landscape(width: int = 512, height: int = 384, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    sky = (1 - y) * np.array([70, 120, 200]) + y * np.array([250, 200, 150])
    img = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    r = height // 10
    sx, sy = int(width * 0.72), int(height * 0.3)
    draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=(255, 235, 160))
    horizon = int(height * 0.68)
    for layer, colour in enumerate([(90, 110, 150), (60, 90, 80), (35, 70, 45)]):
        base = height * (0.42 + 0.09 * layer)
        phases = rng.uniform(0, 2 * math.pi, 3)
        xs = np.arange(width + 1)
        ridge = base - sum(height * a * np.sin(xs / width * f * math.pi + p)
                           for a, f, p in zip((0.08, 0.04, 0.015), (2, 5, 13), phases))
        draw.polygon([(0, horizon)] + list(zip(xs.tolist(), ridge.tolist())) + [(width, horizon)],
                     fill=colour)
    water = np.asarray(img)[:horizon][::-1][: height - horizon].astype(np.float32)
    water = water * 0.7 + np.array([20, 40, 70]) * 0.3
    canvas = np.asarray(img).copy()
    canvas[horizon:] = water[: height - horizon].astype(np.uint8)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for _ in range(9):  # a few pines along the shore
        x, h = int(rng.uniform(0.05, 0.5) * width), int(rng.uniform(0.1, 0.18) * height)
        draw.polygon([(x, horizon - h), (x - h // 4, horizon), (x + h // 4, horizon)],
                     fill=(20, 50, 30))
    return img.filter(ImageFilter.SMOOTH)


def swirls(width: int = 512, height: int = 512, seed: int = 2) -> Image.Image:
    """Thick curved strokes along a vortex flow field, in a night-sky palette."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (width, height), (18, 32, 80))
    draw = ImageDraw.Draw(img)
    palette = [(32, 64, 140), (60, 110, 190), (240, 210, 80), (250, 240, 190), (20, 40, 100),
               (90, 160, 210)]
    centres = rng.uniform(0, 1, (4, 2)) * (width, height)
    for _ in range(1400):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        colour = palette[rng.integers(len(palette))]
        points = [(x, y)]
        for _ in range(12):
            dx, dy = 0.0, 0.0
            for cx, cy in centres:  # sum of vortices: strokes curl around the centres
                ox, oy = x - cx, y - cy
                d = math.hypot(ox, oy) + 20
                dx, dy = dx - oy / d, dy + ox / d
            n = math.hypot(dx, dy) + 1e-6
            x, y = x + 6 * dx / n, y + 6 * dy / n
            points.append((x, y))
        draw.line(points, fill=colour, width=int(rng.integers(3, 8)), joint="curve")
    return img


def run_demo(out: Path, size: int = 384):
    """Write content.png, style.png and result.png into `out`; yields lines to print."""
    from .engine import stylize

    out.mkdir(parents=True, exist_ok=True)
    content, style = landscape(), swirls()
    images.save_image(content, out / "content.png")
    images.save_image(style, out / "style.png")
    yield f"content: {out / 'content.png'}\nstyle:   {out / 'style.png'}"
    result = stylize(content, [style], Options(size=size))
    images.save_image(result, out / "result.png")
    images.save_image(side_by_side([content, style, result]), out / "before-after.png")
    yield f"result:  {out / 'result.png'}\nall three side by side: {out / 'before-after.png'}"


def side_by_side(pictures, height: int = 288, gap: int = 8) -> Image.Image:
    scaled = [p.resize((round(p.width * height / p.height), height), Image.LANCZOS)
              for p in pictures]
    strip = Image.new("RGB", (sum(p.width for p in scaled) + gap * (len(scaled) - 1), height),
                      "white")
    x = 0
    for p in scaled:
        strip.paste(p, (x, 0))
        x += p.width + gap
    return strip
