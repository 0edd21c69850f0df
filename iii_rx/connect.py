"""``connect()`` and ``connect_sync()``: address, identity and headers, then a running client.

Resolution follows docs/protocol.md §1.4: the address is the argument, else ``III_URL``, else an
embedded engine started in-process on ephemeral ports and owned (stopped) by the client. An address
that cannot name a worker port (no or wrong scheme, no host, a port out of range) raises
``ValueError`` at once: retrying cannot fix it. ``token`` (else ``III_TOKEN``) adds
``Authorization: Bearer ...`` unless the caller passed an ``Authorization`` header;
``III_NAMESPACE`` is the namespace when none is given; a non-empty ``III_WORKER_NAME``
overrides ``name``. The default name is ``hostname:pid`` (``hostname:pid:N`` for the N-th client
of a process, so two clients of one script do not collide on the engine's name lease).
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import math
import os
import platform
import re
import socket
from collections.abc import Generator, Mapping
from contextlib import AsyncExitStack
from numbers import Integral, Real
from typing import Any, cast

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from iii_rx.aio import LoopThread
from iii_rx.client import Client, open_client
from iii_rx.lifecycle import DEFAULT_MAX_WORKERS, ClientSettings
from iii_rx.notebook import Cell, CellClients, cell_clients, current_cell
from iii_rx.state import ReconnectConfig, resolve_reconnect
from iii_rx.telemetry.config import OtelConfig, OtelOption, resolve_otel
from iii_rx.worker import DEFAULT_MAX_CONCURRENCY

__all__ = ["DEFAULT_PING_INTERVAL", "DEFAULT_PING_TIMEOUT", "Connector", "check_url", "connect",
           "connect_sync", "resolve_headers", "worker_metadata"]

DEFAULT_PING_INTERVAL = 2.0
"""Seconds between the client's websocket pings."""
DEFAULT_PING_TIMEOUT = 1.5
"""Seconds a pong may take: a cut is noticed at most interval + timeout (3.5 s) after the
engine last answered, up to 3 * timeout more after the client was busy sending."""

_client_numbers = itertools.count(1)


def _version() -> str:
    """The installed distribution's version (``"unknown"`` when run from a bare source tree:
    reading ``iii_rx.__version__`` here would make the package import itself in a circle)."""
    try:
        from importlib.metadata import version

        return version("iii-rx")
    except Exception:
        return "unknown"


def resolve_headers(headers: Mapping[str, str] | None,
                    token: str | None = None) -> dict[str, str]:
    """The caller's headers plus ``Authorization: Bearer <token>`` (docs/protocol.md §1.3), the
    token being ``token``, else ``III_TOKEN``; an empty ``token`` sends none. An explicit ``token``
    with an ``Authorization`` header raises ``ValueError`` (which one should win is not ours to
    guess).
    """
    resolved = dict(headers or {})
    has_header = any(key.lower() == "authorization" for key in resolved)
    if token is not None and token.strip() and has_header:
        raise ValueError("pass either token= or an Authorization header, not both")
    value = (token if token is not None else os.environ.get("III_TOKEN", "")).strip()
    if value and not has_header:
        resolved["Authorization"] = f"Bearer {value}"
    return resolved


def check_url(url: str) -> str:
    """``url`` if a worker can connect to it; else ``ValueError`` saying what is wrong.

    A wrong or missing scheme, a missing host or a port out of range cannot succeed however
    long one retries, so they fail here, before anything waits.
    """
    try:
        parse_uri(url)
    except InvalidURI as exc:
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise ValueError(f"the engine URL {url!r} has no scheme: the worker port is a "
                             f"websocket, e.g. 'ws://{url}'") from None
        if scheme.lower() in ("http", "https"):
            fixed = ("wss://" if scheme.lower() == "https" else "ws://") + rest
            raise ValueError(f"the engine URL {url!r} is an HTTP URL: the worker port is a "
                             f"websocket, e.g. {fixed!r} (and not the REST API's port)") from None
        raise ValueError(f"the engine URL {url!r} cannot be used: {exc}") from None
    except ValueError as exc:  # urllib: "Port out of range 0-65535", bad IPv6 literal, ...
        raise ValueError(f"the engine URL {url!r} cannot be used: {exc}") from None
    return url


