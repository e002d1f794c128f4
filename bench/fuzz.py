"""Fuzz the core's request parsing at length (README, "What happens when things go wrong").

    .venv/bin/python bench/fuzz.py [--cases 100000] [--processes 200]

1. --cases generated messages (tests/request_fuzz.py: valid and broken headers, payload lengths,
   types, sizes, nesting, garbage) through the parser in this process: each must give a request
   or one typed error; any other exception is a crash, a case over 5 s a hang.
2. --processes of them through real worker processes (`python -m nst_core.worker`, weights
   folder empty so that valid requests end quickly with a "weights" error): each must end with
   exactly one error or result message and a matching exit code; "internal" errors, hangs
   (60 s) and deaths without an answer are counted.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.request_fuzz import messages, outcome  # noqa: E402

HANG_S = 5


class Hang(Exception):
    pass


def in_process(cases: int) -> tuple[collections.Counter, list]:
    counts, crashes = collections.Counter(), []

    def alarm(*_):
        raise Hang

    signal.signal(signal.SIGALRM, alarm)

    @settings(max_examples=cases, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(messages())
    def one(data):
        signal.setitimer(signal.ITIMER_REAL, HANG_S)
        try:
            result = outcome(data)
        except Hang:
            result = "hang"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        key = "crash" if result.startswith("crash") else result
        counts[key] += 1
        if key in ("crash", "hang") and len(crashes) < 20:
            crashes.append((result, data[:300]))

    one()
    return counts, crashes


def through_workers(n: int) -> tuple[collections.Counter, list]:
    samples = []

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(messages())
    def collect(data):
        samples.append(data)

    collect()
    counts, bad = collections.Counter(), []
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, NST_HOME=home)  # no weights: valid requests end quickly
        for data in samples:
            try:
                done = subprocess.run([sys.executable, "-m", "nst_core.worker"], input=data,
                                      capture_output=True, timeout=60, cwd=ROOT, env=env)
            except subprocess.TimeoutExpired:
                counts["hang"] += 1
                bad.append(("hang", data[:300]))
                continue
            finals = [json.loads(line) for line in done.stdout.splitlines()
                      if line.startswith(b"{") and b'"progress"' not in line[:30]]
            finals = [m for m in finals if m.get("type") in ("error", "result")]
            if len(finals) != 1 or (done.returncode == 0) != (finals[0]["type"] == "result"):
                counts["no single answer"] += 1
                bad.append((f"exit {done.returncode}, {len(finals)} answers", data[:300]))
                continue
            kind = finals[0].get("kind", "result")
            counts[kind] += 1
            if kind == "internal":
                bad.append((finals[0]["message"], data[:300]))
    return counts, bad


def report(title: str, counts: collections.Counter, bad: list, t0: float) -> None:
    print(f"{title}: {sum(counts.values())} messages in {time.perf_counter() - t0:.0f} s: "
          f"{dict(counts.most_common())}")
    for what, data in bad:
        print(f"  {what}\n    {data!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=200)
    args = parser.parse_args()
    import torch

    from nst_core.device import cpu_name

    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"torch {torch.__version__}")
    t0 = time.perf_counter()
    counts, crashes = in_process(args.cases)
    report("parser, in process", counts, crashes, t0)
    t0 = time.perf_counter()
    wcounts, bad = through_workers(args.processes)
    report("worker processes", wcounts, bad, t0)
    failed = counts["crash"] + counts["hang"] + counts["internal"] + wcounts["internal"] \
        + wcounts["hang"] \
        + wcounts["no single answer"]
    print("FAILED" if failed else "OK: no crash, hang or internal error")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
