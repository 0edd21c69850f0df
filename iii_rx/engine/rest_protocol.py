"""The REST API's HTTP connections: heads must arrive in time, bad requests log quietly.

aiohttp's low-level server has no bound on how long a request head may take to arrive, so a
client sending one header byte at a time keeps its connection (and its memory) forever; and it
logs a full traceback at ERROR for every malformed request, so a peer can fill the operator's
log at will. :class:`GuardedServer` is that server with both fixed:

* **Header timeout.** A connection must deliver a complete request head within
  ``header_timeout`` seconds of opening, and each later head (keep-alive) within
  ``header_timeout`` of its first byte; otherwise the connection is closed. Idle keep-alive
  connections are aiohttp's ``keepalive_timeout``.
* **Quiet errors.** A malformed request is answered 400 and logged as one escaped line without
  a traceback, at most ``burst`` lines per interval
  (:class:`~iii_rx.engine.logsafe.RateLimitedLog`); other connection errors keep their
  traceback, rate-limited too. The answer is the API's JSON error envelope; aiohttp's own text
  quotes the bytes it refused (a client's cookie or token, echoed).
* **Head sizes.** A request line or a header may be :data:`MAX_HEAD_LINE` bytes long (aiohttp:
  8190; tokens and cookies beyond 8 KiB are common, and the Rust engine takes them); a longer
  one is answered 431.

The API tells a connection that a request is finished (:func:`request_finished`) so that the
header clock starts again only for the next head, and waits for a handler's answer only while
the client is still connected (:func:`unless_gone`): aiohttp's ``connection_lost`` of the
connection (closed or reset by the client, or by the engine) ends the wait at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from iii_rx.aio import unless
from iii_rx.engine.logsafe import RateLimitedLog, printable

__all__ = ["MAX_HEAD_LINE", "ClientGone", "GuardedServer", "request_finished", "unless_gone"]

T = TypeVar("T")

MAX_HEAD_LINE = 64 * 1024
"""The longest request line or header line the REST API reads (at most 128 headers)."""

log = logging.getLogger("iii_rx.engine.rest")

_silent = logging.getLogger("iii_rx.engine.rest.aiohttp")
_silent.disabled = True  # aiohttp's own lines; the handler below writes ours instead


class _GuardedHandler(web_protocol.RequestHandler):
    """One HTTP connection of the REST API (see the module docstring)."""

    def __init__(self, manager: web.Server, *, header_timeout: float, quiet: RateLimitedLog,
                 **kwargs: Any) -> None:
        super().__init__(manager, logger=_silent, **kwargs)
        self._quiet = quiet
        # The head count is aiohttp's own (``_request_count``, one per parsed head); an aiohttp
        # without it gets no header timeout rather than a wrong one.
        self._header_timeout = header_timeout if hasattr(self, "_request_count") else 0.0
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_at_arm = 0
        self._finished = 0
        """Requests the API finished; equal to the heads parsed when none is in progress."""
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Resolved when the connection is gone (its client closed or reset it, or we did)."""

    def _heads(self) -> int:
        """Request heads parsed on this connection so far."""
        return int(getattr(self, "_request_count", 0))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if not self.lost.done():
            self.lost.set_result(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self._heads()
        super().data_received(data)
        if self._heads() != before:
            self._disarm()
        elif self._head_timer is None and self._heads() == self._finished:
            self._arm()  # the first bytes of the next head

    def finished_one(self) -> None:
        """The API is done with one request of this connection."""
        self._finished += 1

    def _arm(self) -> None:
        self._disarm()
        if self._header_timeout > 0:
            self._heads_at_arm = self._heads()
            self._head_timer = asyncio.get_running_loop().call_later(
                self._header_timeout, self._head_overdue)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        heads = self._heads()
        if heads != self._heads_at_arm or heads != self._finished:
            return  # a head arrived, or a request is being handled
        peer = self.transport.get_extra_info("peername") if self.transport else None
        self._quiet.log(logging.INFO, "header-timeout", "REST API: closed a connection from "
                        "%s that sent no complete request head within %.1f s",
                        printable(peer), self._header_timeout)
        self.force_close()

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer to a request it could not read or serve, as a JSON error envelope
        that repeats nothing of the request (a line too long: 431)."""
        super().handle_error(request, status, exc, message)  # logs; raises if a reply began
        if isinstance(exc, LineTooLong):
            status, text = 431, f"a request line or header is longer than {MAX_HEAD_LINE} bytes"
        else:
            text = "malformed HTTP request" if status == 400 else HTTPStatus(status).phrase
        code = HTTPStatus(status).phrase.upper().replace(" ", "_")
        response = web.json_response({"error": {"code": code, "message": text}}, status=status)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's error lines, escaped and rate-limited; no traceback for bad requests."""
        exc = kw.get("exc_info")
        peer = printable(args[1]) if len(args) > 1 else "?"
        if isinstance(exc, HttpProcessingError):
            self._quiet.log(logging.WARNING, "malformed-request",
                            "REST API: malformed HTTP request from %s: %s", peer,
                            printable(exc.message))
        else:
            try:
                text = str(args[0]) % args[1:] if args else "connection error"
            except (TypeError, ValueError):
                text = str(args[0])
            self._quiet.log(logging.ERROR, "connection-error", "REST API: %s", printable(text),
                            exc_info=exc if isinstance(exc, BaseException) else None)


class GuardedServer(web.Server):
    """aiohttp's low-level server whose connections are :class:`_GuardedHandler` s."""

    def __init__(self, handler: Any, *, header_timeout: float, quiet: RateLimitedLog | None = None,
                 **kwargs: Any) -> None:
        handler_args = {k: kwargs.pop(k) for k in list(kwargs)
                        if k not in ("request_factory", "handler_cancellation", "loop")}
        super().__init__(handler, **kwargs)
        handler_args.setdefault("max_line_size", MAX_HEAD_LINE)
        handler_args.setdefault("max_field_size", MAX_HEAD_LINE)
        self._handler_args = handler_args
        self._header_timeout = header_timeout
        self._quiet = quiet if quiet is not None else RateLimitedLog(log)
        """The engine's budget of the REST API's peer-caused lines (shared by connections)."""
        self._guarded_loop = asyncio.get_running_loop()

    def __call__(self) -> web_protocol.RequestHandler:
        return _GuardedHandler(self, loop=self._guarded_loop, header_timeout=self._header_timeout,
                               quiet=self._quiet, **self._handler_args)


def request_finished(request: web.BaseRequest) -> None:
    """Tell the request's connection that the API is done with it (restarts the head clock)."""
    protocol = request.protocol
    if isinstance(protocol, _GuardedHandler):
        protocol.finished_one()


class ClientGone(ConnectionResetError):
    """The request's client closed its connection before the answer was ready."""


async def unless_gone(request: web.BaseRequest, work: Awaitable[T],
                      timeout: float | None = None) -> T:
    """``await work`` within ``timeout`` seconds (``None``: no bound) while the request's client
    stays connected. Otherwise ``work`` is cancelled (and awaited) and :class:`ClientGone` or
    :class:`asyncio.TimeoutError` is raised. A client that is merely slow to read is connected:
    only the connection's end counts (a client whose body aiohttp stopped reading because
    nobody consumes it is noticed once reading resumes)."""
    protocol = request.protocol
    gone = protocol.lost if isinstance(protocol, _GuardedHandler) else None
    return await unless(work, gone, ClientGone("the client closed the connection"), timeout)
