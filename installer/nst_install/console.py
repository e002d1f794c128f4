"""What the installer prints: plain lines, step headings, commands as a shell would show them."""
from __future__ import annotations

import json
import re


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say("==> " + text)


def shell_words(cmd: list[str]) -> str:
    """A command line for display (quoted only where needed, the same way on every platform)."""
    return " ".join(c if re.match(r"^[\w@%+=:,./-]+$", c) else json.dumps(c) for c in cmd)
