"""Where a batch's images are painted. Every executor has the same small interface, so the
driver (run.py) does not know whether it runs here or on a cluster:

    executor.slots                      how many jobs it runs at once
    executor.run(jobs, on_update, keep_pictures) -> iterator of Done | Failed, as they finish;
                                        it takes jobs from the iterable only as it has room
    executor.close()                    stop whatever still runs (Ctrl-C, an error)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from .task import Done, Failed, Job, Update, run_one


class Executor(Protocol):
    slots: int

    def run(self, jobs: Iterable[Job], on_update: Callable[[Update], None],
            keep_pictures: bool = False) -> Iterator[Done | Failed]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """This process, one image at a time; the network is loaded once (engine.network). Ctrl-C
    interrupts the image being painted, and nothing of it is written."""

    slots = 1

    def run(self, jobs, on_update, keep_pictures=False):
        for job in jobs:
            yield run_one(job, on_update, keep_pictures)

    def close(self) -> None:
        pass


def make_executor(ray_address: str | None, cpus_per_task: int | None) -> Executor:
    if ray_address is None:
        return LocalExecutor()
    from .ray_executor import RayExecutor

    return RayExecutor(ray_address, cpus_per_task)
