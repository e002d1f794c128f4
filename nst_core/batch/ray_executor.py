"""A batch on a Ray cluster (`nst batch --ray [ADDRESS]`, pip install neural-style-gimp[cluster]).

One Ray task per image: the job (the input's bytes, the options) travels with the task, the style
once per batch through Ray's object store, and the result comes back as the output file's bytes,
which the driver writes; no node needs a shared folder. A task asks for one GPU where the cluster
has GPUs, else a share of a node's CPUs with torch's threads set to match. The network is loaded
once per Ray worker process (engine.network), which Ray reuses from image to image.

Only a few more tasks than can run at once are submitted (slots + 1), so a batch of thousands of
images does not ship them all at the start. A task lost with its node (or its worker process) is
retried elsewhere by Ray (max_retries); an image that fails on its own merits comes back as a
Failed and is not retried. close() cancels what is left (Ctrl-C, an error).
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from ..errors import DeviceError, NSTError, OptionError, WeightsError
from .task import Done, Failed, Job, Update, run_one

log = logging.getLogger(__name__)

INSTALL = "pip install neural-style-gimp[cluster]"
# A task lost with its node (or killed worker process) runs again elsewhere up to this many times.
RETRIES = 3
POLL_S = 0.5  # how often the driver looks for progress while it waits for results
CHECK_S = 30  # with no result for this long, check that a node is left to run the images
REPORT_S = 0.5  # how often a task reports its progress (and at its start and end)
# ray.init() of a local instance: a modest object store (images and results pass through it;
# past it Ray spills to disk).
LOCAL_STORE = 512 * 2**20


class ClusterError(NSTError):
    """The Ray cluster cannot be reached or cannot run the batch."""

    kind = "cluster"
    exit_code = 1


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise OptionError(f"--ray needs Ray, which is not installed ({e}); {INSTALL}") from None
    return ray


# -- what runs on the cluster -------------------------------------------------------------------


class _Progress:
    """A Ray actor the tasks report their progress to; the driver collects it (latest only)."""

    def __init__(self):
        self.latest: dict[str, tuple[float, float | None]] = {}

    def report(self, key: str, fraction: float, eta_s: float | None) -> None:
        self.latest[key] = (fraction, eta_s)

    def take(self) -> dict[str, tuple[float, float | None]]:
        latest, self.latest = self.latest, {}
        return latest


def _paint(job: Job, style: bytes, threads: int | None, progress, keep_picture: bool):
    """The task: one image, on whatever node Ray chose. Returns (Done | Failed, node id).
    WeightsError and DeviceError are raised (every image would fail the same way)."""
    import ray

    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    job = replace(job, style=style)
    last = [0.0]

    def on_update(u: Update) -> None:
        now = time.monotonic()
        if progress is not None and (now - last[0] >= REPORT_S or u.fraction >= 1):
            last[0] = now
            progress.report.remote(u.key, u.fraction, u.eta_s)

    if progress is not None:
        progress.report.remote(job.key, 0.0, None)
        last[0] = time.monotonic()
    try:
        result = run_one(job, on_update, keep_picture)
    except (WeightsError, DeviceError) as e:  # say where: the driver's machine may be fine
        raise type(e)(f"on the Ray node {ray.util.get_node_ip_address()}: {e.message}") from None
    return result, ray.get_runtime_context().get_node_id()


# -- the driver's side --------------------------------------------------------------------------


class RayExecutor:
    """Runs a batch's jobs as Ray tasks. `address`: "local" starts a Ray instance on this machine
    (stopped again by close()); anything else is handed to ray.init(address=...): "auto",
    "HOST:6379" (the head's GCS port, this machine then being part of the cluster's network) or
    "ray://HOST:10001" (Ray client). cpus_per_task: the CPUs (and torch threads) each image gets
    on a cluster without GPUs; default: all of the smallest node's."""

    def __init__(self, address: str, cpus_per_task: int | None = None):
        ray = self._ray = _import_ray()
        if cpus_per_task is not None and cpus_per_task < 1:
            raise OptionError("--cpus-per-task must be at least 1")
        self._connected = False
        self._actor = None
        self._task = None
        self._pending: dict = {}  # ObjectRef -> (key, name) of its job
        self._styles: dict[bytes, object] = {}  # style bytes -> ObjectRef
        self.node_of: dict[str, str] = {}  # key -> the Ray node id that painted it
        quiet = not logging.getLogger("nst_core").isEnabledFor(logging.DEBUG)
        common = dict(include_dashboard=False, log_to_driver=not quiet,
                      logging_level=logging.WARNING if quiet else logging.INFO,
                      configure_logging=True)
        try:
            if ray.is_initialized():  # a caller's own connection (the Python API): keep it
                pass
            elif address == "local":
                # Ray warns that it turns token authentication on: for a private instance that
                # lives as long as this batch, that is no news to the user.
                with _quiet("ray._private.authentication.authentication_token_setup", quiet):
                    ray.init(address="local", object_store_memory=LOCAL_STORE, **common)
                self._connected = True
            else:
                _check_reachable(address)
                ray.init(address=address, **common)
                self._connected = True
        except NSTError:
            raise
        except Exception as e:  # ConnectionError, Ray's AuthenticationError...
            where = "a local Ray instance" if address == "local" else f"the Ray cluster {address}"
            raise ClusterError(f"cannot start or reach {where}: {e}") from None
        try:
            self._plan(cpus_per_task)
        except BaseException:
            self.close()
            raise

    def _alive(self) -> tuple[list[int], int]:
        """The CPUs of each alive node that has any, and the GPUs of all."""
        nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        cpus = [int(r.get("CPU", 0)) for r in nodes]
        return [c for c in cpus if c > 0], int(sum(r.get("GPU", 0) for r in nodes))

    def _plan(self, cpus_per_task: int | None) -> None:
        cpus, self.gpus = self._alive()
        if cpus_per_task is None:
            cpus_per_task = min(cpus) if cpus else 1
        self.cpus_per_task = cpus_per_task
        self._cpu_slots = max(1, sum(c // cpus_per_task for c in cpus))
        self._use_gpus(self.gpus > 0)
        self._check_room()
        log.info("Ray cluster: %d CPU(s), %d GPU(s); %d image(s) at once, each on %s",
                 sum(cpus), self.gpus, self.slots,
                 "one GPU" if self.on_gpus else f"{cpus_per_task} CPU(s)")

    def _check_room(self) -> None:
        """A ClusterError where no alive node could run a task (it would wait for ever)."""
        cpus, gpus = self._alive()
        if self.on_gpus:
            if gpus == 0:
                raise ClusterError("no node with a GPU is left in the Ray cluster")
        elif not cpus or self.cpus_per_task > max(cpus):
            most = max(cpus) if cpus else 0
            raise ClusterError(f"no node of the Ray cluster has {self.cpus_per_task} CPU(s) for a "
                               f"task (the most on one node: {most}); lower --cpus-per-task")

    def _use_gpus(self, on: bool) -> None:
        self.on_gpus = on
        self.slots = self.gpus if on else self._cpu_slots

    def _remote(self):
        """The task with its resources, made once (--sequence runs one job at a time)."""
        if self.on_gpus:
            resources, threads = {"num_gpus": 1}, None
        else:
            resources, threads = {"num_cpus": self.cpus_per_task}, self.cpus_per_task
        if self._task is None or self._task[1] != resources:
            task = self._ray.remote(max_retries=RETRIES, retry_exceptions=False,
                                    **resources)(_paint)
            self._task = (task, resources)
        return self._task[0], threads

    def _progress_actor(self):
        if self._actor is None:
            ray = self._ray
            try:  # beside the driver, where its reports are read
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                here = NodeAffinitySchedulingStrategy(
                    ray.get_runtime_context().get_node_id(), soft=True)
            except Exception:  # Ray client: no node of its own
                here = "DEFAULT"
            self._actor = ray.remote(num_cpus=0, max_restarts=-1, scheduling_strategy=here)(
                _Progress).remote()
        return self._actor

    def _style_ref(self, style: bytes):
        ref = self._styles.get(style)
        if ref is None:
            ref = self._styles[style] = self._ray.put(style)
        return ref

    def run(self, jobs: Iterable[Job], on_update: Callable[[Update], None],
            keep_pictures: bool = False) -> Iterator[Done | Failed]:
        ray = self._ray
        jobs = iter(jobs)
        first = next(jobs, None)
        if first is None:
            return
        if self.on_gpus and first.options.device in ("cpu", "mps"):
            self._use_gpus(False)  # --device cpu on a cluster with GPUs: CPU tasks
            self._check_room()
        task, threads = self._remote()
        actor = self._progress_actor()
        queue: Iterator[Job] = _chain(first, jobs)
        quiet_since = time.monotonic()
        try:
            more = True
            while True:
                while more and len(self._pending) < self.slots + 1:
                    job = next(queue, None)
                    if job is None:
                        more = False
                        break
                    ref = task.remote(replace(job, style=b""), self._style_ref(job.style),
                                      threads, actor, keep_pictures)
                    self._pending[ref] = (job.key, job.name)
                if not self._pending:
                    return
                ready, rest = ray.wait(list(self._pending), num_returns=1, timeout=POLL_S)
                if ready and rest:  # take every finished one now (fewer lost to a Ctrl-C)
                    ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
                self._report(actor, on_update)
                if ready:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > CHECK_S:  # nodes lost: is any left?
                    self._check_room()
                    quiet_since = time.monotonic()
                for ref in ready:
                    yield self._result(ref, *self._pending.pop(ref))
        finally:
            if self._pending:  # an exception, Ctrl-C or the caller stopped early
                self._cancel()

    def _report(self, actor, on_update) -> None:
        try:
            latest = self._ray.get(actor.take.remote(), timeout=10)
        except Exception as e:  # progress is a nicety: never a reason to stop the batch
            log.debug("no progress from the Ray actor: %s", e)
            return
        running = {key for key, _ in self._pending.values()}
        for key, (fraction, eta) in latest.items():
            if key in running:
                on_update(Update(key, fraction, eta))

    def _result(self, ref, key: str, name: str) -> Done | Failed:
        ray = self._ray
        try:
            result, node = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, NSTError):
                raise cause from None  # WeightsError, DeviceError: as if run here
            raise  # a bug: the task's own traceback is in the message
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.OutOfMemoryError, ray.exceptions.TaskCancelledError,
                ray.exceptions.ObjectLostError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return Failed(key, f"{name}: lost on the Ray cluster after {RETRIES} retries "
                               f"({type(e).__name__}: {first})")
        self.node_of[key] = node
        return result

    def _cancel(self) -> None:
        for ref in list(self._pending):
            try:
                self._ray.cancel(ref, force=True)
            except Exception as e:  # already finished or its node gone
                log.debug("could not cancel a Ray task: %s", e)
        self._pending.clear()

    def close(self) -> None:
        """Cancel the tasks still queued or running; stop the local Ray instance this executor
        started, or disconnect from the cluster (which keeps running)."""
        ray = self._ray
        if not ray.is_initialized():
            return
        self._cancel()
        if self._actor is not None:
            try:
                ray.kill(self._actor)
            except Exception as e:
                log.debug("could not stop the progress actor: %s", e)
            self._actor = None
        self._task = None
        self._styles.clear()
        if self._connected:
            ray.shutdown()
            self._connected = False


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A clear error at once where Ray itself would retry for minutes: nothing listening at
    HOST:PORT, or a ray:// address without Ray's client installed."""
    if address.startswith("ray://"):
        if importlib.util.find_spec("grpc") is None:
            raise OptionError(f"a ray:// address needs Ray's client: pip install 'ray[client]' "
                              f"(or give the head's HOST:6379 instead of {address})")
        host_port = address[len("ray://"):]
    elif address == "auto":
        return
    else:
        host_port = address
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise OptionError(f"--ray {address}: give the head node as HOST:PORT (e.g. "
                          "10.0.0.5:6379), ray://HOST:10001 or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ClusterError(f"no Ray cluster answers at {host_port} ({e.strerror or e}); is "
                           "`ray start --head` running there, and is the port open?") from None


@contextmanager
def _quiet(name: str, on: bool):
    logger = logging.getLogger(name)
    level = logger.level
    if on:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _chain(first: Job, rest: Iterator[Job]) -> Iterator[Job]:
    yield first
    yield from rest
