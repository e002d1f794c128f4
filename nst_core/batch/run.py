"""`nst batch`: plan the batch, skip what is done, hand the rest to an executor, write each
result as it comes (atomically, then recorded in the manifest), and sum up."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import images
from ..errors import ImageError, NSTError, OptionError
from ..options import INITS, Options
from .executor import Executor, make_executor
from .inputs import Input, discover, output_names, style_labels
from .manifest import LOCK, NAME, Manifest, fingerprint
from .motion import carry
from .progress import BatchProgress
from .task import Done, Job

EXIT_SOME_FAILED = 1
EXIT_INTERRUPTED = 130


@dataclass
class Item:
    """One result to make: an input in one style."""
    key: str  # the output's path under OUTDIR, as text
    input: Input
    style: int
    print: str  # what made it (manifest.fingerprint)
    # --sequence: the frame before (None for the first); a chain, so not in repr or ==
    before: Item | None = field(default=None, repr=False, compare=False)


@dataclass
class Batch:
    outdir: Path
    options: Options
    styles: list[Path]
    fmt: str
    sequence: bool
    items: list[Item]
    ignored: list[Path]


def run_from_args(args, options: Options) -> int:
    if args.ray == "":
        raise OptionError("--ray= needs a cluster address after the = (HOST:PORT or auto); "
                          "--ray alone starts a private Ray instance on this machine")
    if args.ray not in (None, "local") and Path(args.ray).exists():
        raise OptionError(f"--ray takes a cluster address, and {args.ray} is a file or folder: "
                          "put --ray after the inputs, or write --ray=ADDRESS")
    if not args.quiet:  # thousands of inputs take seconds to find and check: say so
        print("nst: finding the inputs and checking their output names...", flush=True)
    batch = plan(args.inputs, args.styles, Path(args.output_dir), options, args.format,
                 args.sequence)
    executor = make_executor(args.ray, args.cpus_per_task)
    return run(batch, executor, quiet=args.quiet)


def plan(patterns, styles, outdir: Path, options: Options, fmt: str, sequence: bool) -> Batch:
    """Everything checked before any work: the options, the styles (each must decode), OUTDIR,
    the inputs and their output names."""
    if options.style_blend is not None:
        raise OptionError("--style-blend blends the styles of one picture; in a batch each "
                          "--style makes its own results")
    if options.init not in (None, *INITS):
        raise OptionError('in a batch --init is "content", "noise" or "style", not a file')
    styles = [Path(s) for s in styles]
    for s in styles:
        images.load_image(s, what="style image", max_side=64)
    if outdir.exists() and not outdir.is_dir():
        raise ImageError(f"output folder {outdir} is a file, not a folder")
    outdir.mkdir(parents=True, exist_ok=True)
    images.check_writable(outdir / f"probe.{fmt}")
    check_record(outdir)
    found = discover(list(patterns), outdir)
    names = output_names(found.inputs, style_labels([str(s) for s in styles]), fmt)
    check_places(outdir, names, found.inputs)
    items = []
    for k, style in enumerate(styles):
        before, last = "", None  # --sequence: each frame's fingerprint includes the one before
        for n, inp in enumerate(found.inputs):
            out = outdir / names[n, k]
            if images.same_file(out, inp.path) or images.same_file(out, style):
                raise ImageError(f"{out} would replace the input {inp.path}; choose another "
                                 "output folder or format")
            before = fingerprint(options, inp.path, style, fmt, before if sequence else "")
            items.append(Item(names[n, k].as_posix(), inp, k, before,
                              last if sequence else None))
            last = items[-1]
    return Batch(outdir, options, styles, fmt, sequence, items, found.ignored)


def check_record(outdir: Path) -> None:
    """The batch's own files must be files: a folder there would stop it after the first image."""
    for name in (NAME, LOCK):
        if (outdir / name).is_dir():
            raise ImageError(f"{outdir / name} is a folder, where nst batch keeps its record of "
                             "what is done; remove or rename it")


def check_places(outdir: Path, names: dict, inputs: list) -> None:
    """Every result's name fits the file system and its place is free for it, before any work:
    no name part over the folder's limit, no file where a subfolder must go, no folder where a
    result must go."""
    name_max = images.name_max(outdir)
    folders: dict = {}  # subfolder under OUTDIR -> the input that needs it (checked once each)
    for (n, _), name in names.items():
        source = inputs[n].path
        for part in name.parts:
            if len(os.fsencode(part)) > name_max:
                raise ImageError(f"the result for {source} would be named {part[:40]}..., "
                                 f"longer than the {name_max} bytes a name may have in "
                                 f"{outdir}; rename the input (or the style file)")
        for parent in list(name.parents)[:-1]:
            folders.setdefault(parent, source)
        if (outdir / name).is_dir():
            raise ImageError(f"{outdir / name} is a folder, where the result for {source} must "
                             "go; remove or rename it")
    for folder, source in folders.items():
        place = outdir / folder
        if place.exists() and not place.is_dir():
            raise ImageError(f"{place} is a file, where the folder for the result of {source} "
                             "must go; remove or rename it")


def run(batch: Batch, executor: Executor, quiet: bool = False) -> int:
    try:
        with Manifest(batch.outdir) as manifest:
            return _run(batch, executor, manifest, quiet)
    finally:
        executor.close()


