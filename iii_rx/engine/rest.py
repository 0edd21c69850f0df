"""The REST API of the embedded engine: ``http`` triggers served over HTTP (docs/protocol.md §6.5).

One aiohttp low-level server on ``rest_port`` (no aiohttp router: routes live in a
:class:`~iii_rx.engine.rest_routes.RouteTable` fed by ``http`` bindings). Per request:

1. match ``(METHOD, path)``, else ``404 {"error": {"code": "NOT_FOUND", ...}}``;
2. read the body: JSON requests (``Content-Type`` containing ``application/json``) are read
   whole and parsed into ``body``; other bodies are streamed into the ``request_body`` channel
   while the handler runs;
3. run the binding's ``condition_function_id`` (result ``false`` ⇒ ``422 CONDITION_NOT_MET``,
   error ⇒ 500) and ``middleware_function_ids`` (docs/protocol.md §6.5.2);
4. invoke the bound function in the binding's namespace with its ``metadata`` and race the
   result against the ``response`` channel (6.5.4): text frames before the first binary frame
   set status and headers, the first binary frame starts a streamed response, closing the
   writer ends it; a non-null result before that is the buffered envelope of 6.5.3 (both
   ``status_code`` and ``statusCode``); an error is ``500`` with an ``error_id``;
5. everything until the response head is bounded by ``timeout_ms`` (``504``, empty body);
   a client that leaves (closes or resets its connection) before the head, or while a
   streamed response waits for a chunk, ends the request at once: its slot is freed and its
   pending call withdrawn (a late answer is dropped), as for a calling worker that left.

Bounds, each an option (docs/http.md): ``token`` is required as ``Authorization: Bearer`` when
set (401 otherwise); ``max_concurrency`` requests are handled at once, counted from after a JSON
body was read, so slow uploads cannot starve other clients; a body that stalls for
``body_timeout_ms`` between two chunks ends the request (408) or the ``request_body`` channel
(aborted), and so does a client that stops reading a streamed response; request heads must
arrive within ``header_timeout_ms`` (:mod:`iii_rx.engine.rest_protocol`); JSON bodies nested
deeper than ``max_json_depth`` (or holding a lone surrogate escape, which no worker could
receive) are refused with 400; a handler status of 100-199 is not a final response and
answers 500 ``INVALID_STATUS``. Lines a client or worker can trigger are escaped and
rate-limited (:mod:`iii_rx.engine.logsafe`).

Divergence from the Rust engine: a handler that returns ``null`` and whose
``response`` writer never connects gets a ``500 NO_RESPONSE`` after ``no_response_grace_ms``
instead of hanging until the 504. The grace exists because the official SDK's streaming
helpers are fire-and-forget: the writer may still be on its way when the handler returns.

The server reaches the rest of the engine through two narrow interfaces, :data:`Invoke` and
:class:`~iii_rx.engine.services.ChannelService`, so it can be driven without a worker socket;
:mod:`iii_rx.engine.rest_trigger` plugs it into the engine as the ``http`` trigger type.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from iii_rx.aio import TaskSet
from iii_rx.engine.auth import bearer_token_ok
from iii_rx.engine.json_bounds import MAX_JSON_DEPTH
from iii_rx.engine.logsafe import RateLimitedLog, printable
from iii_rx.engine.rest_body import (
    CHUNK,
    Stalled,
    parse_json_body,
    pump,
    read_body,
    stalled_response,
)
from iii_rx.engine.rest_envelope import (
    NO_BODY_STATUS,
    buffered_response,
    error_response,
    final_status,
    headers_of,
    invalid_status_response,
    new_error_id,
    preflight,
    request_headers,
    status_of,
    trace_of,
)
from iii_rx.engine.rest_protocol import ClientGone, GuardedServer, request_finished, unless_gone
from iii_rx.engine.rest_routes import Route, RouteError, RouteTable, route_from_config
from iii_rx.engine.services import NO_TRACE, ChannelService, LocalReader, Trace
from iii_rx.errors import IIIInvocationError

__all__ = ["Invoke", "RestApi", "RouteError"]

log = logging.getLogger("iii_rx.engine.rest")

Invoke = Callable[[str, str, Any, Any, Trace], Coroutine[Any, Any, Any]]
"""``await invoke(namespace, function_id, data, metadata, trace)``: the result, or raises
:class:`IIIInvocationError` (its ``code``/``message`` go into the 500 envelope)."""


# ----------------------------------------------------------------------------- exchange


@dataclass
class _Head:
    """A streamed response ready to start: status and headers set, first chunk (if any)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    first: bytes | None = None
    ended: bool = False

    def control(self, text: str) -> None:
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # nested past the parser: no control message
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "set_status":
            code = message.get("status_code")
            if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
                self.status = code
        elif message.get("type") == "set_headers":
            headers = message.get("headers")
            if isinstance(headers, dict):
                self.headers.update((k, v) for k, v in headers.items() if isinstance(v, str))


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How the bound function's call ended: its result, or the exception it raised."""

    result: Any = None
    error: Exception | None = None


