"""A submitted job's form, checked completely before any work, as the CLI checks its inputs:
options through Options (one error naming the option), images through images.load_image (header,
size, decodability). Every failure is one Rejected with an HTTP status (400, or 413 for sizes)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .. import images, protocol
from ..errors import NSTError, OptionError, TooLargeError
from ..options import INITS, Options
from . import builtin
from .pictures import Samples, decode_content

# A 10000x10000 picture; a tiny PNG can declare far more. Styles too: a PNG is decoded in full
# before it is reduced to what the run needs, so this bounds each upload's decoding (400 MB).
MAX_PIXELS = 100_000_000
LIVE_SIZES = protocol.PREVIEW_SIZES  # the live picture's long side (0: none)
STATUS = {"too_large": 413}


class Rejected(Exception):
    """A submission the server will not run: HTTP status, error kind, one sentence, the field."""

    def __init__(self, message: str, kind: str = "bad_request", status: int = 400,
                 field: str | None = None):
        super().__init__(message)
        self.message, self.kind, self.status, self.field = message, kind, status, field

    @classmethod
    def from_error(cls, e: NSTError, field: str | None = None) -> Rejected:
        return cls(e.message, e.kind, STATUS.get(e.kind, 400), field)

    def to_json(self) -> dict:
        return {"error": {"kind": self.kind, "message": self.message, "field": self.field}}


@dataclass
class Submission:
    options: dict  # as given (checked): what the worker's request carries
    content: Samples
    content_name: str
    styles: list = field(default_factory=list)  # [(name, file bytes)]
    live: int = 0  # long side of the live picture sent while it paints; 0: none

    @property
    def result_format(self) -> str:
        return "u8" if self.content.format == "u8" else "u16"


def check_options(text: str | None) -> tuple[dict, Options]:
    try:
        values = json.loads(text) if text else {}
    except RecursionError:  # 100,000 nested brackets: a 400, not a 500
        raise Rejected('"options" is nested too deeply to be options', field="options") from None
    except ValueError as e:
        raise Rejected(f'"options" is not valid JSON: {e}', field="options") from None
    if not isinstance(values, dict):
        raise Rejected('"options" must be a JSON object of option names and values',
                       field="options")
    # The server's files are not the user's: init may not name one.
    init = values.get("init")
    if init is not None and init not in INITS:
        raise Rejected(f"init must be one of {', '.join(INITS)} on the web page (an image "
                       "file on the server cannot be chosen)", "bad_option", field="init")
    try:
        options = Options.from_dict(values)
    except OptionError as e:
        raise Rejected(e.message, e.kind, field=e.field) from None
    return values, options


def check_live(text: str | None) -> int:
    lo, hi = LIVE_SIZES
    try:
        live = int(text or 0)
    except ValueError:
        live = -1
    if live != 0 and not lo <= live <= hi:
        raise Rejected(f'"live" must be 0 (no live picture) or a long side from {lo} to {hi} '
                       f"px, not {text!r}"[:160], field="live")
    return live


def check_submission(content: tuple[str, bytes] | None, styles: list, builtins: list,
                     options_text: str | None, live_text: str | None) -> Submission:
    """styles: [(file name, bytes)] uploaded; builtins: built-in style ids."""
    values, options = check_options(options_text)
    live = check_live(live_text)
    if content is None or not content[1]:
        raise Rejected("choose a content image (the picture to paint)", field="content")
    style_files = [s for s in styles if s[1]]
    for style_id in builtins:
        if style_id not in builtin.STYLES:
            raise Rejected(f"there is no built-in style {style_id[:40]!r}; choose one of "
                           f"{', '.join(builtin.STYLES)}", field="builtin")
        style_files.append((f"{style_id}.png", builtin.png(style_id)))
    if not style_files:
        raise Rejected("choose at least one style image (or a built-in style)", field="style")
    if len(style_files) > protocol.MAX_STYLES:
        raise Rejected(f"{len(style_files)} style images: at most {protocol.MAX_STYLES} can be "
                       "blended", field="style")
    if options.style_blend is not None and len(options.style_blend) != len(style_files):
        raise Rejected(f"style_blend has {len(options.style_blend)} weights for "
                       f"{len(style_files)} style image(s): give one per style",
                       "bad_option", field="style_blend")
    name, data = content
    try:
        _check_declared(data, "content image", name)
        samples = decode_content(data, name, options.size)
    except NSTError as e:
        raise Rejected.from_error(e, "content") from None
    side = options.style_side(max(samples.width, samples.height))
    for style_name, style_data in style_files:
        try:
            _check_declared(style_data, "style image", style_name)
            images.load_image(style_data, what="style image", name=style_name, max_side=side)
        except NSTError as e:
            raise Rejected.from_error(e, "style") from None
    return Submission(values, samples, name, style_files, live)


def _check_declared(data: bytes, what: str, name: str) -> None:
    """The declared size from the header alone, before anything is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        import io

        w, h = Image.open(io.BytesIO(data)).size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return  # load_image says what is wrong with it
    if w * h > MAX_PIXELS:
        raise TooLargeError(f"{what} {name} declares {w}x{h} pixels, over the "
                            f"{MAX_PIXELS // 1_000_000} MP the web page takes")
