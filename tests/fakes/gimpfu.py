"""A fake of GIMP 2.10's `gimpfu` (and of the `gimp` module it re-exports), for tests.

No PyPI package provides gimpfu, so the GIMP 2.10 plug-in is tested against this module. It
implements what gimp_plugin/neural_style_gimp2.py uses, with the real signatures (checked
against GIMP 2.10's plug-ins/pygimp: gimpfu.py, gimpmodule.c, pygimp-drawable.c,
pygimp-tile.c): a call with a wrong argument count or type fails the way pygimp fails, with a
TypeError. Every gimp.* and pdb.* call is recorded in `state.calls` as (name, args).

Pixels live in memory as numpy arrays in the image's precision ("native" format). Like GIMP
2.10, pixel regions hand out 8-bit perceptual data (selection: 8-bit linear) unless the plug-in
called pdb.gimp_plugin_enable_precision(), after which they carry the native bytes. Writes
through a pixel region reach the image only after drawable.flush(), as with libgimp's tile
cache. Shadow buffers are not implemented.

Images are RGB, GRAY or INDEXED (8-bit perceptual only, as in GIMP; indexed pixels are palette
indices). Layers can have a layer mask (pdb.gimp_layer_create_mask / gimp_layer_add_mask, with
GIMP's checks and its apply/show/edit flags); image.active_drawable is the active layer's mask
while that mask is being edited, as in GIMP.

Helpers for tests, which are not part of gimpfu, start with `fake_` or live at module level
below "test helpers": reset(), new_image(), add_layer(), add_group(), add_mask(),
set_selection(), pixels(), run_noninteractive(), run_interactive().
"""

from __future__ import annotations

import types

import numpy as np

# -- constants (gimpenums / gimpfu, GIMP 2.10 values) -------------------------------------------

TRUE, FALSE = True, False
PDB_INT32, PDB_INT16, PDB_INT8, PDB_FLOAT, PDB_STRING = 0, 1, 2, 3, 4
PDB_COLOR, PDB_ITEM, PDB_DISPLAY, PDB_IMAGE, PDB_LAYER = 10, 11, 12, 13, 14
PDB_CHANNEL, PDB_DRAWABLE, PDB_SELECTION, PDB_VECTORS = 15, 16, 17, 19
PLUGIN = 1
RUN_INTERACTIVE, RUN_NONINTERACTIVE, RUN_WITH_LAST_VALS = 0, 1, 2
RGB, GRAY, INDEXED = 0, 1, 2
RGB_IMAGE, RGBA_IMAGE, GRAY_IMAGE, GRAYA_IMAGE, INDEXED_IMAGE, INDEXEDA_IMAGE = range(6)
NORMAL_MODE = LAYER_MODE_NORMAL_LEGACY = 0
LAYER_MODE_NORMAL = 28
PRECISION_U8_LINEAR, PRECISION_U8_GAMMA = 100, 150
PRECISION_U16_LINEAR, PRECISION_U16_GAMMA = 200, 250
PRECISION_U32_LINEAR, PRECISION_U32_GAMMA = 300, 350
PRECISION_HALF_LINEAR, PRECISION_HALF_GAMMA = 500, 550
PRECISION_FLOAT_LINEAR, PRECISION_FLOAT_GAMMA = 600, 650
PRECISION_DOUBLE_LINEAR, PRECISION_DOUBLE_GAMMA = 700, 750
ADD_MASK_WHITE, ADD_MASK_BLACK, ADD_MASK_ALPHA, ADD_MASK_ALPHA_TRANSFER = 0, 1, 2, 3
ADD_MASK_SELECTION, ADD_MASK_COPY, ADD_MASK_CHANNEL = 4, 5, 6
ADD_WHITE_MASK, ADD_BLACK_MASK, ADD_ALPHA_MASK = 0, 1, 2  # GIMP 2.8's names, kept in 2.10

PF_INT8, PF_INT16, PF_INT32 = PDB_INT8, PDB_INT16, PDB_INT32
PF_INT = PF_INT32
PF_FLOAT = PDB_FLOAT
PF_STRING = PF_VALUE = PDB_STRING
PF_COLOR = PF_COLOUR = PDB_COLOR
PF_IMAGE, PF_LAYER, PF_CHANNEL, PF_DRAWABLE = PDB_IMAGE, PDB_LAYER, PDB_CHANNEL, PDB_DRAWABLE
PF_TOGGLE = PF_BOOL = 1000
PF_SLIDER = 1001
PF_SPINNER = PF_ADJUSTMENT = 1002
PF_FONT, PF_FILE, PF_BRUSH, PF_PATTERN, PF_GRADIENT = 1003, 1004, 1005, 1006, 1007
PF_RADIO, PF_TEXT, PF_PALETTE, PF_FILENAME, PF_DIRNAME, PF_OPTION = (
    1008, 1009, 1010, 1011, 1012, 1013)

