"""The installer's error type, its exit codes, and the messages for the commonest causes."""
from __future__ import annotations

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_GIMP, EXIT_ENV, EXIT_WEIGHTS, EXIT_LEFTOVER = range(7)
EXIT_INTERRUPTED = 130

NETWORK_PATTERNS = (
    "Failed to establish a new connection", "Temporary failure in name resolution",
    "Name or service not known", "No matching distribution found",
    "Could not find a version that satisfies", "Network is unreachable", "ConnectionError",
    "ReadTimeoutError", "ProxyError", "SSLError", "getaddrinfo failed", "Connection refused",
    "HTTP error", "urlopen error", "timed out",
)
SPACE_PATTERNS = ("No space left on device", "Errno 28", "ENOSPC", "not enough space")


class InstallError(Exception):
    """A failure with a message that says what to do next, and the exit code for it."""

    def __init__(self, message: str, code: int = EXIT_ERROR):
        super().__init__(message)
        self.message = message
        self.code = code


def classify(tail: list[str]) -> str | None:
    """"space", "network" or None: why a tool (pip, the weights download) failed, from its
    last lines of output."""
    text = "\n".join(tail)
    if any(p in text for p in SPACE_PATTERNS):
        return "space"
    if any(p in text for p in NETWORK_PATTERNS):
        return "network"
    return None


def space_message(where: str, what: str, need_gb: float | None = None) -> str:
    need = f" (about {need_gb:.0f} GB)" if need_gb else ""
    return (f"Not enough free disk space in {where} for {what}{need}. Free some space, or put "
            "the environment on another disk with --venv PATH, then run this installer again: "
            "it continues where it stopped.")


def network_message(what: str) -> str:
    return (f"Could not download {what}. Check the internet connection (behind a proxy, set "
            "HTTPS_PROXY), then run this installer again: it continues where it stopped. "
            "Where only PyPI can be reached, add --torch-index https://pypi.org/simple.")
