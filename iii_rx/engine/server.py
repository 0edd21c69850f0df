"""The engine's websocket port: one server, three kinds of path (docs/protocol.md §1.2).

* ``/`` — a worker connection, handed to ``serve_worker`` (the dispatcher's ``serve``);
* ``/otel`` — telemetry: accepted (after the ``admit_telemetry`` hook, when given, let it in)
  and read, each frame handed to :attr:`EngineServer.telemetry_sink` (the ``/otel`` intake,
  :mod:`~iii_rx.engine.workers.otel`; discarded when unset);
* ``/ws/channels/{id}?key=..&dir=read|write`` — one end of a channel, handed to the channel hub
  after the handshake checks: 400 when ``key``/``dir`` are missing or ``dir`` is invalid, 404
  when the hub does not know the id or the key;
* anything else — 404.

With a token configured (``Engine(token=...)``, ``--token``, ``III_TOKEN``) every path first
needs ``Authorization: Bearer <token>``, compared in constant time; without it the handshake
is answered 401 (no traceback, one rate-limited log line). Reattach tokens are issued as
:class:`~iii_rx.engine.auth.SecretToken`, so comparing one takes constant time too.

Messages up to 64 MiB (fragmented or not) are accepted; bigger ones close that connection with
1009 while every other worker keeps working. permessage-deflate is off: the Rust engine does not
negotiate it, and on loopback it costs more CPU than it saves. The engine answers websocket pings
(the library does). Unlike the Rust engine it pings worker sockets (``/``) itself and drops one
that does not answer (``ping_interval_ms`` / ``ping_timeout_ms``, see
:class:`~iii_rx.engine.connection.WorkerConnection`); channel sockets are not pinged, since a
writer held back by a full pipe cannot read the answer. A new TCP connection must complete its
opening handshake within ``handshake_timeout_ms`` (10 s by default, as on the Rust engine) or
it is dropped: a socket that sends nothing, or half a request, does not hold its file
descriptor forever. The deadline ends with the handshake; an established connection never
meets it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State

from iii_rx.engine.auth import SecretToken, bearer_token_ok
from iii_rx.engine.channels import ChannelHub
from iii_rx.engine.config import EngineConfig
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.hotsocket import HotConnection
from iii_rx.engine.logsafe import RateLimitedLog, printable

__all__ = ["CHANNEL_PREFIX", "AdmitSocket", "EngineServer", "ServeWorker", "TelemetrySink"]

log = logging.getLogger("iii_rx.engine")

_ws_log = logging.getLogger("iii_rx.engine.websockets")
# The library logs every connection at INFO; the engine logs its own line per worker instead.
_ws_log.setLevel(logging.WARNING)


def _drop_refused_handshake(record: logging.LogRecord) -> bool:
    """websockets < 17 (the newest there is for Python 3.10) logs every request it cannot
    read or accept as an ERROR "opening handshake failed" with a traceback; 17 logs nothing
    (the peer had its 400 answer). Drop those records so that both log the same."""
    error = record.exc_info[1] if record.exc_info else None
    return not (record.msg == "opening handshake failed" and isinstance(error, InvalidHandshake))


_ws_log.addFilter(_drop_refused_handshake)

CHANNEL_PREFIX = "/ws/channels/"

ServeWorker = Callable[[WorkerConnection], Awaitable[None]]
"""``await serve_worker(conn)``: run one worker connection until it ends."""
TelemetrySink = Callable[[bytes | str], None]
"""``sink(frame)``: take one frame received on ``/otel`` (on the engine's loop)."""
AdmitSocket = Callable[[ServerConnection], Awaitable[bool]]
"""``await admit(ws)``: whether an upgraded socket may be served; on ``False`` it has told the
peer why (and closed it) itself."""


def _is_worker_socket(ws: ServerConnection) -> bool:
    return ws.request is not None and urlsplit(ws.request.path).path == "/"


class EngineServer:
    """Owns the websocket server of one engine.

    ``config`` gives the address, message limit and handshake deadline, ``serve_worker`` runs
    worker sockets and ``hub`` authorises and serves channel sockets. ``host``, ``port`` and
    ``handshake_timeout_ms``, when given, replace the config's: the engine's further listeners
    (:mod:`iii_rx.engine.listeners`). ``admit_telemetry``, when given, is awaited on every
    ``/otel`` socket before its first frame is read (a guarded listener authenticates it there
    as it does a worker); ``False`` ends that connection.
    """

    def __init__(self, config: EngineConfig, serve_worker: ServeWorker, hub: ChannelHub, *,
                 host: str | None = None, port: int | None = None,
                 handshake_timeout_ms: int | None = None,
                 admit_telemetry: AdmitSocket | None = None,
                 peer_log: RateLimitedLog | None = None) -> None:
        self.config = config
        self._peer_log = peer_log if peer_log is not None else RateLimitedLog(log)
        """The engine's budget of lines a peer can cause (refused upgrades)."""
        self.serve_worker = serve_worker
        self.hub = hub
        self.host = config.host if host is None else host
        self._bind_port = config.port if port is None else port
        self.handshake_timeout_ms = (config.handshake_timeout_ms if handshake_timeout_ms is None
                                     else handshake_timeout_ms)
        self._server: Server | None = None
        self._live: set[ServerConnection] = set()
        self.port = 0
        self.telemetry_sink: TelemetrySink | None = None
        self.admit_telemetry = admit_telemetry

    async def start(self) -> int:
        """Listen on the configured host and port; returns the bound port."""
        config = self.config
        self._server = await serve(
            self._handle,
            self.host,
            self._bind_port,
            process_request=self._check_request,
            compression=None,
            max_size=config.max_message_bytes,
            # Covers the opening handshake only: from the TCP accept to the upgrade answered.
            open_timeout=self.handshake_timeout_ms / 1000,
            ping_interval=None,
            max_queue=64,
            write_limit=2**20,
            logger=_ws_log,
            backlog=1024,  # asyncio's 100 drops SYNs when many workers connect at once
            create_connection=HotConnection,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting, close every connection and wait for their handlers.

        Worker sockets get 1012 (service restart), the others 1001. Official Python SDKs up
        to 0.24.0 read a 1000/1001 close as the end and never reconnect (the Rust engine
        sends no close frame at all, which they do reconnect after); 1012 says what happens,
        and every client reconnects after it. A peer that does not read cannot complete the
        closing handshake: after ``grace`` seconds the remaining connections are aborted.
        """
        server, self._server = self._server, None
        if server is None:
            return
        # Started before ``server.close()``, so these sockets are already closing when it
        # closes the open ones with its 1001.
        restarting = [asyncio.ensure_future(ws.close(CloseCode.SERVICE_RESTART, "engine stopping"))
                      for ws in self._live
                      if ws.protocol.state is State.OPEN and _is_worker_socket(ws)]
        server.close()
        try:
            await asyncio.wait_for(asyncio.shield(server.wait_closed()), grace)
        except asyncio.TimeoutError:
            # ``connections`` lists only open ones; closing ones are those whose handler still
            # runs and, where the library has it, its set of every connection.
            stuck: set[ServerConnection] = set(getattr(server, "all_connections", ()))
            stuck.update(server.connections)
            stuck.update(self._live)
            log.warning("aborting %d connection(s) that did not close in time", len(stuck))
            for connection in stuck:
                connection.transport.abort()
            await server.wait_closed()
        await asyncio.gather(*restarting, return_exceptions=True)

    # ------------------------------------------------------------------ handshake

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        token = self.config.token
        if token is not None and not bearer_token_ok(request.headers.get("Authorization"),
                                                     token):
            self._peer_log.log(logging.WARNING, "unauthorized", "refused a connection from "
                               "%s to %s: missing or wrong token",
                               printable(connection.remote_address),
                               printable(urlsplit(request.path).path))  # no query: channel keys
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        parts = urlsplit(request.path)
        path = parts.path
        if path in ("/", "/otel"):
            return None
        if path.startswith(CHANNEL_PREFIX):
            channel_id = unquote(path[len(CHANNEL_PREFIX):])
            query = parse_qs(parts.query)
            key = query.get("key", [None])[0]
            direction = query.get("dir", [None])[0]
            if not channel_id or "/" in channel_id or key is None or direction is None:
                return connection.respond(HTTPStatus.BAD_REQUEST, "Missing channel id, key or dir")
            if direction not in ("read", "write"):
                return connection.respond(HTTPStatus.BAD_REQUEST, "dir must be read or write")
            if not self.hub.authorize(channel_id, key):
                return connection.respond(HTTPStatus.NOT_FOUND, "Channel not found")
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found")

    # ------------------------------------------------------------------ connections

    async def _handle(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path if ws.request is not None else "/")
        self._live.add(ws)
        try:
            if parts.path == "/":
                await self._serve_worker(ws)
            elif parts.path == "/otel":
                admit = self.admit_telemetry
                if admit is not None and not await admit(ws):
                    return
                async for frame in ws:
                    sink = self.telemetry_sink
                    if sink is not None:
                        sink(frame)
            else:
                channel_id = unquote(parts.path[len(CHANNEL_PREFIX):])
                direction = parse_qs(parts.query)["dir"][0]
                await self.hub.serve(ws, channel_id, "read" if direction == "read" else "write")
        except ConnectionClosed:
            pass
        finally:
            self._live.discard(ws)

    async def _serve_worker(self, ws: ServerConnection) -> None:
        remote = ws.remote_address
        ip = str(remote[0]) if isinstance(remote, tuple) and remote else None
        if isinstance(ws, HotConnection):
            ws.enable_hot()
        conn = WorkerConnection(ws, str(uuid.uuid4()), SecretToken(uuid.uuid4()), ip_address=ip)
        await self.serve_worker(conn)