# gimpfu._type_mapping: what the PDB sees of each parameter kind
_TYPE_MAPPING = {
    PF_INT8: PDB_INT8, PF_INT16: PDB_INT16, PF_INT32: PDB_INT32, PF_FLOAT: PDB_FLOAT,
    PF_STRING: PDB_STRING, PF_COLOR: PDB_COLOR, PF_IMAGE: PDB_IMAGE, PF_LAYER: PDB_LAYER,
    PF_CHANNEL: PDB_CHANNEL, PF_DRAWABLE: PDB_DRAWABLE, PF_TOGGLE: PDB_INT32,
    PF_SLIDER: PDB_FLOAT, PF_SPINNER: PDB_INT32, PF_FONT: PDB_STRING, PF_FILE: PDB_STRING,
    PF_BRUSH: PDB_STRING, PF_PATTERN: PDB_STRING, PF_GRADIENT: PDB_STRING,
    PF_RADIO: PDB_STRING, PF_TEXT: PDB_STRING, PF_PALETTE: PDB_STRING,
    PF_FILENAME: PDB_STRING, PF_DIRNAME: PDB_STRING, PF_OPTION: PDB_INT32,
}
_NEEDS_EXTRA = (PF_SPINNER, PF_SLIDER, PF_RADIO, PF_OPTION)  # the dialog reads params[i][4]

_CHANNELS = {RGB_IMAGE: 3, RGBA_IMAGE: 4, GRAY_IMAGE: 1, GRAYA_IMAGE: 2, INDEXED_IMAGE: 1,
             INDEXEDA_IMAGE: 2}
_BASE_OF_TYPE = {RGB_IMAGE: RGB, RGBA_IMAGE: RGB, GRAY_IMAGE: GRAY, GRAYA_IMAGE: GRAY,
                 INDEXED_IMAGE: INDEXED, INDEXEDA_IMAGE: INDEXED}
_COLOUR_TYPE = {RGB: RGB_IMAGE, GRAY: GRAY_IMAGE, INDEXED: INDEXED_IMAGE}
_DTYPES = {100: np.uint8, 200: np.uint16, 300: np.uint32, 500: np.float16, 600: np.float32,
           700: np.float64}


class error(RuntimeError):  # noqa: N801 - gimpfu.error / gimp.error
    pass


class CancelError(RuntimeError):
    pass


class _State:
    def __init__(self):
        self.calls = []            # (name, args) of every gimp.* / pdb.* call
        self.messages = []         # gimp.message texts
        self.progress = []         # gimp.progress_update fractions
        self.progress_texts = []   # gimp.progress_init / pdb.gimp_progress_set_text texts
        self.registered = {}       # proc_name -> dict of register()'s arguments
        self.main_calls = 0
        self.precision_enabled = False
        self.fake_missing_procs = set()  # e.g. {"gimp_image_get_precision"}: GIMP 2.8
        self.next_id = 1

    def record(self, name, args):
        self.calls.append((name, tuple(args)))

    def names(self):
        return [name for name, _ in self.calls]


state = _State()


def _new_id():
    state.next_id += 1
    return state.next_id


# -- argument checking like pygimp's PyArg_ParseTuple ---------------------------------------------


def _is_int(v):
    return isinstance(v, (int, np.integer))  # bool is an int to PyArg "i" as well


def _is_float(v):
    return isinstance(v, (int, float, np.integer, np.floating))


def _is_str(v):
    return isinstance(v, str)  # Python 2's str; the fake runs on Python 3


def _parse(name, args, kwargs, spec, required, kwnames=None):
    """Check args against a PyArg-style spec: one predicate per argument, the first `required`
    of them mandatory. kwnames: the keyword names, when the C function takes keywords."""
    args = list(args)
    if kwargs:
        if kwnames is None:
            raise TypeError("%s() takes no keyword arguments" % name)
        for key in kwargs:
            if key not in kwnames:
                raise TypeError("'%s' is an invalid keyword argument for %s()" % (key, name))
            if kwnames.index(key) < len(args):
                raise TypeError("argument for %s() given by name ('%s') and position (%d)"
                                % (name, key, kwnames.index(key) + 1))
        for key in kwnames[len(args):]:
            if key not in kwargs:
                break
            args.append(kwargs[key])
        given = set(kwnames[:len(args)])
        if set(kwargs) - given:
            raise TypeError("%s(): an argument before %s is missing" % (name, sorted(kwargs)))
    if not required <= len(args) <= len(spec):
        raise TypeError("%s() takes %d to %d arguments (%d given)"
                        % (name, required, len(spec), len(args)))
    for value, check in zip(args, spec):
        if not check(value):
            raise TypeError("%s(): argument of the wrong type: %r" % (name, value))
    return args


# -- colour helpers ---------------------------------------------------------------------------