def _resolve_namespace(namespace: str | None) -> str | None:
    if namespace is not None:
        if not namespace.strip():
            raise ValueError("namespace must not be blank")
        return namespace
    env = os.environ.get("III_NAMESPACE", "")
    return env if env.strip() else None


def _resolve_name(name: str | None) -> str:
    env = os.environ.get("III_WORKER_NAME", "").strip()
    if env:
        return env
    if name:
        return name
    n = next(_client_numbers)
    base = f"{socket.gethostname()}:{os.getpid()}"
    return base if n == 1 else f"{base}:{n}"


def _project_name() -> str:
    cwd = os.getcwd()
    try:
        with open(os.path.join(cwd, "pyproject.toml"), encoding="utf-8") as f:
            text = f.read()
        section = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        if section:
            found = re.search(r'^name\s*=\s*["\']([^"\']+)["\']', section.group(1), re.M)
            if found:
                return found.group(1)
    except OSError:
        pass
    return os.path.basename(cwd) or "unknown"


def worker_metadata(name: str, namespace: str | None, description: str | None) -> dict[str, Any]:
    """The ``engine::workers::register`` payload, as iii_rx describes itself.

    See docs/protocol.md §2.4.
    """
    lang = os.environ.get("LANG", "")
    data: dict[str, Any] = {
        "runtime": "python",
        "version": _version(),
        "name": name,
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "pid": os.getpid(),
        "isolation": os.environ.get("III_ISOLATION") or None,
        "namespace": namespace,
        "telemetry": {
            "language": lang.split(".")[0] or None,
            "project_name": _project_name(),
            "framework": "iii-rx",
        },
        # Only what this client really does: it sends and accepts messages up to 64 MiB.
        "features": ["large-messages.v1"],
    }
    if description is not None:
        data["description"] = description
    return data


async def _open(
    url: str | None,
    *,
    name: str | None,
    namespace: str | None,
    description: str | None,
    headers: Mapping[str, str] | None,
    token: str | None,
    reconnect: ReconnectConfig,
    timeout_ms: int,
    connect_timeout: float,
    max_workers: int | None,
    max_concurrency: int,
    ping_interval: float | None,
    ping_timeout: float | None,
    loop_thread: LoopThread | None = None,
    otel: OtelConfig | None = None,
) -> Client:
    """Resolve the options, start an embedded engine if there is no address, and hand both
    to the client, which owns what was started from then on (and closes it on failure)."""
    resources = AsyncExitStack()
    try:
        resolved_ns = _resolve_namespace(namespace)
        resolved_name = _resolve_name(name)
        address = url or os.environ.get("III_URL", "").strip() or None
        if address is not None:
            check_url(address)
        else:
            # Its modules (aiohttp and more) take ~0.3 s to import: not on the caller's loop.
            await asyncio.to_thread(importlib.import_module, "iii_rx.engine")
            from iii_rx.engine import Engine

            engine = await resources.enter_async_context(Engine(port=0))
            address = str(engine.url)
        settings = ClientSettings(
            url=address,
            headers=resolve_headers(headers, token),
            name=resolved_name,
            namespace=resolved_ns,
            worker_metadata=worker_metadata(resolved_name, resolved_ns, description),
            reconnect=reconnect,
            timeout_ms=timeout_ms,
            max_workers=max_workers,
            max_concurrency=max_concurrency,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            otel=otel,
        )
    except BaseException:
        await resources.aclose()
        raise
    client = await open_client(settings, resources, connect_timeout=connect_timeout,
                               loop_thread=loop_thread)
    if otel is not None:
        from iii_rx.telemetry.tracing import attach

        attach(client, otel)
    return client


