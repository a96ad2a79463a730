"""Who may connect: the server's token, and which browser pages.

The policy, in one place (``refusal`` decides, the server applies it):

- With a token set by the user, every request must carry it.
- Otherwise, programs (no ``Origin`` header) and pages served from loopback may connect to a
  server that listens on loopback, and pages of the origins the user allowed may connect.
  Anything else needs the server's *page token*, which every server has (made when none is
  given): a page of another origin, and any request that names the server by a DNS name other
  than ``localhost``. The second rule stops DNS rebinding, where an attacker's name is
  re-pointed at 127.0.0.1 so that its page looks same-origin; it also covers Jupyter's proxy
  on JupyterHub and Binder, whose pages get the token over the browser widget's comm.

Behind Jupyter's proxy, requests carry the Jupyter login cookie, ``Authorization`` and
``?token=`` on to this server, so none of these may ever be logged or displayed: ``mask``
hides token values in any text that is shown.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from urllib.parse import parse_qs, unquote_plus, urlsplit

__all__ = ["AUTO", "check_token", "is_loopback", "mask", "new_token", "refusal"]

AUTO = "auto"
# A query parameter: its name as sent (maybe percent-encoded) and its value.
_PARAMETER = re.compile(r"(?<=[?&;])([^=&;#\s]+)=([^&;#\s]*)")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def mask(text: str) -> str:
    """``...?token=SECRET`` → ``...?token=***`` wherever it appears in ``text``.

    The name counts as the server would read it (``?%74oken=`` is ``token`` too).
    """
    if "=" not in text:  # most text: no regular expression pass (every request is logged)
        return text
    return _PARAMETER.sub(_masked, text)


def _masked(match: re.Match[str]) -> str:
    if unquote_plus(match[1]) == "token":
        return f"{match[1]}=***"
    return match[0]


def check_token(expected: str, authorization: str | None, query: str) -> int | None:
    """None if the request carries the token, else the HTTP status to refuse it with.

    The token may come as ``Authorization: Bearer TOKEN`` or as ``?token=TOKEN``; it is compared
    in constant time. No token at all is 401 (authenticate), a wrong or empty one 403.
    """
    offered: list[str] = []
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer":  # "Bearer" alone (its space stripped in transit) is empty
        offered.append(value.strip())
    offered.extend(parse_qs(query, keep_blank_values=True).get("token", []))
    if not offered:
        return 401
    wanted = expected.encode()
    # Check every offered value, so the time taken does not say which one was close.
    matches = [hmac.compare_digest(value.encode(), wanted) for value in offered]
    return None if any(matches) else 403


def is_loopback(host: str | None) -> bool:
    """An address or name of this machine's loopback interface (``localhost`` included)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def refusal(
    origin: str | None, host_header: str, allowed: Iterable[str], server_host: str
) -> str | None:
    """Why a request needs the server's page token, or None if it may go ahead without it.

    ``origin`` is the request's ``Origin`` (None for programs), ``host_header`` its ``Host``,
    ``allowed`` the browser origins the user allowed (``"*"``: all), ``server_host`` the
    address the server listens on.

    Every request asks, most with the same few headers, and parsing addresses costs more than
    the rest of the check: answers for headers of a usual size are remembered.
    """
    allowed = tuple(allowed)
    if len(host_header) + len(origin or "") > _REMEMBER_AT_MOST:
        return _refusal(origin, host_header, allowed, server_host)
    return _remembered(origin, host_header, allowed, server_host)


_REMEMBER_AT_MOST = 512  # characters of Host and Origin together


def _refusal(
    origin: str | None, host_header: str, allowed: tuple[str, ...], server_host: str
) -> str | None:
    on_loopback = is_loopback(server_host)
    hostname = _hostname(f"//{host_header}")
    if on_loopback and not (_is_address(hostname) or is_loopback(hostname)):
        return f"Host {hostname!r} is a name other than localhost (DNS rebinding?)"
    if origin is None:
        return None
    if "*" in allowed or origin in allowed:
        return None
    if on_loopback and is_loopback(_hostname(origin)):
        return None
    return f"a page from origin {origin!r}"


_remembered = functools.lru_cache(maxsize=256)(_refusal)


def _hostname(url: str) -> str:
    """The host part of a URL or ``//authority``; "" for a value with several (a repeated header)."""
    if "," in url or any(c.isspace() for c in url):
        return ""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""