def _srgb_encode(x):
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _srgb_decode(x):
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def _to_unit(values):
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float64) / np.iinfo(values.dtype).max
    return values.astype(np.float64)


def _from_unit(values, dtype):
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        return np.round(np.clip(values, 0.0, 1.0) * top).astype(dtype)
    return values.astype(dtype)


# -- images and drawables --------------------------------------------------------------------------


class Image:
    """gimp.Image(width, height, type)."""

    def __init__(self, *args, **kwargs):
        width, height, base = _parse("gimp.Image.__init__", args, kwargs,
                                     [_is_int, _is_int, _is_int], 3)
        if base not in (RGB, GRAY, INDEXED):
            raise error("could not create a new image: %d is not an image type" % base)
        self.ID = _new_id()
        self.width, self.height, self.base_type = int(width), int(height), int(base)
        self.fake_precision = PRECISION_U8_GAMMA
        self.fake_undo_depth = 0
        self.fake_undo_groups = 0  # completed groups
        self.layers = []           # top-level layers, top first (as image.layers)
        self.active_layer = None
        self.selection = Channel._selection(self)

    @property
    def active_drawable(self):
        """The active layer, or its mask while the mask is being edited."""
        layer = self.active_layer
        if layer is not None and layer.fake_mask is not None and layer.fake_edit_mask:
            return layer.fake_mask
        return layer

    @property
    def fake_dtype(self):
        return _DTYPES[self.fake_precision // 100 * 100]

    @property
    def fake_linear(self):
        return self.fake_precision % 100 == 0

    def __repr__(self):
        return "<gimp.Image (%dx%d)>" % (self.width, self.height)


class Drawable:
    _is_channel = False

    def _setup(self, image, name, width, height, channels, has_alpha):
        self.ID = _new_id()
        self.image = image
        self._name = name
        self.width, self.height = int(width), int(height)
        self._channels = channels
        self.has_alpha = has_alpha
        self._offsets = (0, 0)
        self.fake_data = np.zeros((self.height, self.width, channels), image.fake_dtype)
        self._cache = None  # writes not flushed yet (libgimp's tile cache)
        self.fake_flushes = 0
        self.fake_updates = []

    # attributes of gimp.Drawable
    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        if not _is_str(value):
            raise TypeError("type mismatch")
        self._name = value

    @property
    def offsets(self):
        return self._offsets

    @property
    def bpp(self):
        if state.precision_enabled:
            return self._channels * self.image.fake_dtype().itemsize
        return self._channels

    @property
    def is_rgb(self):
        return self.image.base_type == RGB and not self._is_channel

    @property
    def is_gray(self):
        return self.image.base_type == GRAY and not self._is_channel

    is_grey = is_gray

    @property
    def is_indexed(self):
        return self.image.base_type == INDEXED and not self._is_channel

    @property
    def type(self):
        if self._is_channel:
            return GRAY_IMAGE
        return _COLOUR_TYPE[self.image.base_type] + (1 if self.has_alpha else 0)

    # methods of gimp.Drawable
    def get_pixel_rgn(self, *args, **kwargs):
        x, y, w, h, *rest = _parse(
            "get_pixel_rgn", args, kwargs, [_is_int] * 6, 4,
            ["x", "y", "width", "height", "dirty", "shadow"])
        dirty = rest[0] if len(rest) > 0 else 1
        shadow = rest[1] if len(rest) > 1 else 0
        state.record("drawable.get_pixel_rgn", (self, x, y, w, h, dirty, shadow))
        if shadow:
            raise NotImplementedError("the fake gimpfu has no shadow buffers")
        # pygimp_pixel_rgn_new clamps the rectangle to the drawable
        x, y = max(x, 0), max(y, 0)
        if w < 0:
            w = self.width - x
        if h < 0:
            h = self.height - y
        x, y = min(x, self.width - 1), min(y, self.height - 1)
        w, h = min(w, self.width - x), min(h, self.height - y)
        return PixelRgn(self, x, y, w, h, bool(dirty), bool(shadow))

    def flush(self, *args, **kwargs):
        _parse("flush", args, kwargs, [], 0)
        state.record("drawable.flush", (self,))
        if self._cache is not None:
            self.fake_data = self._cache
            self._cache = None
        self.fake_flushes += 1

    def update(self, *args, **kwargs):
        x, y, w, h = _parse("update", args, kwargs, [_is_int] * 4, 4)
        state.record("drawable.update", (self, x, y, w, h))
        self.fake_updates.append((x, y, w, h))

    # the pixel format pixel regions see
    def _visible(self):
        data = self._cache if self._cache is not None else self.fake_data
        if state.precision_enabled:
            return data
        unit = _to_unit(data)
        if self.image.fake_linear and not self._is_channel:
            colour = self._channels - (1 if self.has_alpha else 0)
            unit[..., :colour] = _srgb_encode(unit[..., :colour])
        return _from_unit(unit, np.uint8)

    def _store(self, x, y, block):
        if self._cache is None:
            self._cache = self.fake_data.copy()
        if not state.precision_enabled:
            unit = _to_unit(block)
            if self.image.fake_linear and not self._is_channel:
                colour = self._channels - (1 if self.has_alpha else 0)
                unit[..., :colour] = _srgb_decode(unit[..., :colour])
            block = _from_unit(unit, self.image.fake_dtype)
        self._cache[y:y + block.shape[0], x:x + block.shape[1]] = block


class Layer(Drawable):
    """gimp.Layer(image, name, width, height[, type[, opacity[, mode]]]): "O!sii|idi"."""

    def __init__(self, *args, **kwargs):
        image, name, width, height, *rest = _parse(
            "gimp.Layer.__init__", args, kwargs,
            [lambda v: isinstance(v, Image), _is_str, _is_int, _is_int, _is_int, _is_float,
             _is_int], 4)
        kind = rest[0] if len(rest) > 0 else RGB_IMAGE
        self.opacity = float(rest[1]) if len(rest) > 1 else 100.0
        self.mode = rest[2] if len(rest) > 2 else NORMAL_MODE
        state.record("gimp.Layer", (image, name, width, height) + tuple(rest))
        if kind not in _CHANNELS or _BASE_OF_TYPE[kind] != image.base_type:
            raise error("could not create %dx%d layer '%s' of type %d on image (ID %d)"
                        % (width, height, name, kind, image.ID))
        if width < 1 or height < 1:
            raise error("could not create %dx%d layer '%s'" % (width, height, name))
        self._setup(image, name, width, height, _CHANNELS[kind], kind in (RGBA_IMAGE,
                                                                           GRAYA_IMAGE))
        self.fake_parent = None
        self.fake_attached = False
        self.children = None  # a list for layer groups
        self.fake_mask = None
        self.fake_apply_mask = self.fake_show_mask = self.fake_edit_mask = False

    @property
    def mask(self):
        return self.fake_mask

    def set_offsets(self, *args, **kwargs):
        x, y = _parse("set_offsets", args, kwargs, [_is_int, _is_int], 2,
                      ["offset_x", "offset_y"])
        state.record("layer.set_offsets", (self, x, y))
        self._offsets = (int(x), int(y))

    def __repr__(self):
        return "<gimp.Layer '%s'>" % self._name


class Channel(Drawable):
    _is_channel = True

    @classmethod
    def _selection(cls, image):
        channel = cls.__new__(cls)
        channel._setup(image, "Selection Mask", image.width, image.height, 1, False)
        return channel

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("the fake gimpfu only has the selection and layer masks")

    def __repr__(self):
        return "<gimp.Channel '%s'>" % self._name


class LayerMask(Channel):
    """A layer mask (pygimp hands it out as a gimp.Channel): made by gimp_layer_create_mask,
    not attached until gimp_layer_add_mask."""

    @classmethod
    def _for(cls, layer, fill):
        mask = cls.__new__(cls)
        mask._setup(layer.image, layer.name + " mask", layer.width, layer.height, 1, False)
        mask.fake_data[...] = _from_unit(np.asarray(fill, np.float64),
                                         layer.image.fake_dtype)[..., None]
        mask.fake_attached = False
        return mask

    def __repr__(self):
        return "<gimp.Channel '%s' (layer mask)>" % self._name


class PixelRgn:
    """gimp.PixelRgn: rgn[x, y], rgn[x0:x1, y], rgn[x, y0:y1], rgn[x0:x1, y0:y1] in drawable
    coordinates, byte strings in and out (pygimp-tile.c's pr_subscript / pr_ass_sub)."""

    def __init__(self, drawable, x, y, w, h, dirty, shadow):
        self.drawable = drawable
        self.x, self.y, self.w, self.h = x, y, w, h
        self.dirty, self.shadow = dirty, shadow
        self.bpp = drawable.bpp

    def __len__(self):
        raise error("Can't get size of pixel region")

    def _range(self, key, start, size, what):
        if _is_int(key):
            if not start <= key < start + size:
                raise IndexError("%s subscript out of range" % what)
            return int(key), int(key) + 1
        if isinstance(key, slice):
            lo, hi, step = key.indices(start + size)
            if lo >= hi or step != 1:
                raise IndexError("invalid %s slice" % what)
            if lo == 0:
                lo = start  # pygimp's quirk: a slice from 0 starts at the region's origin
            if lo < start or hi < start:
                raise IndexError("%s subscript out of range" % what)
            return lo, hi
        raise TypeError("invalid %s subscript" % what)

    def _rect(self, key):
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError("subscript must be a 2-tuple")
        x0, x1 = self._range(key[0], self.x, self.w, "x")
        y0, y1 = self._range(key[1], self.y, self.h, "y")
        return x0, x1, y0, y1

    def __getitem__(self, key):
        x0, x1, y0, y1 = self._rect(key)
        return np.ascontiguousarray(self.drawable._visible()[y0:y1, x0:x1]).tobytes()

    def __setitem__(self, key, value):
        if not isinstance(value, bytes):  # Python 2's str
            raise TypeError("must assign string to subscript")
        x0, x1, y0, y1 = self._rect(key)
        if len(value) != self.bpp * (x1 - x0) * (y1 - y0):
            raise TypeError("string is wrong length")
        dtype = self.drawable.image.fake_dtype if state.precision_enabled else np.uint8
        block = np.frombuffer(value, dtype).reshape(y1 - y0, x1 - x0, self.drawable._channels)
        self.drawable._store(x0, y0, block)

    def __repr__(self):
        return "<gimp.PixelRgn for drawable '%s'>" % self.drawable.name


# -- the gimp module -------------------------------------------------------------------------------


def _message(*args, **kwargs):
    (text,) = _parse("message", args, kwargs, [_is_str], 1)
    state.record("gimp.message", (text,))
    state.messages.append(text)


def _progress_init(*args, **kwargs):
    rest = _parse("progress_init", args, kwargs, [_is_str], 0)
    state.record("gimp.progress_init", tuple(rest))
    if rest:
        state.progress_texts.append(rest[0])


def _progress_update(*args, **kwargs):
    (fraction,) = _parse("progress_update", args, kwargs, [_is_float], 1)
    state.record("gimp.progress_update", (fraction,))
    state.progress.append(float(fraction))


def _displays_flush(*args, **kwargs):
    _parse("displays_flush", args, kwargs, [], 0)
    state.record("gimp.displays_flush", ())


# -- the PDB ---------------------------------------------------------------------------------------


def _image(v):
    return isinstance(v, Image)


def _item(v):
    return isinstance(v, Drawable)


def _layer(v):
    return isinstance(v, Layer)


def _layer_or_none(v):
    return v is None or isinstance(v, Layer)


def _channel(v):
    return isinstance(v, Channel)


def _masked(layer):
    """The layer's mask; GIMP's flag procedures fail on a layer without one."""
    if layer.fake_mask is None:
        raise error("execution error")
    return layer.fake_mask


def _pdb_args(name, args, kwargs, spec):
    """pygimp's PDB calls: positional only, exact count, PDB types."""
    if kwargs:
        raise TypeError("%s() takes no keyword arguments" % name)
    if len(args) != len(spec):
        raise TypeError("wrong number of parameters")
    for value, check in zip(args, spec):
        if not check(value):
            raise TypeError("wrong parameter type")
    state.record("pdb." + name, args)


def _siblings(item):
    parent = item.fake_parent
    return parent.children if parent is not None else item.image.layers


class _PDB:
    """pdb.<procedure>(...) for the procedures the plug-in uses."""

    def __getattribute__(self, name):
        if name in state.fake_missing_procs:  # e.g. GIMP 2.8 has no precision procedures
            raise AttributeError("procedure '%s' not found" % name)
        return object.__getattribute__(self, name)

    def __getattr__(self, name):  # like pygimp: an unknown procedure is an AttributeError
        raise AttributeError("procedure '%s' not found (not implemented by the fake)" % name)

    def gimp_image_undo_group_start(self, *args, **kwargs):
        _pdb_args("gimp_image_undo_group_start", args, kwargs, [_image])
        args[0].fake_undo_depth += 1

    def gimp_image_undo_group_end(self, *args, **kwargs):
        _pdb_args("gimp_image_undo_group_end", args, kwargs, [_image])
        image = args[0]
        if image.fake_undo_depth < 1:
            raise error("execution error")  # gimp_image_undo_group_end: no group open
        image.fake_undo_depth -= 1
        if image.fake_undo_depth == 0:
            image.fake_undo_groups += 1

    def gimp_selection_is_empty(self, *args, **kwargs):
        _pdb_args("gimp_selection_is_empty", args, kwargs, [_image])
        return 0 if np.any(args[0].selection.fake_data) else 1

    def gimp_image_get_selection(self, *args, **kwargs):
        _pdb_args("gimp_image_get_selection", args, kwargs, [_image])
        return args[0].selection

    def gimp_drawable_mask_intersect(self, *args, **kwargs):
        """(non_empty, x, y, width, height) of the selection's bounds within the drawable,
        in drawable coordinates; the whole drawable when nothing is selected."""
        _pdb_args("gimp_drawable_mask_intersect", args, kwargs, [_item])
        drawable = args[0]
        mask = drawable.image.selection.fake_data[..., 0]
        ox, oy = drawable.offsets
        if not mask.any():
            return 1, 0, 0, drawable.width, drawable.height
        ys, xs = np.nonzero(mask)
        x0, x1 = max(xs.min(), ox), min(xs.max() + 1, ox + drawable.width)
        y0, y1 = max(ys.min(), oy), min(ys.max() + 1, oy + drawable.height)
        if x0 >= x1 or y0 >= y1:
            return 0, 0, 0, 0, 0
        return 1, int(x0 - ox), int(y0 - oy), int(x1 - x0), int(y1 - y0)

    def gimp_item_is_layer(self, *args, **kwargs):
        _pdb_args("gimp_item_is_layer", args, kwargs, [_item])
        return 1 if isinstance(args[0], Layer) else 0

    def gimp_item_get_parent(self, *args, **kwargs):
        _pdb_args("gimp_item_get_parent", args, kwargs, [_item])
        return getattr(args[0], "fake_parent", None)

    def gimp_image_get_item_position(self, *args, **kwargs):
        _pdb_args("gimp_image_get_item_position", args, kwargs, [_image, _item])
        image, item = args
        if not getattr(item, "fake_attached", False) or item.image is not image:
            raise error("execution error")
        return _siblings(item).index(item)

    def gimp_image_insert_layer(self, *args, **kwargs):
        _pdb_args("gimp_image_insert_layer", args, kwargs, [_image, _layer, _layer_or_none,
                                                            _is_int])
        image, layer, parent, position = args
        if layer.image is not image or layer.fake_attached:
            raise error("execution error")  # a layer of another image, or added twice
        if parent is not None and (parent.children is None or parent.image is not image):
            raise error("execution error")  # the parent must be a group of this image
        siblings = parent.children if parent is not None else image.layers
        if position < 0:
            position = 0  # GIMP: above the active layer; the fake: on top
        siblings.insert(min(position, len(siblings)), layer)
        layer.fake_parent = parent
        layer.fake_attached = True
        image.active_layer = layer

    def gimp_image_remove_layer(self, *args, **kwargs):
        _pdb_args("gimp_image_remove_layer", args, kwargs, [_image, _layer])
        image, layer = args
        if not layer.fake_attached or layer.image is not image:
            raise error("execution error")
        _siblings(layer).remove(layer)
        layer.fake_attached = False
        layer.fake_removed = True
        if image.active_layer is layer:
            image.active_layer = None

    def gimp_image_set_active_layer(self, *args, **kwargs):
        _pdb_args("gimp_image_set_active_layer", args, kwargs, [_image, _layer])
        image, layer = args
        if not layer.fake_attached or layer.image is not image:
            raise error("execution error")
        image.active_layer = layer

    def gimp_layer_get_mask(self, *args, **kwargs):
        _pdb_args("gimp_layer_get_mask", args, kwargs, [_layer])
        return args[0].fake_mask  # pygimp: None for GIMP's -1

    def gimp_layer_create_mask(self, *args, **kwargs):
        """A new mask of the layer's size, not yet added (WHITE, BLACK and ALPHA only)."""
        _pdb_args("gimp_layer_create_mask", args, kwargs, [_layer, _is_int])
        layer, kind = args
        if not 0 <= kind <= ADD_MASK_CHANNEL:
            raise error("execution error")  # not a GimpAddMaskType
        if kind == ADD_MASK_WHITE:
            fill = np.ones((layer.height, layer.width))
        elif kind == ADD_MASK_BLACK:
            fill = np.zeros((layer.height, layer.width))
        elif kind == ADD_MASK_ALPHA:
            fill = (_to_unit(layer.fake_data[..., -1]) if layer.has_alpha
                    else np.ones((layer.height, layer.width)))
        else:
            raise NotImplementedError("the fake has WHITE, BLACK and ALPHA masks only")
        return LayerMask._for(layer, fill)

    def gimp_layer_add_mask(self, *args, **kwargs):
        """GIMP's checks: one mask per layer, a mask not added elsewhere, of this image and
        the layer's size. The mask becomes applied, shown as the layer, and edited."""
        _pdb_args("gimp_layer_add_mask", args, kwargs, [_layer, _channel])
        layer, mask = args
        if not isinstance(mask, LayerMask) or mask.fake_attached or mask.image is not layer.image:
            raise error("execution error")
        if layer.fake_mask is not None or layer.children is not None:
            raise error("execution error")  # already has one, or a layer group
        if (mask.width, mask.height) != (layer.width, layer.height):
            raise error("execution error")
        mask.fake_attached = True
        layer.fake_mask = mask
        layer.fake_apply_mask, layer.fake_show_mask, layer.fake_edit_mask = True, False, True

    def gimp_layer_get_apply_mask(self, *args, **kwargs):
        _pdb_args("gimp_layer_get_apply_mask", args, kwargs, [_layer])
        _masked(args[0])
        return int(args[0].fake_apply_mask)

    def gimp_layer_set_apply_mask(self, *args, **kwargs):
        _pdb_args("gimp_layer_set_apply_mask", args, kwargs, [_layer, _is_int])
        _masked(args[0])
        args[0].fake_apply_mask = bool(args[1])

    def gimp_layer_get_show_mask(self, *args, **kwargs):
        _pdb_args("gimp_layer_get_show_mask", args, kwargs, [_layer])
        _masked(args[0])
        return int(args[0].fake_show_mask)

    def gimp_layer_set_show_mask(self, *args, **kwargs):
        _pdb_args("gimp_layer_set_show_mask", args, kwargs, [_layer, _is_int])
        _masked(args[0])
        args[0].fake_show_mask = bool(args[1])

    def gimp_layer_get_edit_mask(self, *args, **kwargs):
        _pdb_args("gimp_layer_get_edit_mask", args, kwargs, [_layer])
        _masked(args[0])
        return int(args[0].fake_edit_mask)

    def gimp_layer_set_edit_mask(self, *args, **kwargs):
        _pdb_args("gimp_layer_set_edit_mask", args, kwargs, [_layer, _is_int])
        _masked(args[0])
        args[0].fake_edit_mask = bool(args[1])

    def gimp_item_delete(self, *args, **kwargs):
        _pdb_args("gimp_item_delete", args, kwargs, [_item])
        if getattr(args[0], "fake_attached", False):
            raise error("execution error")  # only items not in an image can be deleted
        args[0].fake_removed = True

    def gimp_progress_set_text(self, *args, **kwargs):
        _pdb_args("gimp_progress_set_text", args, kwargs, [_is_str])
        state.progress_texts.append(args[0])

    def gimp_image_get_precision(self, *args, **kwargs):
        _pdb_args("gimp_image_get_precision", args, kwargs, [_image])
        return args[0].fake_precision

    def gimp_procedural_db_proc_exists(self, *args, **kwargs):
        _pdb_args("gimp_procedural_db_proc_exists", args, kwargs, [_is_str])
        name = args[0].replace("-", "_")
        return 1 if name in type(self).__dict__ and name not in state.fake_missing_procs else 0

    def gimp_plugin_enable_precision(self, *args, **kwargs):
        _pdb_args("gimp_plugin_enable_precision", args, kwargs, [])
        state.precision_enabled = True


pdb = _PDB()

gimp = types.ModuleType("gimp")
gimp.pdb = pdb
gimp.error = error
gimp.Image = Image
gimp.Layer = Layer
gimp.Channel = Channel
gimp.Drawable = Drawable
gimp.PixelRgn = PixelRgn
gimp.message = _message
gimp.progress_init = _progress_init
gimp.progress_update = _progress_update
gimp.displays_flush = _displays_flush


# -- gimpfu's own functions ------------------------------------------------------------------------


def _letter_check(text):
    return all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in text)


