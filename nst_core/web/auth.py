"""Who may use the web API: the token rule and the host names a browser may use.

Rule: on this machine's own address (127.0.0.1, ::1, localhost) no token is needed unless one is
given; on any other address every API call needs the token, as `Authorization: Bearer TOKEN` or
as the HttpOnly cookie the page gets from POST /api/session. The page itself (static files) is
public: it holds no data.
"""

from __future__ import annotations

import os
import secrets
import stat

from ..errors import OptionError

LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")
COOKIE = "nst_token"
MIN_TOKEN_CHARS = 16  # a guessable token protects nothing


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS or host.startswith("127.")


def read_token_file(path: str) -> str:
    """The token in FILE (its first line, stripped); OptionError says what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise OptionError(f"cannot read the token file {path}: {e}") from None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise OptionError(f"the token in {path} must be at least {MIN_TOKEN_CHARS} characters "
                          "without spaces (e.g. python -c 'import secrets; "
                          "print(secrets.token_urlsafe())')")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        import logging

        logging.getLogger("nst_core.web").warning(
            "the token file %s can be read by other users: chmod 600 it", path)
    return token


def new_token() -> str:
    return secrets.token_urlsafe(24)


def allowed_hosts(host: str) -> list[str] | None:
    """Host headers accepted on a local address (a web site that rebinds its name to 127.0.0.1
    must not reach the API); None: any (a token guards the API there)."""
    if is_local(host):
        return list(dict.fromkeys([*LOCAL_HOSTS, "[::1]", host]))
    return None


def token_matches(token: str | None, expected: str) -> bool:
    return token is not None and secrets.compare_digest(token.encode(), expected.encode())
