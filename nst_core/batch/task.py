"""One image of a batch: the job that travels to an executor and what it sends back. A job holds
the files' bytes, not their paths, so it runs anywhere (a Ray node needs no shared folder)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import depth, paint
from ..engine import Progress
from ..errors import DeviceError, NSTError, WeightsError
from ..options import Options


@dataclass(frozen=True)
class Job:
    key: str  # the output's path under OUTDIR, unique in the batch
    name: str  # the input as the user knows it, for messages
    content: bytes  # the input file
    style: bytes  # the style file
    options: Options
    format: str  # "png", "jpg" or "tif"
    start: np.ndarray | None = None  # --sequence: the previous frame's result, moved along
    hold: np.ndarray | None = None  # --sequence: where the frame keeps to `start` (HxW, 0..1)
    error: str | None = None  # the input could not be read: the job fails with this


@dataclass(frozen=True)
class Update:
    """A running job's progress."""
    key: str
    fraction: float
    eta_s: float | None


@dataclass(frozen=True)
class Done:
    key: str
    data: bytes  # the output file
    size: tuple[int, int]
    picture: np.ndarray | None = None  # --sequence: the result (HxWx3, 0..1), to start the next


@dataclass(frozen=True)
class Failed:
    key: str
    message: str  # one line naming the input and the problem


def paint_job(job: Job, progress=None, keep_picture: bool = False) -> Done:
    """Decode, check, stylize and encode one image; NSTError (ImageError, TooLargeError...) says
    what is wrong with the input. progress(Progress) as stylize() reports it."""
    o = job.options
    content = paint.read_content(job.content, o, what="input image", name=job.name,
                                 keep_depth=True)
    styles = paint.read_styles([job.style], o, content)
    result = paint.paint(content, styles, o, progress=progress, start=job.start, hold=job.hold)
    h, w = result.rgb.shape[:2]
    data = depth.encode(result.rgb, result.alpha, job.format, result.deep)
    return Done(job.key, data, (w, h), result.rgb if keep_picture else None)


def run_one(job: Job, on_update, keep_picture: bool = False) -> Done | Failed:
    """paint_job(), its progress as Updates to on_update(update), a problem with this image as a
    Failed. What would fail every image (the weights, the device) is raised instead."""

    def on_progress(p: Progress):
        on_update(Update(job.key, p.fraction, p.eta_s))

    if job.error:
        return Failed(job.key, job.error)
    try:
        return paint_job(job, on_progress, keep_picture)
    except (WeightsError, DeviceError):
        raise
    except NSTError as e:
        message = e.message if job.name in e.message else f"{job.name}: {e.message}"
        return Failed(job.key, message)