def register(proc_name, blurb, help, author, copyright, date, label, imagetypes, params,
             results, function, menu=None, domain=None, on_query=None, on_run=None):
    """gimpfu.register with GIMP 2.10's sanity checks, plus what its dialog needs later."""
    if not _letter_check(proc_name):
        raise error("procedure name contains illegal characters")
    for ent in params:
        if len(ent) < 4:
            raise error("parameter definition must contain at least 4 elements (%s given: %s)"
                        % (len(ent), ent))
        if type(ent[0]) is not int:
            raise error("parameter types must be integers")
        if not _letter_check(ent[1]):
            raise error("parameter name contains illegal characters")
        if ent[0] not in _TYPE_MAPPING:
            raise KeyError(ent[0])  # _query's _type_mapping lookup
        if ent[0] in _NEEDS_EXTRA and len(ent) < 5:
            raise IndexError("the dialog needs params[i][4] for %s" % ent[1])
    for ent in results:
        if len(ent) < 3:
            raise error("result definition must contain at least 3 elements")
    if not proc_name.startswith(("python-", "python_", "extension-", "extension_",
                                 "plug-in-", "plug_in_", "file-", "file_")):
        proc_name = "python-fu-" + proc_name
    state.registered[proc_name] = dict(
        blurb=blurb, help=help, author=author, copyright=copyright, date=date, label=label,
        imagetypes=imagetypes, params=list(params), results=list(results), function=function,
        menu=menu, domain=domain)


