"""This machine's speed, learned from real runs: seconds per unit of planned work.

A unit of work is what budget.plan_run counts in Scale.work (pixel-iterations times what the
scale's path and network cost more per pixel). Every run records, scale by scale, the wall
seconds its iterations took against their work, per device key (device, number format, torch)
and per path ("whole" image or "blocks"). The estimate uses the median of the last KEEP runs, so
one run slowed by other work moves nothing; when the last two runs both disagree with the older
ones by more than CONTRADICTED (a new driver, a machine that was busy when they were measured),
the older ones are dropped instead of outvoting the truth for ever. Runs older than MAX_AGE_S
are forgotten. A first-time estimate with no run recorded falls back to a probe (estimate.py),
kept beside the runs until a run of that path replaces it.

The record is one small JSON file in the user data folder, rewritten atomically (a temporary
file, then os.replace) under a lock file, so concurrent cores never lose or tear it; a file
that cannot be read counts as empty, which costs a re-measurement and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import time
import uuid

from . import files, weights

log = logging.getLogger(__name__)

FILE_NAME = "speed-record.json"  # speed.json held the probe of earlier versions: not trusted
VERSION = 2
PATHS = ("whole", "blocks")
KEEP = 5  # runs per device and path
CONTRADICTED = 1.5  # a factor between the newest runs and the older ones' median
MAX_AGE_S = 90 * 86400  # a run measured this long ago says little about today's machine
LOCK_WAIT_S = 5.0
# A scale smaller than this (a preview, a run's first scales) spends much of its time on fixed
# costs per iteration: what it measures would overstate a large run.
MIN_PIXELS = 100_000


def device_key(description: str) -> str:
    """device.describe()'s text without the Python version, which does not change the speed."""
    return description.split(", Python")[0]


def new_run() -> str:
    """An identifier for one run's measurements: its scales add up to one entry."""
    return uuid.uuid4().hex[:12]


def file_path():
    return weights.data_dir() / FILE_NAME


def read() -> dict:
    """The record, {"runs": {key: {path: [entry, ...]}}, "probe": {key: value}}; an unreadable or
    foreign file reads as empty."""
    try:
        data = json.loads(file_path().read_text())
    except (OSError, ValueError):
        return _empty()
    if not (isinstance(data, dict) and data.get("version") == VERSION
            and isinstance(data.get("runs"), dict) and isinstance(data.get("probe"), dict)):
        return _empty()
    return data


def value(key: str, path: str, record: dict | None = None) -> float | None:
    """Seconds per unit of work on this path, from the recent runs; None when none is known."""
    record = read() if record is None else record
    ratios = [e["s"] / e["work"] for e in _entries(record, key, path)]
    return float(statistics.median(ratios)) if ratios else None


def probe(key: str, record: dict | None = None) -> float | None:
    record = read() if record is None else record
    v = record["probe"].get(key)
    return float(v) if _positive(v) else None


def speeds(key: str, record: dict | None = None) -> dict:
    """{path: seconds per unit of work} for an estimate, each path's own runs first; a path
    with none takes the other path's (the work counts what blocks cost more), then the probe;
    empty when nothing at all is known."""
    record = read() if record is None else record
    own = {p: value(key, p, record) for p in PATHS}
    known = [v for v in own.values() if v is not None] or [probe(key, record)]
    if known[0] is None:
        return {}
    return {p: own[p] if own[p] is not None else known[0] for p in PATHS}


def record_probe(key: str, seconds_per_unit: float) -> None:
    with _update() as record:
        record["probe"][key] = seconds_per_unit


def record_scale(key: str, size: tuple[int, int], plan, seconds: float, work: float,
                 run: str) -> None:
    """What the engine calls at the end of each scale it ran through: `seconds` of its
    iterations for its `work`; scales of fewer than MIN_PIXELS are left out."""
    if size[0] * size[1] >= MIN_PIXELS:
        record_run(key, plan.path, seconds, work, run)


def record_run(key: str, path: str, seconds: float, work: float, run: str) -> None:
    """Add `seconds` for `work` units to this run's entry (one entry per run, its scales
    summed), then drop what the newest runs contradict and what is old."""
    if path not in PATHS or not (_positive(seconds) and _positive(work)):
        return
    with _update() as record:
        entries = record["runs"].setdefault(key, {}).setdefault(path, [])
        if entries and entries[-1].get("run") == run:
            entries[-1]["s"] += seconds
            entries[-1]["work"] += work
            entries[-1]["t"] = time.time()
        else:
            entries.append({"run": run, "s": seconds, "work": work, "t": time.time()})
        kept = _fresh(entries)[-KEEP:]
        if len(kept) >= 3:
            older = statistics.median(e["s"] / e["work"] for e in kept[:-2])
            newest = [e["s"] / e["work"] / older for e in kept[-2:]]
            if all(r > CONTRADICTED for r in newest) or all(r < 1 / CONTRADICTED for r in newest):
                log.info("the last two runs on %s (%s) took %.2fx and %.2fx the earlier ones' "
                         "time per unit: the earlier measurements are dropped", key, path,
                         *newest)
                kept = kept[-2:]
        entries[:] = kept


def _entries(record: dict, key: str, path: str) -> list:
    entries = record["runs"].get(key, {}).get(path, [])
    return _fresh(entries if isinstance(entries, list) else [])[-KEEP:]


def _fresh(entries: list) -> list:
    now = time.time()
    return [e for e in entries if isinstance(e, dict) and _positive(e.get("s"))
            and _positive(e.get("work")) and isinstance(e.get("t"), (int, float))
            and now - e["t"] <= MAX_AGE_S]


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")


def _empty() -> dict:
    return {"version": VERSION, "runs": {}, "probe": {}}


@contextlib.contextmanager
def _update():
    """Read, change and write the record under the lock; a record that cannot be written is
    only a lost measurement (logged), never a failed run."""
    path = file_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a+")  # noqa: SIM115 - held below
    except OSError as e:
        log.warning("could not record the measured speed in %s: %s", path, e)
        yield _empty()
        return
    with lock:
        _lock(lock)
        record = read()
        yield record
        try:
            files.write_atomic(path, lambda f: f.write(json.dumps(record, indent=1).encode()))
        except OSError as e:
            log.warning("could not record the measured speed in %s: %s", path, e)


def _lock(f) -> None:
    """An exclusive lock on the open lock file, released when it closes; where there is no
    locking (or it takes too long), the write is still atomic, at worst one run's lost."""
    try:
        import fcntl
    except ImportError:  # Windows: os.replace alone
        return
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            if time.monotonic() > deadline:
                log.warning("the speed record's lock is held for more than %.0f s; writing "
                            "without it", LOCK_WAIT_S)
                return
            time.sleep(0.02)