def _run(batch: Batch, executor: Executor, manifest: Manifest, quiet: bool) -> int:
    todo = [i for i in batch.items if not done(i, manifest)]
    skipped = len(batch.items) - len(todo)
    failures: list[str] = []
    names = {i.key: str(i.input.path) for i in todo}
    style_bytes = [s.read_bytes() for s in batch.styles]
    painter = _Painter(batch, manifest, style_bytes)
    try:
        with BatchProgress(len(todo), names, quiet) as bar:
            if skipped:
                bar.message(f"{skipped} of {len(batch.items)} results are already done "
                            f"(recorded in {manifest.path}); painting the other {len(todo)}")
            for event in painter.events(todo, executor, bar.update):
                message = event.message if not isinstance(event, Done) else painter.write(event)
                if message:  # this image failed; the batch goes on
                    failures.append(message)
                bar.finished(event.key, message)
    except KeyboardInterrupt:
        print(f"nst: interrupted; {painter.written} result(s) written this run, each complete. "
              "Run the same command again to paint the rest.")
        return EXIT_INTERRUPTED
    finally:
        executor.close()  # cancel what still runs before the message and the summary
    print(summary(painter.written, skipped, failures, batch))
    return EXIT_SOME_FAILED if failures else 0


FRESH = "-fresh"  # recorded with a --sequence frame painted without the frame before


def done(item: Item, manifest: Manifest) -> bool:
    """Whether item's result is there and current. A --sequence frame painted without the frame
    before (which had failed) stays done only while that frame is not."""
    if manifest.is_done(item.key, item.print):
        return True
    b = item.before
    return b is not None and manifest.is_done(item.key, item.print + FRESH) and \
        not manifest.is_done(b.key, b.print)


def summary(written: int, skipped: int, failures: list[str], batch: Batch) -> str:
    lines = [f"{written} painted, {skipped} already done, {len(failures)} failed "
             f"(results in {batch.outdir})"]
    lines += [f"  failed: {m}" for m in failures]
    if batch.ignored:
        shown = ", ".join(str(p) for p in batch.ignored[:5])
        more = f" and {len(batch.ignored) - 5} more" if len(batch.ignored) > 5 else ""
        lines.append(f"  ignored {len(batch.ignored)} file(s) that are not images: {shown}{more}")
    return "\n".join(lines)


class _Painter:
    """Makes the jobs (reading each input only when its turn comes) and writes the results."""

    def __init__(self, batch: Batch, manifest: Manifest, style_bytes: list[bytes]):
        self.batch, self.manifest, self.style_bytes = batch, manifest, style_bytes
        self.items = {i.key: i for i in batch.items}
        self.written = 0
        self.fresh: set[str] = set()  # --sequence frames painted without the frame before

    def job(self, item: Item, start=None, hold=None) -> Job:
        content, error = b"", None
        try:
            content = item.input.path.read_bytes()
        except OSError as e:  # the job fails with the reason, named, where it runs
            error = f"input image {item.input.path} is unreadable ({e.strerror})"
        return Job(item.key, str(item.input.path), content, self.style_bytes[item.style],
                   self.batch.options, self.batch.fmt, start, hold, error)

    def events(self, todo: list[Item], executor: Executor, on_update):
        if not self.batch.sequence:
            yield from executor.run((self.job(i) for i in todo), on_update)
            return
        # Frames one by one: each starts from the previous frame's result, moved along with the
        # content (motion.py), and holds to it where the content is the same: less flicker.
        previous: dict[int, tuple[Item, np.ndarray]] = {}  # style -> last frame and result
        for item in todo:
            carried = self.carried(item, previous.get(item.style))
            if carried is None and item.before is not None:
                self.fresh.add(item.key)  # painted without the frame before: see done()
            for event in executor.run([self.job(item, *(carried or (None, None)))], on_update,
                                      keep_pictures=True):
                if isinstance(event, Done):
                    previous[item.style] = (item, event.picture)
                    event = dataclasses.replace(event, picture=None)
                yield event

    def carried(self, item: Item, previous) -> tuple[np.ndarray, np.ndarray] | None:
        """(start, hold) for a frame from the previous frame's result (motion.carry); None for
        the first frame, or when the previous one failed. After a skipped (already done) frame
        the result is read back from its file, if it is that frame's current result."""
        before = item.before
        if before is None:
            return None
        if previous is not None and previous[0] is before:
            picture = previous[1]
        elif self.manifest.is_done(before.key, before.print):
            try:
                picture = images.to_array(images.load_image(self.batch.outdir / before.key))
            except NSTError:
                return None
        else:
            return None  # the previous frame failed: start afresh
        h, w = picture.shape[:2]
        try:
            now, then = (images.resize_array(images.to_array(images.load_image(
                i.input.path, max_side=max(w, h))), (w, h)) for i in (item, before))
        except NSTError:
            return None  # this frame's own failure is reported by its job
        return carry(picture, then, now)

    def write(self, done: Done) -> str | None:
        """Write and record one result; what went wrong, if anything (that image then fails)."""
        item = self.items[done.key]
        path = self.batch.outdir / item.key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            images.write_atomic(path, lambda f: f.write(done.data))
            # A frame painted without the one before is recorded as such: once that one is
            # painted, a re-run paints this one again from it (no jump in the animation).
            self.manifest.record(item.key, item.print + (FRESH if item.key in self.fresh else ""))
        except (OSError, NSTError) as e:  # appeared since the checks: a full disk, a new file
            reason = e.message if isinstance(e, NSTError) else (e.strerror or str(e))
            return f"{item.input.path}: its result {path} could not be written ({reason})"
        self.written += 1
        return None