def main():
    state.main_calls += 1


def fail(msg):
    gimp.message(msg)
    raise error(msg)


def N_(message):  # noqa: N802
    return message


# -- test helpers (not gimpfu) ---------------------------------------------------------------------


def reset():
    """A fresh GIMP: no calls, no messages, precision not enabled."""
    global state
    old = state
    state = _State()
    state.registered, state.main_calls = old.registered, old.main_calls  # once, at import


def new_image(width, height, base_type=RGB, precision=PRECISION_U8_GAMMA):
    if base_type == INDEXED and precision != PRECISION_U8_GAMMA:
        raise ValueError("GIMP's indexed images are 8-bit perceptual only")
    image = Image(width, height, base_type)
    image.fake_precision = precision
    image.selection.fake_data = np.zeros((height, width, 1), image.fake_dtype)
    return image


def _as_native(image, values):
    values = np.asarray(values)
    if values.dtype == image.fake_dtype:
        return values.copy()
    return _from_unit(_to_unit(values) if values.dtype.kind in "ui" else values,
                      image.fake_dtype)


def add_layer(image, name, values, offsets=(0, 0), parent=None, position=0):
    """A layer holding `values` (HxWxC, C = 1..4; native dtype, uint8, or floats in 0..1;
    palette indices in an indexed image)."""
    values = np.asarray(values)
    height, width, channels = values.shape
    colour = 3 if image.base_type == RGB else 1
    if channels - colour not in (0, 1):
        raise ValueError("%d channels do not fit this image" % channels)
    kind = _COLOUR_TYPE[image.base_type] + channels - colour
    layer = Layer(image, name, width, height, kind, 100.0, NORMAL_MODE)
    layer._offsets = tuple(offsets)
    layer.fake_data = _as_native(image, values)
    siblings = parent.children if parent is not None else image.layers
    siblings.insert(position, layer)
    layer.fake_parent = parent
    layer.fake_attached = True
    image.active_layer = layer
    state.calls.clear()
    return layer