_TEXTS = ("url", "name", "namespace", "description", "token")
"""connect()'s options that are a string or None."""

_POSITIVE: dict[str, tuple[str, bool, str]] = {
    # option: (its unit, whole numbers only, what None means; "" when None is not allowed)
    "timeout_ms": ("milliseconds", False, ""),
    "connect_timeout": ("seconds", False, "no limit"),
    "max_workers": ("threads", True, f"the default, {DEFAULT_MAX_WORKERS}"),
    "max_concurrency": ("handlers", True, ""),
    "ping_interval": ("seconds", False, "no pings"),
    "ping_timeout": ("seconds", False, "no pings"),
}
"""connect()'s options that are a finite number above 0."""

_HEADER_NAME = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")  # an HTTP token (RFC 9110)
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # what websockets sends: no CR, LF, NUL


def _check_positive(name: str, value: object, unit: str, whole: bool, none_means: str) -> None:
    if value is None and none_means:
        return
    expected = (f"a {'whole' if whole else 'finite'} number of {unit} above 0"
                + (f" (or None: {none_means})" if none_means else ""))
    if isinstance(value, bool) or not isinstance(value, Integral if whole else Real):
        raise TypeError(f"{name} must be {expected}, not {type(value).__name__} {value!r}")
    number = cast(float, value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _check_headers(headers: object) -> None:
    """Refuse headers the handshake cannot send (websockets would refuse them at every retry,
    until ``connect_timeout``); values are not shown, as they may be secrets."""
    if headers is None:
        return
    try:
        pairs = dict(headers)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise TypeError(f"headers must be a mapping of header names to values, "
                        f"not {type(headers).__name__}") from None
    for key, value in pairs.items():
        if not isinstance(key, str):
            raise TypeError(f"header names must be strings, not {type(key).__name__} {key!r}")
        if not _HEADER_NAME.fullmatch(key):
            raise ValueError(f"{key!r} is not a valid HTTP header name")
        if not _HEADER_VALUE.fullmatch(str(value)):
            raise ValueError(f"the value of header {key!r} contains CR, LF or another control "
                             "character, which a handshake cannot send")


def _options(**given: Any) -> dict[str, Any]:
    """``connect()``'s options, checked and resolved: what cannot work raises here, at the call
    (a wrong type would surface later as an internal error, and a NaN or negative timer
    breaks or spins the running client), so ``await connect()`` can fail only at connecting."""
    for name in _TEXTS:
        value = given[name]
        if value is not None and not isinstance(value, str):
            shown = "" if name == "token" else f" {value!r}"
            raise TypeError(f"{name} must be a string or None, not {type(value).__name__}{shown}")
    for name, (unit, whole, none_means) in _POSITIVE.items():
        _check_positive(name, given[name], unit, whole, none_means)
    if given["namespace"] is not None and not given["namespace"].strip():
        raise ValueError("namespace must not be blank")
    if given["url"]:
        check_url(given["url"])
    _check_headers(given["headers"])
    return {**given, "reconnect": resolve_reconnect(given["reconnect"]),
            "otel": resolve_otel(given["otel"])}


class Connector:
    """What :func:`connect` returns: ``await`` it, or use it as ``async with``."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._client: Client | None = None

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open_in(current_cell()).__await__()

    async def _open_in(self, cell: Cell | None) -> Client:
        """Open a client; in a notebook cell run again, close its earlier run's first."""
        if cell is not None:
            previous = cell_clients.previous(cell)
            if previous is not None:
                CellClients.warn_replacing(previous, "await connect()")
                await previous.aclose()
        client = await _open(**self._options)
        if cell is not None:
            cell_clients.remember(cell, client)
        return client

    async def __aenter__(self) -> Client:
        self._client = await _open(**self._options)
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def connect(
    url: str | None = None,
    *,
    name: str | None = None,
    namespace: str | None = None,
    description: str | None = None,
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
    reconnect: ReconnectConfig | Mapping[str, Any] | None = None,
    timeout_ms: int = 30000,
    connect_timeout: float = 30.0,
    max_workers: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    otel: OtelOption = None,
) -> Connector:
    """Connect a worker to an iii engine on the running loop.

    ``async with iii_rx.connect(url) as iii:`` or ``iii = await iii_rx.connect(url)`` (then
    ``await iii.close()``). Waits up to ``connect_timeout`` seconds for the engine to accept
    the worker (raises :class:`~iii_rx.errors.IIIConnectionError`, or
    :class:`~iii_rx.errors.IIIRegistrationRejectedError` on a name conflict); what cannot
    succeed (a malformed URL: ``ValueError``; a handshake the engine refuses) raises at once.
    ``token`` (else ``III_TOKEN``) is sent as ``Authorization: Bearer``. ``timeout_ms`` is the
    default timeout of calls; ``max_workers`` sizes the thread pool of sync handlers (default
    64, threads started on demand); ``max_concurrency`` bounds the async handlers running at
    once (default 1024, the rest wait in arrival order). ``ping_interval`` / ``ping_timeout``
    (seconds, ``None`` for no pings) bound how long a cut connection goes unnoticed.
    ``otel`` (an :class:`~iii_rx.telemetry.OtelConfig`, a mapping of its fields, or ``True``)
    turns on OpenTelemetry spans and logs (``docs/telemetry.md``); off by default. ``reconnect``
    is a :class:`~iii_rx.ReconnectConfig` or a mapping of its fields. An argument of the wrong
    type or out of its range (the numbers are finite and above 0) raises ``TypeError`` /
    ``ValueError`` here, before anything is awaited.
    """
    return Connector(**_options(
        url=url, name=name, namespace=namespace, description=description, headers=headers,
        token=token, reconnect=reconnect, timeout_ms=timeout_ms, connect_timeout=connect_timeout,
        max_workers=max_workers, max_concurrency=max_concurrency, ping_interval=ping_interval,
        ping_timeout=ping_timeout, otel=otel))


def connect_sync(
    url: str | None = None,
    *,
    name: str | None = None,
    namespace: str | None = None,
    description: str | None = None,
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
    reconnect: ReconnectConfig | Mapping[str, Any] | None = None,
    timeout_ms: int = 30000,
    connect_timeout: float = 30.0,
    max_workers: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    otel: OtelOption = None,
) -> Client:
    """Like :func:`connect`, for sync code: the client runs on its own loop thread.

    Returns once connected. Close with ``iii.close()`` or use ``with iii_rx.connect_sync() as
    iii:``. Its Singles can be blocked on (``.result()``) from any thread and awaited from any
    loop, which is what a notebook needs. In a notebook, running the same cell again closes
    the client its earlier run opened, with a warning (``docs/client.md``, Jupyter).
    """
    options = _options(
        url=url, name=name, namespace=namespace, description=description, headers=headers,
        token=token, reconnect=reconnect, timeout_ms=timeout_ms, connect_timeout=connect_timeout,
        max_workers=max_workers, max_concurrency=max_concurrency, ping_interval=ping_interval,
        ping_timeout=ping_timeout, otel=otel)
    cell = current_cell()
    if cell is not None:
        previous = cell_clients.previous(cell)
        if previous is not None:
            CellClients.warn_replacing(previous, "connect_sync()")
            previous.close()
    loop_thread = LoopThread()
    try:
        client = loop_thread.bridge.run_blocking(_open(**options, loop_thread=loop_thread),
                                                 "connect_sync()")
    except BaseException:
        loop_thread.stop()  # the client closed what it started; this ends the thread
        raise
    if cell is not None:
        cell_clients.remember(cell, client)
    return client
