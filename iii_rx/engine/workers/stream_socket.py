"""The streams socket: the websocket the Rust engine's stream worker offers to stream clients.

Off by default; ``Engine(stream_port=P)`` / ``iii-rx engine --stream-port P`` opens it on
``stream_host``, by default the engine's host (``0``: a free port, :attr:`StreamSocket.port`).
A client sends JSON text frames

* ``{"type": "join", "data": {"subscriptionId", "streamName", "groupId", "id"?}}`` — subscribe
  to a group (or to one item of it, with ``id``). The ``stream:join`` bindings are called first
  with ``{subscription_id, stream_name, group_id, id, context}``; if one answers
  ``{"unauthorized": true}`` the client gets an ``unauthorized`` message and no subscription.
  Otherwise it gets a ``sync`` message with the item (or the group's items) as they are now;
* ``{"type": "leave", "data": {...}}`` — end a subscription (the ``stream:leave`` bindings are
  called). Closing the socket leaves every subscription still open.

and receives every change of what it joined as the ``stream`` trigger's event (once per
matching subscription):
``{"type": "stream", "timestamp", "streamName", "groupId", "id", "event": {"type": "sync" |
"create" | "update" | "delete" | "unauthorized" | "event", ...}}``.

With the engine's ``token`` set, a handshake without ``Authorization: Bearer <token>`` is
refused (401), as on every other port of the engine. With ``stream_auth_function`` set, each
connection first calls that function with
``{headers, path, query_params, addr}``; the ``context`` of its answer is passed to the join and
leave bindings of that connection (a failed call leaves the context empty, as in the Rust
engine). The auth function and each binding get :data:`CALL_TIMEOUT_S` to answer: one that
does not counts as failed, so it cannot hold a connection forever. A frame that is not a valid
message is logged and ignored.

A client that reads too slowly is disconnected (its socket aborted, what waited for it freed)
once more than :data:`OUTBOX_LIMIT` messages, or more than the engine's ``max_queue_bytes``
(32 MiB by default, as for a worker connection; ``0``: no byte bound), would wait in its
outbox. The outbox is counted in the bytes of the JSON text sent; a message is always let into
an empty outbox, and the message being written plus the socket's write buffer come on top.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from iii_rx.aio import TaskSet, unless
from iii_rx.engine.auth import bearer_token_ok
from iii_rx.engine.logsafe import RateLimitedLog, printable
from iii_rx.engine.rbac_session import header_map
from iii_rx.engine.services import EngineServices
from iii_rx.engine.triggers import Binding
from iii_rx.errors import IIIInvocationError

__all__ = ["CALL_TIMEOUT_S", "MAX_SUBSCRIPTIONS", "OUTBOX_LIMIT", "StreamSocket", "Subscription"]

log = logging.getLogger("iii_rx.engine.workers")

OUTBOX_LIMIT = 1024
"""Messages that may wait for one slow client before it is disconnected (the bytes that may
wait are bounded too: the engine's ``max_queue_bytes``)."""
MAX_SUBSCRIPTIONS = 1024
"""Subscriptions one connection may hold: a further join is answered ``unauthorized`` (every
change is matched against every subscription, and a connection could join without end)."""
CALL_TIMEOUT_S = 30.0
"""Bound on the auth function and each ``stream:join`` / ``stream:leave`` binding: one that
never answers would otherwise hold its connection's reads (or its close) forever."""

Reader = Callable[[str, str, str | None], Awaitable[Any]]
"""``read(stream, group, item)``: the item (``item`` given) or the group's items now."""


@dataclass(frozen=True)
class Subscription:
    """One joined group (or item) of one connection."""

    subscription_id: str
    stream_name: str
    group_id: str
    item_id: str | None

    def matches(self, message: dict[str, Any]) -> bool:
        return (self.stream_name == message.get("streamName")
                and self.group_id == message.get("groupId")
                and (self.item_id is None or self.item_id == message.get("id")))

    def event(self, context: Any) -> dict[str, Any]:
        """The payload of the ``stream:join`` / ``stream:leave`` bindings."""
        return {"subscription_id": self.subscription_id, "stream_name": self.stream_name,
                "group_id": self.group_id, "id": self.item_id, "context": context}


def _wrapper(stream: str, group: str, item: str | None, event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "stream", "timestamp": int(time.time() * 1000), "streamName": stream,
            "groupId": group, "id": item, "event": event}


def _parse(raw: str | bytes, failures: RateLimitedLog) -> tuple[str, Subscription] | None:
    """``(kind, subscription)`` of a join/leave frame; ``None`` (logged) for anything else."""
    try:
        message = json.loads(raw)
        kind, data = message["type"], message["data"]
        item = data.get("id")
        fields = (data["subscriptionId"], data["streamName"], data["groupId"])
        if kind not in ("join", "leave") or not all(isinstance(f, str) for f in fields) or (
                item is not None and not isinstance(item, str)):
            raise ValueError("not a join or leave message")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        # RecursionError: JSON nested past the parser's depth (it cut the connection, with a
        # traceback logged every time)
        failures.log(logging.WARNING, "bad_frame", "stream socket: ignored a frame (%s)",
                     printable(str(exc)))
        return None
    return kind, Subscription(fields[0], fields[1], fields[2], item)


class _ClientLeft(Exception):
    """A client left while a join made for it waited."""


class _Client:
    """One socket connection: its subscriptions and its outbox (written by one task).

    The outbox holds the JSON text of each message (ASCII: its length is its size in bytes);
    :attr:`queued_bytes` counts it, as :class:`~iii_rx.engine.connection.WorkerConnection`
    counts a worker's queue.
    """

    def __init__(self, connection: ServerConnection, context: Any,
                 failures: RateLimitedLog, max_queue_bytes: int = 0) -> None:
        self.connection = connection
        self.failures = failures
        self.context = context
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.max_queue_bytes = max_queue_bytes
        """Bytes that may wait in the outbox (0 = no byte bound)."""
        self.queued_bytes = 0
        """Bytes of the messages waiting in the outbox (not yet handed to the socket)."""
        self.peak_queued_bytes = 0
        """The most :attr:`queued_bytes` ever reached (the bound tests read it)."""
        self.cut: str | None = None
        """Why this slow client was disconnected (None unless it was)."""

    def send(self, message: dict[str, Any]) -> None:
        if self.cut is not None:
            return
        try:  # ensure_ascii (the default): the text's length is its size in bytes
            text = json.dumps(message, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as exc:  # an in-process caller's data
            self.failures.log(logging.WARNING, "encode", "stream socket: could not encode a "
                              "message for a client: %s", printable(exc))
            return
        queued = self.queued_bytes + len(text)
        if self.outbox.qsize() >= OUTBOX_LIMIT:
            self._disconnect(f"fell {OUTBOX_LIMIT} messages behind")
            return
        if not self.outbox.empty() and 0 < self.max_queue_bytes < queued:
            self._disconnect(f"would have {queued} bytes waiting (limit "
                             f"{self.max_queue_bytes})")
            return
        self.outbox.put_nowait(text)
        self.queued_bytes = queued
        self.peak_queued_bytes = max(self.peak_queued_bytes, queued)

    def _disconnect(self, why: str) -> None:
        """Abort the socket of a client that does not read; free what waited for it."""
        self.cut = why
        self.failures.log(logging.WARNING, "slow_client", "stream socket: a client %s; "
                          "disconnecting it", why)
        while not self.outbox.empty():
            self.outbox.get_nowait()
        self.queued_bytes = 0
        self.connection.transport.abort()

    async def write(self) -> None:
        while True:
            text = await self.outbox.get()
            self.queued_bytes -= len(text)
            await self.connection.send(text)


class StreamSocket:
    """The socket server of one stream worker (see the module docstring)."""

    def __init__(self, services: EngineServices, read: Reader,
                 join: dict[str, Binding], leave: dict[str, Binding],
                 auth_function: str | None = None) -> None:
        self.services = services
        self._failures = services.limited_log(log)
        self.read = read
        self.join_bindings = join
        self.leave_bindings = leave
        self.auth_function = auth_function
        self.clients: set[_Client] = set()
        self._server: Server | None = None
        self.host: str | None = None
        """The host it binds (``None`` until started)."""
        self._tasks = TaskSet("the stream socket")

    @property
    def port(self) -> int | None:
        """The bound port (``None`` when not listening)."""
        if self._server is None:
            return None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(address, port)`` of every bound socket (one per address the host resolves to)."""
        if self._server is None:
            return []
        names = [s.getsockname() for s in self._server.sockets]
        return [(str(name[0]), int(name[1])) for name in names]

    async def start(self, host: str, port: int) -> None:
        self.host = host
        self._server = await serve(self._serve, host, port, process_request=self._check_token)
        log.info("stream socket listening on %s:%d", host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        await self._tasks.aclose()

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send a change (the ``stream`` event) once per subscription it matches (a client
        that joined a group and one of its items gets it twice, as from the Rust engine)."""
        for client in list(self.clients):
            for subscription in list(client.subscriptions.values()):
                if subscription.matches(message):
                    client.send(message)

    # ------------------------------------------------------------------ one connection

    def _check_token(self, connection: ServerConnection, request: Request) -> Response | None:
        """401 unless the handshake carries the engine's token (when it has one)."""
        token = self.services.config.token
        if token is None or bearer_token_ok(request.headers.get("Authorization"), token):
            return None
        self._failures.log(logging.WARNING, "unauthorized", "stream socket: refused a "
                           "connection from %s: missing or wrong token",
                           printable(connection.remote_address))
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    async def _authenticate(self, connection: ServerConnection) -> Any:
        if not self.auth_function:
            return None
        request = connection.request
        target = urlsplit(request.path if request is not None else "/")
        headers = header_map(request.headers) if request is not None else {}
        peer = connection.remote_address
        payload = {"headers": headers, "path": target.path,
                   "query_params": parse_qs(target.query, keep_blank_values=True),
                   "addr": f"{peer[0]}:{peer[1]}" if peer else ""}
        try:
            answer = await self.services.call(self.auth_function, payload,
                                              timeout=CALL_TIMEOUT_S)
        except IIIInvocationError as exc:
            self._failures.log(logging.WARNING, "auth", "stream socket: auth function %s "
                               "failed: %s", printable(self.auth_function), printable(exc))
            return None
        return answer.get("context") if isinstance(answer, dict) else None

    async def _serve(self, connection: ServerConnection) -> None:
        client = _Client(connection, await self._authenticate(connection), self._failures,
                         self.services.config.max_queue_bytes)
        self.clients.add(client)
        writer = self._tasks.spawn(client.write(), name="stream socket writer")
        try:
            async for raw in connection:
                parsed = _parse(raw, self._failures)
                if parsed is None:
                    continue
                kind, subscription = parsed
                if kind == "join":
                    if not await self._join_unless_gone(connection, client, subscription):
                        break  # the client left while the join waited
                else:  # no change goes out once the client asked to leave
                    client.subscriptions.pop(subscription.subscription_id, None)
                    await self._notify(self.leave_bindings, subscription.event(client.context))
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            writer.cancel()
            for subscription in list(client.subscriptions.values()):
                await self._notify(self.leave_bindings, subscription.event(client.context))
            client.subscriptions.clear()

    async def _join_unless_gone(self, connection: ServerConnection, client: _Client,
                                sub: Subscription) -> bool:
        """:meth:`_join`, given up if the client leaves meanwhile (``False``): the join may
        wait on a worker (a custom stream's provider, a join binding), and one that never
        answers held the connection's task and the engine's pending call for ever."""
        gone = asyncio.ensure_future(connection.wait_closed())
        try:  # a join given up withdraws its calls (Router.call, cancelled)
            await unless(self._join(client, sub), gone, _ClientLeft())
        except _ClientLeft:
            return False
        finally:
            gone.cancel()
        return True

    async def _join(self, client: _Client, sub: Subscription) -> None:
        if (len(client.subscriptions) >= MAX_SUBSCRIPTIONS
                and sub.subscription_id not in client.subscriptions):
            self._failures.log(logging.WARNING, "too_many_subscriptions", "stream socket: "
                               "refused a join past %d subscriptions of one connection",
                               MAX_SUBSCRIPTIONS)
            client.send(_wrapper(sub.stream_name, sub.group_id, sub.item_id,
                                 {"type": "unauthorized"}))
            return
        answers = await self._notify(self.join_bindings, sub.event(client.context))
        if any(isinstance(a, dict) and a.get("unauthorized") is True for a in answers):
            client.send(_wrapper(sub.stream_name, sub.group_id, sub.item_id,
                                 {"type": "unauthorized"}))
            return
        client.subscriptions[sub.subscription_id] = sub
        try:
            data = await self.read(sub.stream_name, sub.group_id, sub.item_id)
        except IIIInvocationError as exc:
            self._failures.log(logging.WARNING, "sync", "stream socket: could not read %s/%s "
                               "for a join: %s", printable(sub.stream_name),
                               printable(sub.group_id), printable(exc))
            return
        client.send(_wrapper(sub.stream_name, sub.group_id, sub.item_id,
                             {"type": "sync", "data": data}))

    async def _notify(self, bindings: dict[str, Binding], event: dict[str, Any]) -> list[Any]:
        """Call each binding in turn with ``event``; their answers (failures are logged)."""
        answers = []
        for binding in list(bindings.values()):
            try:
                answers.append(await self.services.call(
                    binding.function_id, event, namespace=binding.namespace,
                    metadata=binding.metadata, timeout=CALL_TIMEOUT_S))
            except Exception as exc:  # an error result, a timeout: logged, the others run
                self._failures.log(logging.WARNING, "join_leave", "stream socket: %s failed: "
                                   "%s", printable(binding.function_id), printable(exc))
        return answers