async def _settle(call: Coroutine[Any, Any, Any]) -> _Outcome:
    """Await ``call``; its failure is a value (read by the request when it still waits)."""
    try:
        return _Outcome(await call)
    except Exception as exc:
        return _Outcome(error=exc)


@dataclass(eq=False)
class _Exchange:
    """Per-request state that must be cleaned up whatever the outcome.

    ``tasks`` owns the request's helpers (the body pump, the pending ``receive``): they end
    with the request.
    """

    route: Route
    payload: dict[str, Any]
    tasks: TaskSet
    trace: Trace = NO_TRACE
    channel_ids: list[str] = field(default_factory=list)
    reader: LocalReader | None = None
    recv: asyncio.Task[bytes | str | None] | None = None
    call: asyncio.Task[_Outcome] | None = None
    gone: bool = False
    """The client left before its answer was complete: the call is withdrawn."""


# ----------------------------------------------------------------------------- server


class RestApi:
    """The REST API server and its route table.

    ``invoke`` and ``channels`` connect it to the engine; ``timeout_ms`` is the protocol's
    ``default_timeout`` (504), ``no_response_grace_ms`` the wait for a response writer after
    a handler returned ``None``,
    ``max_concurrency`` the in-flight bound (excess requests wait), ``max_json_bytes`` the
    largest JSON body read into memory (413 above it), ``max_json_depth`` its deepest nesting
    (400 above it). ``token`` (``None``: open) is the bearer token every request must carry;
    ``header_timeout_ms`` and ``body_timeout_ms`` are the stall bounds of the module docstring
    (0 disables one).
    """

    def __init__(
        self,
        invoke: Invoke,
        channels: ChannelService,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_ms: int = 30_000,
        no_response_grace_ms: int = 1_000,
        max_concurrency: int = 1024,
        max_json_bytes: int = 64 * 1024 * 1024,
        max_json_depth: int = MAX_JSON_DEPTH,
        channel_buffer: int = 64,
        token: str | None = None,
        header_timeout_ms: int = 10_000,
        body_timeout_ms: int = 10_000,
        peer_log: RateLimitedLog | None = None,
    ) -> None:
        self.invoke = invoke
        self._limited = peer_log if peer_log is not None else RateLimitedLog(log)
        """The engine's budget of lines a peer can cause (its connections' too)."""
        self.channels = channels
        self.host = host
        self.port = port
        self.timeout = timeout_ms / 1000
        self.no_response_grace = no_response_grace_ms / 1000
        self.max_json_bytes = max_json_bytes
        self.max_json_depth = max_json_depth
        self.channel_buffer = channel_buffer
        self.token = token or None
        self.header_timeout = header_timeout_ms / 1000
        self.body_timeout = body_timeout_ms / 1000 if body_timeout_ms > 0 else None
        self.routes = RouteTable()
        self._limit = asyncio.Semaphore(max_concurrency)
        self._runner: web.ServerRunner | None = None
        self._calls = TaskSet("the REST API's calls")
        """Calls of bound functions; they may outlive their request (a streamed response)."""

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (a wildcard host reads as loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(self.host)
        if host is None:
            host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(address, port)`` of every bound socket (none until started)."""
        runner = self._runner
        if runner is None:
            return []
        return [(str(address[0]), int(address[1])) for address in runner.addresses]

    async def start(self) -> None:
        """Bind and serve (``port=0`` picks an ephemeral port, read it from :attr:`port`)."""
        if self._calls.closed:
            self._calls = TaskSet("the REST API's calls")
        # After an early answer aiohttp reads ("lingers" on) the unread rest of a body before
        # closing; a body that stalls gets no longer than any other stall.
        lingering = min(10.0, self.body_timeout) if self.body_timeout else 10.0
        server = GuardedServer(self._handle, header_timeout=self.header_timeout,
                               quiet=self._limited,
                               handler_cancellation=False, access_log=None,
                               lingering_time=lingering)
        runner = web.ServerRunner(server, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])

    async def close(self) -> None:
        """Stop serving; calls still in flight are cancelled."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._calls.aclose()

    async def __aenter__(self) -> RestApi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ bindings

    def bind(self, trigger_id: str, function_id: str, config: Any, *,
             namespace: str = "default", metadata: Any = None, owner: Any = None) -> Route:
        """Add (or replace) the route of an ``http`` binding; raises :class:`RouteError`."""
        route = route_from_config(trigger_id, function_id, config, namespace=namespace,
                                  metadata=metadata, owner=owner)
        replaced = self.routes.add(route)
        if replaced is not None and replaced.trigger_id != trigger_id:
            log.info("http route %s now served by %s (replaces binding %s)",
                     printable(route.label), printable(function_id),
                     printable(replaced.trigger_id))
        else:
            log.debug("http route %s -> %s", printable(route.label), printable(function_id))
        return route

    def unbind(self, trigger_id: str, config: Any, owner: Any = None) -> bool:
        """Remove the route of binding ``trigger_id`` if it still owns it."""
        if isinstance(config, Mapping) and isinstance(config.get("api_path"), str):
            method = config.get("http_method")
            return self.routes.remove(trigger_id, method if isinstance(method, str) else "GET",
                                      config["api_path"], owner)
        return self.routes.remove_trigger(trigger_id) is not None

    # ------------------------------------------------------------------ requests

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            if self.token is not None and not _is_preflight(request) and \
                    not bearer_token_ok(request.headers.get("Authorization"), self.token):
                return _unauthorized()
            response = await self._dispatch(request)
            if "Origin" in request.headers and not response.prepared:
                response.headers.setdefault("Access-Control-Allow-Origin", "*")
                response.headers.setdefault("Access-Control-Expose-Headers", "*")
            return response
        finally:
            request_finished(request)

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        if _is_preflight(request):
            return preflight(request)
        found = self.routes.match(request.method.upper(), request.raw_path.split("?", 1)[0])
        if found is None:
            return error_response(404, "NOT_FOUND", "Not Found")
        route, params = found
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        raw: bytes | None = None
        body: Any = None
        if "application/json" in request.headers.get("Content-Type", ""):
            # Read before taking a concurrency slot: a slow upload holds only its connection.
            try:
                raw = await asyncio.wait_for(
                    read_body(request, self.max_json_bytes, self.body_timeout), self.timeout)
            except asyncio.TimeoutError:
                return web.Response(status=504)
            except Stalled:
                return stalled_response(self.body_timeout)
            if raw is None:
                return error_response(413, "PAYLOAD_TOO_LARGE", "Request body too large")
            body, refusal = parse_json_body(raw, self.max_json_depth)
            if refusal is not None:
                return error_response(400, "INVALID_JSON", refusal)
        exchange = _Exchange(route, {}, TaskSet(f"http {printable(route.label)}"))
        try:
            try:
                head = await unless_gone(request, self._admitted(
                    request, exchange, params, raw, body), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return web.Response(status=504)
            except ClientGone:  # nobody to answer: the slot is free again, the call withdrawn
                exchange.gone = True
                return web.Response(status=503)  # never sent
            if isinstance(head, _Head):  # the timeout bounds the head, not a streamed body
                return await self._stream(exchange, request, head)
            return head
        finally:
            await self._finish(exchange)

    async def _admitted(self, request: web.BaseRequest, exchange: _Exchange,
                        params: dict[str, str], raw: bytes | None,
                        body: Any) -> _Head | web.StreamResponse:
        """:meth:`_until_head` in one of the ``max_concurrency`` slots."""
        async with self._limit:
            return await self._until_head(request, exchange, params, raw, body)

    async def _until_head(self, request: web.BaseRequest, exchange: _Exchange,
                          params: dict[str, str], raw: bytes | None,
                          body: Any) -> _Head | web.StreamResponse:
        """Everything up to a buffered response or the head of a streamed one."""
        route = exchange.route
        exchange.trace = trace_of(request.headers)
        headers = request_headers(request)
        if self.token is not None:  # it carried the engine's token: no handler may read it
            headers.pop("authorization", None)
        exchange.payload = {
            "query_params": dict(request.rel_url.query.items()),
            "path_params": params,
            "headers": headers,
            "path": route.path,
            "method": request.method.upper(),
            "body": body,
            "trigger": {"type": "http", "path": route.path, "method": route.method},
        }
        early = await self._preconditions(exchange)
        if early is not None:
            return early
        await self._open_channels(exchange, request, raw)
        return await self._respond(exchange)

    async def _preconditions(self, exchange: _Exchange) -> web.StreamResponse | None:
        """Condition function then per-route middleware; a response ends the request."""
        route = exchange.route
        if route.condition_function_id is not None:
            try:
                verdict = await self.invoke(route.namespace, route.condition_function_id,
                                            exchange.payload, None, exchange.trace)
            except Exception as exc:
                return self._failure(exc, route, "condition function failed")
            if verdict is False:
                return error_response(422, "CONDITION_NOT_MET", "Request condition not met",
                                       skipped=True)
        for middleware_id in route.middleware_function_ids:
            request_view = {key: exchange.payload[key]
                            for key in ("path_params", "query_params", "headers", "method")}
            try:
                outcome = await self.invoke(
                    route.namespace, middleware_id,
                    {"phase": "preHandler", "request": request_view, "context": {}}, None,
                    exchange.trace)
            except Exception as exc:
                return self._failure(exc, route, "middleware failed")
            if isinstance(outcome, Mapping) and outcome.get("action") == "respond":
                answer = outcome.get("response")
                answer = answer if isinstance(answer, Mapping) else {}
                return self._buffered({"status_code": answer.get("status_code", 200),
                                       "headers": answer.get("headers") or {},
                                       "body": answer.get("body", {})}, route, False)
        return None

    async def _open_channels(self, exchange: _Exchange, request: web.BaseRequest,
                             raw: bytes | None) -> None:
        request_channel = self.channels.create(self.channel_buffer)
        response_channel = self.channels.create(self.channel_buffer)
        request_id = request_channel["writer"]["channel_id"]
        response_id = response_channel["reader"]["channel_id"]
        exchange.channel_ids += [request_id, response_id]
        exchange.payload["request_body"] = request_channel["reader"]
        exchange.payload["response"] = response_channel["writer"]
        exchange.reader = self.channels.local_reader(response_id)
        writer = self.channels.local_writer(request_id)
        if raw is None and not request.body_exists:
            raw = b""
        if raw is not None and len(raw) <= self.channel_buffer // 2 * CHUNK:
            await pump(writer, request, raw, None)  # fits in the pipe: no task needed
        else:
            exchange.tasks.spawn(pump(writer, request, raw, self.body_timeout),
                                 name=f"iii-rest-body-{request_id}")

    async def _respond(self, exchange: _Exchange) -> _Head | web.StreamResponse:
        route = exchange.route
        call = exchange.call = self._calls.spawn(
            _settle(self.invoke(route.namespace, route.function_id, exchange.payload,
                                route.metadata, exchange.trace)),
            name=f"iii-rest-call-{route.function_id}")
        return await self._race(exchange, call)

    async def _race(self, exchange: _Exchange,
                    call: asyncio.Task[_Outcome]) -> _Head | web.StreamResponse:
        """Result versus response channel, until a response head is known (docs/protocol.md
        §6.5.4)."""
        reader = exchange.reader
        assert reader is not None
        loop = asyncio.get_running_loop()
        head = _Head()
        returned_none = False
        writer_seen = False
        grace_end = 0.0
        while True:
            if exchange.recv is None:
                exchange.recv = exchange.tasks.spawn(reader.receive())
            recv = exchange.recv
            wait_for: set[asyncio.Future[Any]] = {recv} if returned_none else {recv, call}
            timeout = None
            if returned_none and not writer_seen:
                timeout = max(0.0, grace_end - loop.time())
            done, _ = await asyncio.wait(wait_for, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if recv in done:
                exchange.recv = None
                item = recv.result()
                writer_seen = True
                if item is None:
                    if reader.end_code not in (None, 1000):  # failed before its first byte
                        return await self._aborted(exchange, call)
                    head.ended = True
                    return head
                if isinstance(item, str):
                    head.control(item)
                    continue
                head.first = item
                return head
            if call in done and not returned_none:
                outcome = call.result()
                if outcome.error is not None:
                    return self._failure(outcome.error, exchange.route, "handler failed")
                if outcome.result is not None:
                    return self._buffered(outcome.result, exchange.route,
                                          exchange.payload["method"] == "HEAD")
                returned_none = True
                writer_seen = writer_seen or reader.writer_connected
                grace_end = loop.time() + self.no_response_grace
                continue
            if reader.writer_connected:
                writer_seen = True
                continue
            error_id = new_error_id()
            self._limited.log(logging.ERROR, "no-response", "http %s: %s returned no response "
                              "and never opened the response channel (error_id %s)",
                              printable(exchange.route.label),
                              printable(exchange.route.function_id), error_id)
            return error_response(
                500, "NO_RESPONSE", "The handler returned no response and did not write to "
                "the response channel", error_id=error_id)

    async def _aborted(self, exchange: _Exchange, call: asyncio.Task[_Outcome]) -> web.Response:
        """No head was sent when the writer failed: the handler's answer within the grace."""
        await asyncio.wait({call}, timeout=self.no_response_grace)
        outcome = call.result() if call.done() else _Outcome()
        if outcome.error is not None:
            return self._failure(outcome.error, exchange.route, "handler failed")
        if outcome.result is None:
            return error_response(500, "RESPONSE_ABORTED", "The handler aborted the response "
                                  "before its first chunk", error_id=new_error_id())
        head_only = exchange.payload["method"] == "HEAD"
        return self._buffered(outcome.result, exchange.route, head_only)

    async def _stream(self, exchange: _Exchange, request: web.BaseRequest,
                      head: _Head) -> web.StreamResponse:
        reader = exchange.reader
        assert reader is not None
        if not final_status(head.status):
            return self._invalid_status(exchange.route, head.status)
        response = web.StreamResponse(status=head.status)
        for name, value in headers_of(head.headers):
            if name.lower() != "content-length":  # a streamed body is chunked: its own length
                response.headers[name] = value
        if "Origin" in request.headers:
            response.headers.setdefault("Access-Control-Allow-Origin", "*")
            response.headers.setdefault("Access-Control-Expose-Headers", "*")
        no_body = head.status in NO_BODY_STATUS or request.method.upper() == "HEAD"
        if head.ended and not no_body and "Content-Length" not in response.headers:
            response.content_length = 0
        stall = self.body_timeout

        async def relay() -> None:
            if head.first is not None and not no_body:
                await asyncio.wait_for(response.write(head.first), stall)
            while not head.ended:
                item = await reader.receive()
                if item is None:
                    break
                if isinstance(item, bytes) and not no_body:
                    # A client that stops reading would hold this request forever.
                    await asyncio.wait_for(response.write(item), stall)

        try:
            await response.prepare(request)
            await unless_gone(request, relay())  # a client that left stops the wait for chunks
            if reader.end_code not in (None, 1000):  # the writer failed: cut, no end marker
                log.debug("http %s: the response's writer failed (code %s); cutting the "
                          "response", printable(exchange.route.label), reader.end_code)
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
        except asyncio.TimeoutError:
            log.debug("http %s: client stopped reading the response for %s s; closing",
                      printable(exchange.route.label), stall)
            if request.transport is not None:
                request.transport.close()
        except (ConnectionError, RuntimeError) as exc:
            exchange.gone = True
            log.debug("http %s: client went away while streaming: %s",
                      printable(exchange.route.label), printable(exc))
        return response

    def _buffered(self, result: Any, route: Route, head_only: bool) -> web.Response:
        status = status_of(result)
        if not final_status(status):
            return self._invalid_status(route, status)
        return buffered_response(result, head_only)

    def _invalid_status(self, route: Route, status: int) -> web.Response:
        error_id = new_error_id()
        self._limited.log(logging.ERROR, "invalid-status", "http %s: %s answered status %d, "
                          "which is not a final HTTP status; answering 500 (error_id %s)",
                          printable(route.label), printable(route.function_id), status, error_id)
        return invalid_status_response(status, error_id)

    def _failure(self, exc: BaseException, route: Route, what: str) -> web.Response:
        error_id = new_error_id()
        if isinstance(exc, IIIInvocationError):
            self._limited.log(logging.ERROR, "handler-failed",
                              "http %s: %s (%s: %s, error_id %s)", printable(route.label), what,
                              printable(exc.code), printable(exc.message), error_id)
            return error_response(500, exc.code, exc.message, error_id=error_id)
        self._limited.log(logging.ERROR, "handler-crashed", "http %s: %s (error_id %s)",
                          printable(route.label), what, error_id, exc_info=exc)
        return error_response(500, "INTERNAL_ERROR", "internal server error",
                              error_id=error_id)

    async def _finish(self, exchange: _Exchange) -> None:
        if exchange.gone and exchange.call is not None:
            exchange.call.cancel()  # Router.call forgets its pending entry
        try:
            await exchange.tasks.aclose()
        finally:
            for channel_id in exchange.channel_ids:
                self.channels.remove(channel_id)


# ----------------------------------------------------------------------------- helpers


def _is_preflight(request: web.BaseRequest) -> bool:
    return (request.method.upper() == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def _unauthorized() -> web.Response:
    response = error_response(401, "UNAUTHORIZED",
                              "this engine requires Authorization: Bearer <token>")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response
