"""What HTTP-invoked functions may do: the URL policy, the pinned addresses, headers, secrets.

The engine makes HTTP requests on behalf of workers, so everything a worker chooses is checked
here before the engine acts on it (docs/protocol.md §9.1); a refusal leaves the function
unregistered, its callers get ``function_not_found`` naming the reason:

* :func:`check_url` — loopback over plain http is always fine (same machine); other private,
  link-local and non-global addresses are refused unless ``allow_http_private``; anything else
  needs https unless ``require_https=False``; the host must match ``url_allowlist`` (globs). It
  returns the addresses it judged, and :class:`PinnedResolver` makes the request connect to
  exactly those: a second lookup could answer differently (DNS rebinding).
* :func:`check_header` — configured headers are HTTP tokens with control-free values, and none
  of the framing headers the engine sets itself (a worker's ``Content-Length`` or ``Host``
  would desynchronise or redirect the engine's pooled connections).
* :func:`secret_allowed` — auth may read only the environment variables the operator listed
  (``secret_env_allowlist``, empty by default): otherwise a worker could name any variable of
  the engine and have its value sent to a URL of its choosing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from contextvars import ContextVar
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = [
    "HttpFunctionSettings",
    "PinnedResolver",
    "RegistrationRefused",
    "UrlRefused",
    "check_header",
    "check_url",
    "has_control",
    "pinned",
    "secret_allowed",
]

_MiB = 1024 * 1024


@dataclass(frozen=True)
class HttpFunctionSettings:
    """URL policy and limits of HTTP-invoked functions (defaults are the safe ones).

    ``allow_http_private`` is ``--allow-http-private`` (the Rust engine's
    ``block_private_ips: false``); ``require_https=False`` allows plain http to public hosts.
    ``secret_env_allowlist`` names the environment variables auth may read: exact names, or
    prefixes ending in ``*`` (``"BILLING_*"``; ``"*"`` alone allows every variable).
    """

    require_https: bool = True
    allow_http_private: bool = False
    url_allowlist: tuple[str, ...] = ("*",)
    secret_env_allowlist: tuple[str, ...] = ()
    default_timeout_ms: int = 30_000
    max_timeout_ms: int = 60_000
    max_response_bytes: int = 64 * _MiB


class UrlRefused(Exception):
    """A URL the policy refuses; ``str()`` is the protocol's reason (``HTTPS is required``...)."""


class RegistrationRefused(Exception):
    """An HTTP-invoked registration the engine will not accept.

    ``code`` is machine-readable (``url_validation_failed``, ``secret_not_allowed``,
    ``secret_not_found``, ``token_not_found``, ``api_key_not_found``, ``invalid_header``,
    ``invalid_invocation``); ``reason`` is the sentence to log and to hand callers.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def reason(self) -> str:
        """``"{code}: {message}"``."""
        return str(self)


# ----------------------------------------------------------------------------- URL policy

_Kind = Literal["loopback", "private", "public"]


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT (RFC 7915)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 (2002::/16), NAT64 (64:ff9b::/96), IPv4-translated
    (::ffff:0:0:0/96) or IPv4-compatible (::/96) address reaches: Python calls those forms
    global whatever they embed, and a translator or a 6to4 relay would carry the request to a
    private IPv4 host behind them."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _IPV4_TRANSLATED or (
            address in _IPV4_COMPATIBLE and int(address) > 1):  # not ::, ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _kind_of(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> _Kind:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in _NAT64_LOCAL:  # RFC 8215: a network's own translator
            return "private"
        elif (embedded := _embedded_ipv4(address)) is not None:
            # Translated or relayed, never this machine: loopback behind it is not ours.
            return "public" if _kind_of(embedded) == "public" else "private"
    if address.is_loopback:
        return "loopback"
    if not address.is_global or address.is_multicast:
        return "private"
    return "public"


_LOCALHOST = ("127.0.0.1", "::1")


async def _host_kind(host: str, port: int) -> tuple[_Kind, tuple[str, ...]]:
    """Classify a host; a name is resolved and its most restricted address wins.

    Returns the kind and the addresses it was judged on (empty for an IP literal), which are
    the only ones the call may connect to.
    """
    if host.rstrip(".").lower() == "localhost":
        return "loopback", _LOCALHOST
    try:
        return _kind_of(ipaddress.ip_address(host)), ()
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise UrlRefused("DNS lookup failed") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    kinds = {_kind_of(ipaddress.ip_address(a.split("%", 1)[0])) for a in addresses}
    if not kinds:
        raise UrlRefused("DNS lookup failed")
    if kinds == {"loopback"}:
        return "loopback", addresses
    return ("private" if kinds - {"public"} else "public"), addresses


async def check_url(url: str, settings: HttpFunctionSettings) -> tuple[str, ...]:
    """Raise :class:`UrlRefused` unless ``settings`` allow calling ``url``.

    Returns the addresses the host name resolved to and was judged on (empty when the host
    is an IP literal): connect to these, never to a later lookup's answer.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UrlRefused("Invalid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise UrlRefused("Invalid URL")
    # The host only, as the Rust engine matches: a pattern tried on the whole URL let
    # `http://127.0.0.1/.example.com` through `*.example.com` (`*` spans `/`).
    if not any(fnmatchcase(host, pattern.lower()) for pattern in settings.url_allowlist):
        raise UrlRefused("URL not in allowlist")
    kind, addresses = await _host_kind(host, port)
    if kind == "private" and not settings.allow_http_private:
        raise UrlRefused("Private IP blocked")
    if kind == "public" and settings.require_https and parts.scheme != "https":
        raise UrlRefused("HTTPS is required")
    return addresses


