"""Screenshot of the plug-in's dialog in a real GIMP window (Xvfb in the chroot) -> PNG.

    python -m tests.gimp3.screenshot [docs/gimp-dialog.png]     (or tests/gimp3/screenshot.sh)

Opens the demo's landscape (nst_core/demo.py) in GIMP 3, runs
Filters > Artistic > Neural Style Transfer... interactively with the demo's swirls as the style,
grabs the screen while the dialog is open (Xvfb's frame buffer, an XWD file), then cancels.
Not part of the test suite.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from tests.gimp3 import chroot, harness

MAX_BYTES = 300_000


def xwd_to_image(path: Path):
    """A 24/32-bit TrueColor XWD file (what Xvfb -fbdir keeps) as a PIL RGB image."""
    from PIL import Image

    data = path.read_bytes()
    for order in (">", "<"):
        fields = struct.unpack(order + "25I", data[:100])
        if fields[1] == 7:  # XWD_FILE_VERSION
            break
    else:
        raise ValueError(f"{path} is not an XWD file")
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line, ncolors = fields[7], fields[11], fields[12], \
        fields[19]
    if bits_per_pixel != 32:
        raise ValueError(f"{path}: {bits_per_pixel} bits per pixel is not supported")
    offset = header_size + 12 * ncolors
    raw = "BGRX" if byte_order == 0 else "XRGB"
    return Image.frombuffer("RGB", (width, height), data[offset:offset + bytes_per_line * height],
                            "raw", raw, bytes_per_line, 1).copy()


def content_bbox(img):
    """The area that is not the empty X root (black)."""
    from PIL import Image, ImageChops

    bg = img.getpixel((img.width - 1, img.height - 1))
    diff = ImageChops.difference(img, Image.new("RGB", img.size, bg))
    return diff.getbbox() or (0, 0, img.width, img.height)


def save_small(img, out: Path):
    """PNG under MAX_BYTES: full colour if it fits, else an adaptive 256-colour palette."""
    img.save(out, optimize=True)
    if out.stat().st_size > MAX_BYTES:
        img.quantize(colors=256, method=2, dither=1).save(out, optimize=True)
    scale = 0.9
    while out.stat().st_size > MAX_BYTES and scale > 0.4:
        smaller = img.resize((int(img.width * scale), int(img.height * scale)), 1)
        smaller.quantize(colors=256, method=2, dither=1).save(out, optimize=True)
        scale -= 0.1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else harness.REPO / "docs" / "gimp-dialog.png")
    try:
        s = harness.open_session(chroot.PACKAGES + harness.GUI_PACKAGES)
    except chroot.Unavailable as e:
        print(f"cannot make the screenshot here: {e}", file=sys.stderr)
        return 2
    try:
        # The demo's own pictures (nst_core/demo.py): images the project may ship.
        from nst_core.demo import landscape, swirls

        style, content = s.dir / "swirls.png", s.dir / "landscape.png"
        swirls().save(style)
        landscape(640, 480).save(content)
        params = {"mode": "screenshot", "style": s.inside(style), "options": {},
                  "content": s.inside(content)}
        proc, results = harness.run_gui(s, harness.HERE / "gui_checks.py", params, timeout=300)
        screen = s.dir / "screen.xwd"
        if not screen.exists():
            log = (s.dir / "driver.log").read_text() if (s.dir / "driver.log").exists() else ""
            print(f"no screenshot was taken (exit {proc.returncode}): {results}\n{log[-2000:]}",
                  file=sys.stderr)
            return 1
        img = xwd_to_image(screen)
        img = img.crop(content_bbox(img))
        out.parent.mkdir(parents=True, exist_ok=True)
        save_small(img, out)
        print(f"{out}: {img.width}x{img.height}, {out.stat().st_size} bytes, GIMP {s.version}")
        return 0
    finally:
        harness.close_session(s)


if __name__ == "__main__":
    sys.exit(main())
