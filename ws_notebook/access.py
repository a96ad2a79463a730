"""Who may connect: an optional token, and which browser origins.

Behind Jupyter's proxy, requests carry the Jupyter login cookie, ``Authorization`` and
``?token=`` on to this server, so none of these may ever be logged or displayed: ``mask``
hides token values in any text that is shown.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from urllib.parse import parse_qs, urlparse

__all__ = ["AUTO", "check_token", "is_loopback", "mask", "new_token", "origin_allowed"]

AUTO = "auto"
_TOKEN_IN_TEXT = re.compile(r"((?:^|[?&\s])token=)[^&\s]+")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def mask(text: str) -> str:
    """``...?token=SECRET`` → ``...?token=***``, wherever it appears in ``text``."""
    if "token=" not in text:  # most text: no regular expression pass (every request is logged)
        return text
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


def check_token(expected: str, authorization: str | None, query: str) -> int | None:
    """None if the request carries the token, else the HTTP status to refuse it with.

    The token may come as ``Authorization: Bearer TOKEN`` or as ``?token=TOKEN``; it is compared
    in constant time. No token at all is 401 (authenticate), a wrong one 403 (forbidden).
    """
    offered: list[str] = []
    if authorization and authorization.lower().startswith("bearer "):
        offered.append(authorization[7:].strip())
    offered.extend(parse_qs(query).get("token", []))
    if not offered:
        return 401
    wanted = expected.encode()
    # Check every offered value, so the time taken does not say which one was close.
    matches = [hmac.compare_digest(value.encode(), wanted) for value in offered]
    return None if any(matches) else 403


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_allowed(origin: str, host_header: str, allowed: Iterable[str], server_host: str) -> bool:
    """The origin policy for browser pages (non-browser clients send no Origin).

    Allowed: pages of the same origin (a Jupyter page reaching us through jupyter-server-proxy
    keeps its own Host and Origin), pages served from loopback while the server itself listens
    on loopback (a local Jupyter on another port), and the origins listed in ``allowed``
    (``"*"`` allows every origin).
    """
    allowed = list(allowed)
    if "*" in allowed or origin in allowed:
        return True
    parsed = urlparse(origin)
    if parsed.netloc.lower() == host_header.lower():
        return True
    return is_loopback(parsed.hostname) and is_loopback(server_host)