pinned: ContextVar[tuple[str, ...]] = ContextVar("iii_rx_http_pinned", default=())
"""The addresses :class:`PinnedResolver` answers with: set it around one request."""


class PinnedResolver(AbstractResolver):
    """The invoker's aiohttp resolver: it answers with the addresses :func:`check_url` judged
    for the request in progress and never looks a name up itself.

    Without it aiohttp would resolve the name a second time to connect, and a name whose
    record changed in between (DNS rebinding) would reach an address the policy refuses. The
    addresses travel in a context variable set around one request; TLS still verifies the
    certificate against the URL's host name, and the ``Host`` header is the URL's.
    """

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """The checked addresses of the request in progress (``OSError`` if there are none)."""
        results = [ResolveResult(hostname=host, host=address, port=port,
                                 family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                                 proto=0, flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
                   for address in pinned.get()]
        if family in (socket.AF_INET, socket.AF_INET6):
            results = [r for r in results if r["family"] == family]
        if not results:
            raise OSError(f"no checked address for {host!r}")
        return results

    async def close(self) -> None:
        """Nothing to release."""


# ----------------------------------------------------------------------------- headers and secrets

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENGINE_HEADERS = frozenset({
    # Framing and routing: a worker's value would desynchronise or redirect the request.
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
    "te", "trailer", "expect", "proxy-connection",
})


def check_header(name: object, value: object) -> None:
    """Refuse a configured header the engine cannot send as given (D7, D8 of the fuzzing)."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise RegistrationRefused("invalid_header",
                                  f"header name {name!r:.80} is not an HTTP token")
    if name.lower() in _ENGINE_HEADERS:
        raise RegistrationRefused("invalid_header",
                                  f"header {name!r} is set by the engine and cannot be configured")
    if not isinstance(value, str) or _CONTROL.search(value):
        raise RegistrationRefused("invalid_header",
                                  f"the value of header {name!r} holds a control character")


def has_control(value: str) -> bool:
    """Whether ``value`` holds a C0 control character or DEL (never valid in a header)."""
    return _CONTROL.search(value) is not None


def secret_allowed(name: str, allowlist: tuple[str, ...]) -> bool:
    """Whether ``allowlist`` (exact names, or prefixes ending in ``*``) lets auth read ``name``."""
    for entry in allowlist:
        if entry.endswith("*"):
            if name.startswith(entry[:-1]):
                return True
        elif name == entry:
            return True
    return False
