"""Running other programs: a short one for its output, a long one (pip) shown as it goes."""
from __future__ import annotations

import subprocess

from .console import say, shell_words


def run_capture(cmd: list[str], timeout: float = 600, cwd: str | None = None) -> tuple[int, str]:
    """(exit status, stdout and stderr together); 127 when it cannot be started or times out."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout, cwd=cwd,
                           text=True, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)
    return p.returncode, p.stdout


def run_stream(cmd: list[str]) -> tuple[int, list[str]]:
    """Run a long command showing its output; return its exit status and last 60 lines."""
    say("    $ " + shell_words(cmd))
    tail: list[str] = []
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, text=True, errors="replace")
    except OSError as e:
        return 127, [str(e)]
    assert p.stdout is not None
    for line in p.stdout:
        line = line.rstrip()
        say("      " + line)
        tail.append(line)
        del tail[:-60]
    return p.wait(), tail