def add_group(image, name, position=0):
    group = add_layer(image, name, np.zeros((image.height, image.width,
                                             4 if image.base_type == RGB else 2)),
                      position=position)
    group.children = []
    return group


def add_mask(layer, values, apply=True, show=False, edit=False):
    """A layer mask holding HxW `values` (floats in 0..1, or uint8) on `layer`."""
    values = np.asarray(values)
    native = (_from_unit(values, layer.image.fake_dtype) if values.dtype.kind == "f"
              else _as_native(layer.image, values))
    mask = LayerMask._for(layer, np.ones((layer.height, layer.width)))
    mask.fake_data = native.reshape(layer.height, layer.width, 1)
    mask.fake_attached = True
    layer.fake_mask = mask
    layer.fake_apply_mask, layer.fake_show_mask, layer.fake_edit_mask = apply, show, edit
    return mask


def set_selection(image, values):
    """The selection channel from HxW values in 0..1 (or uint8)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        native = _from_unit(values, image.fake_dtype)
    else:
        native = _as_native(image, values)
    image.selection.fake_data = native.reshape(image.height, image.width, 1)


def pixels(drawable):
    """What GIMP holds for the drawable (flushed data, native dtype), HxWxC."""
    return drawable.fake_data.copy()


def _pdb_value_ok(pdb_type, value):
    if pdb_type in (PDB_INT32, PDB_INT16, PDB_INT8):
        return _is_int(value)
    if pdb_type == PDB_FLOAT:
        return _is_float(value)
    if pdb_type == PDB_STRING:
        return value is None or _is_str(value)
    if pdb_type == PDB_IMAGE:
        return isinstance(value, Image)
    if pdb_type in (PDB_DRAWABLE, PDB_LAYER, PDB_CHANNEL):
        return isinstance(value, Drawable)
    return True


def run_noninteractive(proc_name, *args):
    """gimpfu._run for RUN_NONINTERACTIVE: the PDB checks each value's type, then the function
    gets the values as they are."""
    proc = state.registered[proc_name]
    params = proc["params"]
    if len(args) != len(params):
        raise TypeError("wrong number of parameters")
    for value, param in zip(args, params):
        if not _pdb_value_ok(_TYPE_MAPPING[param[0]], value):
            raise TypeError("wrong parameter type for %s: %r" % (param[1], value))
    return proc["function"](*args)


def run_interactive(proc_name, image, drawable, **values):
    """gimpfu._interact after the user pressed OK: values start from the registered defaults
    (or `values`, by parameter name with "-" written "_") and reach the function with the
    types gimpfu's widgets give: PF_SPINNER and PF_SLIDER floats, PF_TOGGLE bool, PF_OPTION the
    item's index, PF_FILE a path or None."""
    proc = state.registered[proc_name]
    out = [image, drawable]
    for param in proc["params"][2:]:
        kind, name, default = param[0], param[1], param[3]
        value = values.pop(name.replace("-", "_"), default)
        if kind in (PF_SPINNER, PF_SLIDER):
            low, high, _step = param[4]
            value = float(min(max(value, low), high))  # a gtk.Adjustment clamps
        elif kind == PF_TOGGLE:
            value = bool(value)
        elif kind == PF_OPTION:
            if not 0 <= int(value) < len(param[4]):
                raise ValueError("option %s has no item %r" % (name, value))
            value = int(value)
        elif kind == PF_FILE:
            value = value or None  # gtk.FileChooserButton.get_filename()
        elif kind in (PF_INT, PF_INT8, PF_INT16):
            value = int(value)
        out.append(value)
    if values:
        raise TypeError("unknown parameters %s" % sorted(values))
    return proc["function"](*out)
