"""The log level from NST_LOG_LEVEL, read in one place for the CLI and the worker."""

from __future__ import annotations

import os

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def env_level(default: str) -> tuple[str, str | None]:
    """(level, warning): NST_LOG_LEVEL where it names a level, else `default`. A value that is
    not a level is reported (the warning) and ignored: a setting meant for the log must never
    stop a run or silence the core."""
    raw = os.environ.get("NST_LOG_LEVEL", "")
    text = raw.strip().upper()
    if not text or text in LEVELS:
        return text or default, None
    return default, f"NST_LOG_LEVEL={raw!r} is not one of {', '.join(LEVELS)}; ignoring it"
