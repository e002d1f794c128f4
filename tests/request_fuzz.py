"""Generated plug-in messages for fuzzing the request parser (tests/test_fuzz.py, bench/fuzz.py).

`messages()` draws the bytes a plug-in (or anything else) might write to the core's stdin: valid
requests (styles as files and as pixels, previews) and estimates, the same with one field
replaced by arbitrary JSON, removed, or joined by an unknown one, wrong payload lengths, deep
nesting, huge numbers and raw garbage. `outcome()` feeds one to the parser and names what
happened: "ok", a typed error kind, or "crash" (any other exception: a bug)."""

from __future__ import annotations

import io
import json

from hypothesis import strategies as st

from nst_core import protocol
from nst_core.errors import NSTError
from nst_core.options import Options

OPTION_NAMES = sorted(Options.__dataclass_fields__)
FORMATS = sorted(protocol.SAMPLE_BYTES)

# Any JSON value, including the awkward ones: non-finite floats, integers past 64 bits, strings
# that look like numbers or options, and nesting.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63 - 2, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["u8", "u16", "f32", "keep", "relu4_2", "cuda:0", "lbfgs", "draft", "",
                     "-1", "1e999", "NaN", "../../etc/passwd"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)

good_option_values = {
    "size": st.one_of(st.none(), st.integers(16, 64)), "preset": st.sampled_from(["draft"]),
    "strength": st.floats(0, 10), "seed": st.integers(0, 2**63 - 1),
    "style_layers": st.lists(st.sampled_from(["relu1_1", "relu2_1", "relu3_1"]), min_size=1,
                             max_size=3),
    "device": st.sampled_from(["auto", "cpu"]), "colors": st.sampled_from(["style", "luminance"]),
    "max_memory": st.one_of(st.none(), st.floats(0.75, 64)),
}


@st.composite
def style_entry(draw) -> dict:
    """One "styles" entry: an image file's size, or samples (with or without their "size")."""
    name = draw(st.text(max_size=10))
    if draw(st.booleans()):
        return {"name": name, "size": draw(st.integers(1, 64))}
    w, h = (draw(st.integers(protocol.MIN_STYLE_SIDE, 24)) for _ in "wh")
    c, f = draw(st.integers(1, 4)), draw(st.sampled_from(FORMATS))
    entry = {"name": name, "width": w, "height": h, "channels": c, "format": f}
    if draw(st.booleans()):
        entry["size"] = w * h * c * protocol.SAMPLE_BYTES[f]
    return entry


def style_bytes(entry: dict) -> int:
    if "format" not in entry:
        return entry["size"]
    return (entry["width"] * entry["height"] * entry["channels"]
            * protocol.SAMPLE_BYTES[entry["format"]])


@st.composite
def valid_request(draw) -> tuple[dict, int]:
    """A well-formed request header and the payload length it needs."""
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    channels, fmt = draw(st.integers(1, 4)), draw(st.sampled_from(FORMATS))
    styles = draw(st.lists(style_entry(), min_size=1, max_size=3))
    mask = draw(st.one_of(st.none(), st.builds(
        lambda f: {"width": width, "height": height, "format": f}, st.sampled_from(FORMATS))))
    options = draw(st.fixed_dictionaries({}, optional=good_option_values))
    header = {"type": "request", "protocol": protocol.VERSION, "options": options,
              "content": {"width": width, "height": height, "channels": channels,
                          "format": fmt},
              "styles": styles, "mask": mask,
              "result": {"format": draw(st.sampled_from(FORMATS))}}
    if draw(st.booleans()):
        header["auto_seconds"] = draw(st.floats(1, 1000))
    if draw(st.booleans()):
        header["preview"] = draw(st.one_of(st.none(), st.just({}), st.builds(
            lambda s: {"size": s}, st.integers(*protocol.PREVIEW_SIZES))))
    size = (width * height * channels * protocol.SAMPLE_BYTES[fmt]
            + sum(map(style_bytes, styles))
            + (width * height * protocol.SAMPLE_BYTES[mask["format"]] if mask else 0))
    header["payload"] = size
    return header, size


@st.composite
def valid_estimate(draw) -> tuple[dict, int]:
    header = {"type": "estimate", "protocol": protocol.VERSION,
              "options": draw(st.fixed_dictionaries({}, optional=good_option_values)),
              "content": {"width": draw(st.integers(1, 20000)),
                          "height": draw(st.integers(1, 20000))},
              "auto_seconds": draw(st.floats(1, 1000))}
    return header, 0


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value, the value itself first."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw, base) -> tuple[dict, int]:
    """A valid message with one place broken: replaced by arbitrary JSON, deleted, or given an
    unknown neighbour; or the option names filled with arbitrary values."""
    header, size = draw(base)
    places = [p for p, _ in _paths(header) if p]
    how = draw(st.sampled_from(["replace", "delete", "add", "options"]))
    if how == "options":
        header["options"] = draw(st.dictionaries(st.sampled_from(OPTION_NAMES), json_values,
                                                 min_size=1, max_size=3))
        return header, size
    path = draw(st.sampled_from(places))
    parent = header
    for key in path[:-1]:
        parent = parent[key]
    if how == "replace":
        parent[path[-1]] = draw(json_values)
    elif how == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    else:
        parent.append(draw(json_values))
    return header, size


@st.composite
def messages(draw) -> bytes:
    """The bytes of one message as the core's stdin would carry them."""
    kind = draw(st.sampled_from(["request", "estimate", "mutated", "mutated", "mutated",
                                 "nesting", "garbage", "json"]))
    if kind == "garbage":
        return draw(st.binary(max_size=200))
    if kind == "nesting":
        depth = draw(st.integers(1, 200_000))
        return b'{"type": "request", "options": ' + b"[" * depth + b"]" * depth + b"}\n"
    if kind == "json":  # any JSON at all as a header
        return json.dumps(draw(json_values)).encode() + b"\n"
    base = valid_estimate() if kind == "estimate" or draw(st.booleans()) and kind != "request" \
        else valid_request()
    header, size = draw(mutated(base) if kind == "mutated" else base)
    sent = draw(st.one_of(st.just(size), st.integers(0, size + 64)))  # short, exact or long
    header_bytes = json.dumps(header).encode()  # Python writes NaN/Infinity; the core must cope
    return header_bytes + b"\n" + bytes(sent)


def outcome(data: bytes) -> str:
    """"ok" (parsed), the error's kind, or "crash": anything that is not an NSTError is a bug."""
    try:
        protocol.read_request(io.BytesIO(data))
        return "ok"
    except NSTError as e:
        assert e.message and isinstance(e.message, str)
        return e.kind
    except Exception as e:  # noqa: BLE001 - the point: name whatever escaped
        return f"crash: {type(e).__name__}: {e}"[:300]
