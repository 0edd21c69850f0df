"""Issue 12 items 3, 10, 11 and 12 (client parts): the network between client and engine.

* 3: ``connect(token=...)`` (else ``III_TOKEN``) is sent as ``Authorization: Bearer`` on the
  worker socket and on the channel sockets the client opens.
* 10: a call that ended (timed out, cancelled) while the client was disconnected is never sent.
* 11: a black-holed connection is noticed within ``ping_interval + ping_timeout``.
* 12: what retrying cannot fix raises at once with its cause; a refused connection keeps
  retrying and says "is the engine running at URL?".

A loopback TCP proxy the test controls stands between client and engine where the network
must misbehave; the SIGSTOP case freezes a real engine process.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from client_helpers import ENGINE_TIMERS, unique_name

import iii_rx
from iii_rx import ConnectionState, IIIInvocationError, ReconnectConfig
from iii_rx.engine import Engine

connect_module = importlib.import_module("iii_rx.connect")  # ``iii_rx.connect`` is the function
NO_RECONNECT = ReconnectConfig(initial_delay_ms=60_000)
FAST = ReconnectConfig(initial_delay_ms=10, max_delay_ms=50, jitter_factor=0.0)


class Proxy:
    """A loopback TCP proxy in front of an engine port.

    ``blackhole()`` keeps every socket open but reads and forwards nothing any more (a cut
    cable: the sender's buffers fill, and flow control stops it); ``rate`` (bytes per second
    each way, 0: unlimited) makes a slow link; ``refuse()`` aborts the current connections
    and closes the listening socket (connections are refused); ``resume()`` listens again on
    the same port.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.blackholed = False
        self.rate = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Proxy:
        await self.resume()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.refuse()

    async def resume(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def blackhole(self) -> None:
        self.blackholed = True

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while not self.blackholed:
                data = await source.read(self.rate // 20 if self.rate else 65536)
                if not data or self.blackholed:
                    break
                sink.write(data)
                await sink.drain()
                if self.rate:  # the link, not a synchronisation: 1/20 s per chunk
                    await asyncio.sleep(0.05)
            if self.blackholed:  # nothing more is read, not even the end of the stream
                await asyncio.Event().wait()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(sink)
            sink.transport.abort()


async def _state(client: Any, wanted: ConnectionState) -> asyncio.Event:
    """An event set when ``client.state`` reaches ``wanted`` (from now on)."""
    reached = asyncio.Event()
    client.state.subscribe(lambda state: reached.set() if state is wanted else None)
    return reached


# ====================================================================== item 11


async def test_a_black_holed_connection_is_noticed_within_the_ping_bound(
        engine: Engine, name: str) -> None:
    async with Proxy(engine.port) as proxy, \
            iii_rx.connect(engine.url, name=unique_name("holder")) as holder, \
            iii_rx.connect(proxy.url, name=name, reconnect=NO_RECONNECT,
                           ping_interval=0.05, ping_timeout=0.1) as iii:
        held: list[Any] = []
        arrived = asyncio.Event()
        holder.function("bh::hold").subscribe(lambda inv: (held.append(inv), arrived.set()))
        await holder.wait_for_function("bh::hold", 5)
        call = asyncio.ensure_future(iii.trigger("bh::hold", timeout_ms=30_000))
        await asyncio.wait_for(arrived.wait(), 5)
        lost = await _state(iii, ConnectionState.RECONNECTING)
        start = time.monotonic()
        proxy.blackhole()
        await asyncio.wait_for(lost.wait(), 5)
        noticed = time.monotonic() - start
        assert noticed < 2.0, noticed  # bound: 0.05 + 2 * 0.1 s, plus a busy machine's delays
        with pytest.raises(IIIInvocationError) as info:
            await asyncio.wait_for(call, 1)
        assert info.value.code == "invocation_stopped"


async def test_a_frozen_engine_process_is_noticed_within_the_ping_bound(name: str) -> None:
    engine = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "iii_rx.engine", "--port", "0", "--rest-port", "0",
        "--log-level", "WARNING", stdout=subprocess.PIPE,
        env=dict(os.environ, OTEL_ENABLED="false"))
    try:
        assert engine.stdout is not None
        line = (await asyncio.wait_for(engine.stdout.readline(), 20)).decode()
        found = re.search(r"(ws://\S+)", line)
        assert found, line
        async with iii_rx.connect(found.group(1), name=name, reconnect=NO_RECONNECT,
                                  ping_interval=0.05, ping_timeout=0.1) as iii:
            lost = await _state(iii, ConnectionState.RECONNECTING)
            start = time.monotonic()
            engine.send_signal(signal.SIGSTOP)
            try:
                await asyncio.wait_for(lost.wait(), 5)
                assert time.monotonic() - start < 2.0
            finally:
                engine.send_signal(signal.SIGCONT)
    finally:
        engine.kill()
        await engine.wait()


async def test_a_slow_link_carrying_a_large_message_is_not_taken_for_dead(name: str) -> None:
    """A pong travels behind what was sent before it: on a slow link, behind a large message.
    Neither side's keepalive may take that for a dead peer (both used to: the client closed
    the connection, the engine dropped the worker, and a large enough message could never be
    delivered). Here each 400 KB crossing takes about 0.4 s, two pong timeouts (a link well
    above the slowest one assumed, so a loaded machine does not make it too slow)."""
    async with Engine(port=0, ping_interval_ms=100, ping_timeout_ms=200,
                      **ENGINE_TIMERS) as engine, Proxy(engine.port) as proxy:
        proxy.rate = 1_000_000
        async with iii_rx.connect(proxy.url, name=name, ping_interval=0.1, ping_timeout=0.2,
                                  reconnect=NO_RECONNECT) as iii:
            big = "x" * 400_000
            iii.register_function("slow::echo", lambda data: data)
            await iii.wait_for_function("slow::echo", timeout=10)
            # Up to the engine, down to the worker, its result up, then down to the caller.
            assert await iii.trigger("slow::echo", big, timeout_ms=60_000) == big
            assert iii._transport.connections == 1
            assert iii.connection_state is ConnectionState.CONNECTED


async def test_the_engine_keeps_an_official_sdk_worker_that_uploads_on_a_slow_link(
        name: str, official: Any) -> None:
    """The official SDK as the peer: its large call argument crosses a slow link for longer
    than the engine's pong timeout; the engine used to drop it mid-upload (the Rust engine
    does not)."""
    async with Engine(port=0, ping_interval_ms=100, ping_timeout_ms=200,
                      **ENGINE_TIMERS) as engine, Proxy(engine.port) as proxy, \
            iii_rx.connect(engine.url, name=name) as helper:
        helper.register_function("slow::size", lambda data: len(data["blob"]))
        proxy.rate = 1_000_000
        worker = await official(proxy.url, worker_name=f"{name}-official")
        await helper.wait_for_function("slow::size", timeout=10)
        blob = "x" * 400_000
        result = await asyncio.to_thread(worker.trigger, {
            "function_id": "slow::size", "payload": {"blob": blob}, "timeout_ms": 30_000})
        assert result == len(blob)
        assert f"{name}-official" in {w.name for w in engine.registry.workers.values()}


async def test_a_link_cut_during_an_upload_is_noticed(name: str) -> None:
    """A cut while the client uploads: the keepalive finds no life, but a closing handshake
    would first wait for room in a write buffer the cut never drains, so the connection used
    to stay up (and the calls wait) until the operating system gave up, many minutes on."""
    async with Engine(port=0, **ENGINE_TIMERS) as engine, Proxy(engine.port) as proxy:
        async with iii_rx.connect(proxy.url, name=name, ping_interval=0.1, ping_timeout=0.2,
                                  reconnect=NO_RECONNECT) as iii:
            iii.register_function("cut::sink", lambda data: None)
            await iii.wait_for_function("cut::sink", timeout=10)
            lost = asyncio.Event()
            iii.state.subscribe(lambda state: state is ConnectionState.RECONNECTING
                                and lost.set())
            proxy.blackhole()
            start = time.monotonic()
            for _ in range(3):  # far more than the socket buffers hold
                iii.trigger("cut::sink", "x" * 8_000_000,
                            action=iii_rx.TriggerAction.void()).subscribe()
            await asyncio.wait_for(lost.wait(), 10)
            # ping_interval + ping_timeout, plus the allowance for what was sent (3 timeouts)
            assert time.monotonic() - start < 0.1 + 0.2 * 4 + 1.0


async def test_a_writer_whose_end_never_arrived_does_not_close_cleanly(name: str) -> None:
    """The link died under a writer: its close cannot be confirmed, and the reader may never
    get the end (nor what was written last). ``close()`` used to return as if all went well."""
    async with Engine(port=0, **ENGINE_TIMERS) as engine, Proxy(engine.port) as proxy:
        async with iii_rx.connect(proxy.url, name=name, reconnect=NO_RECONNECT) as iii:
            channel = await iii.create_channel_async()
            await channel.writer.write(b"first")
            await proxy.refuse()  # every connection through the proxy is cut
            with pytest.raises(iii_rx.ChannelClosedError, match="without a close frame"):
                await channel.writer.close()


async def test_default_keepalive_is_a_few_seconds(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        transport = iii._transport
        assert (transport._ping_interval, transport._ping_timeout) == (
            connect_module.DEFAULT_PING_INTERVAL, connect_module.DEFAULT_PING_TIMEOUT)
        assert transport._ping_interval + transport._ping_timeout <= 3.5


# ====================================================================== item 3


async def test_the_token_goes_on_the_worker_and_the_channel_sockets(name: str) -> None:
    async with Engine(port=0, token="s3cret", **ENGINE_TIMERS) as engine, \
            iii_rx.connect(engine.url, name=name, token="s3cret") as worker, \
            iii_rx.connect(engine.url, name=unique_name("caller"), token="s3cret") as caller:
        assert caller.headers["Authorization"] == "Bearer s3cret"

        async def produce(data: dict[str, Any]) -> str:
            async with data["out"] as out:  # a channel end the worker opens
                await out.write(b"through the channel")
            return "written"

        worker.register_function("tok::produce", produce)
        await caller.wait_for_function("tok::produce", 5)
        channel = await caller.create_channel_async()  # an end the caller opens
        call = asyncio.ensure_future(caller.trigger("tok::produce", {"out": channel.writer_ref}))
        assert await asyncio.wait_for(channel.reader.read_all(), 5) == b"through the channel"
        assert await call == "written"  # the engine refuses a socket without the token (401)


def test_token_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve = connect_module.resolve_headers
    with pytest.raises(ValueError, match="token"):
        resolve({"authorization": "Bearer a"}, "b")
    assert resolve(None, "t") == {"Authorization": "Bearer t"}
    monkeypatch.setenv("III_TOKEN", "from-env")
    assert resolve(None, None) == {"Authorization": "Bearer from-env"}
    assert resolve(None, "explicit") == {"Authorization": "Bearer explicit"}
    assert resolve(None, "") == {}  # an explicit empty token sends none
    assert resolve({"Authorization": "Basic x"}, None) == {"Authorization": "Basic x"}


# ====================================================================== item 10


async def test_calls_that_ended_while_disconnected_are_never_sent(engine: Engine,
                                                                  name: str) -> None:
    async with Proxy(engine.port) as proxy, \
            iii_rx.connect(engine.url, name=unique_name("target")) as target, \
            iii_rx.connect(proxy.url, name=name, reconnect=FAST) as iii:
        arrived: list[Any] = []
        target.invocations.subscribe(lambda inv: arrived.append(inv.data))
        target.register_function("tm::run", lambda data: data)
        await target.wait_for_function("tm::run", 5)
        assert await iii.trigger("tm::run", "before") == "before"

        lost = await _state(iii, ConnectionState.RECONNECTING)
        await proxy.refuse()  # connections cut, new ones refused: the client retries
        await asyncio.wait_for(lost.wait(), 5)
        timed_out = [iii.trigger("tm::run", f"late {n}", timeout_ms=50) for n in range(50)]
        results = await asyncio.gather(*timed_out, return_exceptions=True)
        assert all(isinstance(r, iii_rx.IIITimeoutError) for r in results), results
        cancelled = [asyncio.ensure_future(iii.trigger("tm::run", f"cancelled {n}"))
                     for n in range(5)]
        await asyncio.sleep(0)  # one loop turn: the tasks start, their frames are queued
        assert iii.pending_calls == 5
        for task in cancelled:
            task.cancel()
        await asyncio.gather(*cancelled, return_exceptions=True)
        queued = asyncio.ensure_future(iii.trigger("tm::run", "queued"))  # still wanted

        back = await _state(iii, ConnectionState.CONNECTED)
        await proxy.resume()
        await asyncio.wait_for(back.wait(), 5)
        assert await asyncio.wait_for(queued, 5) == "queued"
        assert await iii.trigger("tm::run", "after") == "after"
        # One socket, frames in order: anything sent on reconnect arrived before "after".
        assert arrived == ["before", "queued", "after"]


async def test_a_call_that_timed_out_frees_its_place_in_the_queue(engine: Engine,
                                                                  name: str) -> None:
    async with Proxy(engine.port) as proxy, \
            iii_rx.connect(proxy.url, name=name,
                           reconnect=ReconnectConfig(initial_delay_ms=10, max_delay_ms=50,
                                                     max_queued=2)) as iii:
        lost = await _state(iii, ConnectionState.RECONNECTING)
        await proxy.refuse()
        await asyncio.wait_for(lost.wait(), 5)
        for _ in range(3):  # three rounds of two: each round's timeouts make room
            results = await asyncio.gather(
                *(iii.trigger("tm::nobody", timeout_ms=30) for _ in range(2)),
                return_exceptions=True)
            assert all(isinstance(r, iii_rx.IIITimeoutError) for r in results), results


# ====================================================================== item 12


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1:49134", "ws://127.0.0.1:49134"),
    ("https://engine.example:443/", "wss://engine.example:443/"),
    ("127.0.0.1:49134", "no scheme"),
    ("ws://127.0.0.1:99999", "out of range"),
    ("ws:///", "hostname"),
])
def test_malformed_urls_fail_at_once(url: str, says: str) -> None:
    start = time.monotonic()
    with pytest.raises(ValueError, match=re.escape(says)):
        iii_rx.connect(url, connect_timeout=30)
    with pytest.raises(ValueError, match=re.escape(says)):
        iii_rx.connect_sync(url, connect_timeout=30)
    assert time.monotonic() - start < 1


async def test_a_malformed_iii_url_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("III_URL", "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="HTTP URL"):
        await asyncio.wait_for(iii_rx.connect(connect_timeout=30), 1)


async def test_handshakes_that_cannot_succeed_fail_at_once(name: str) -> None:
    async with Engine(port=0, token="s3cret", **ENGINE_TIMERS) as engine:
        cases = [
            (f"{engine.url}/nope", "s3cret", "HTTP 404"),                  # a wrong path
            (f"ws://127.0.0.1:{engine.rest_port}", "s3cret", "HTTP 404"),  # the REST port
            (engine.url, None, "HTTP 401"),                                 # no token
            (engine.url, "wrong", "token"),                                 # a wrong token
        ]
        for url, token, says in cases:
            start = time.monotonic()
            with pytest.raises(iii_rx.IIIConnectionError) as info:
                await iii_rx.connect(url, name=name, token=token, connect_timeout=30,
                                     reconnect=FAST)
            assert time.monotonic() - start < 2, (url, info.value)
            assert says in str(info.value) and url in str(info.value), str(info.value)


async def test_a_refused_connection_keeps_retrying_and_says_why(
        name: str, caplog: pytest.LogCaptureFixture) -> None:
    url = f"ws://127.0.0.1:{_free_port()}"
    caplog.set_level("INFO", logger="iii_rx.transport")
    with pytest.raises(iii_rx.IIIConnectionError) as info:
        await iii_rx.connect(url, name=name, connect_timeout=0.3, reconnect=FAST)
    assert f"is the engine running at {url}?" in str(info.value)
    attempts = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(attempts) >= 3  # it kept retrying until connect_timeout
    assert attempts[0].levelname == "WARNING"  # the first says so where it is seen
    assert {r.levelname for r in attempts[1:]} == {"INFO"}  # repeats do not flood


async def test_a_refused_connection_succeeds_once_the_engine_starts(name: str) -> None:
    port = _free_port()
    refused = asyncio.Event()

    class Refusals(logging.Handler):  # the transport logs on the loop: set the event there
        def emit(self, record: logging.LogRecord) -> None:
            if "refused" in record.getMessage():
                refused.set()

    handler = Refusals(logging.INFO)
    transport_log = logging.getLogger("iii_rx.transport")
    level = transport_log.level
    transport_log.setLevel(logging.INFO)
    transport_log.addHandler(handler)
    try:
        connecting = asyncio.ensure_future(iii_rx.connect(
            f"ws://127.0.0.1:{port}", name=name, connect_timeout=10, reconnect=FAST))
        await asyncio.wait_for(refused.wait(), 5)
        assert not connecting.done()
        async with Engine(port=port, **ENGINE_TIMERS):
            iii = await asyncio.wait_for(connecting, 5)
            await iii.close()
    finally:
        transport_log.removeHandler(handler)
        transport_log.setLevel(level)


async def test_a_dropped_waiting_invocation_ends_its_channel_ends_at_once(
        engine: Engine, name: str) -> None:
    """An invocation waiting for a slot when the link drops does not run after the reconnect;
    its channel ends were kept for the client's close, so a caller's reader waited until the
    worker process closed. The writer is now aborted at once: the reader raises."""
    async with Proxy(engine.port) as proxy, \
            iii_rx.connect(proxy.url, name=name, reconnect=FAST) as worker, \
            iii_rx.connect(engine.url, name=unique_name("caller")) as caller:
        release = asyncio.Event()

        async def produce(data: Any) -> str:
            if data == "block":
                await release.wait()
                return "blocked"
            async with data["out"] as out:
                await out.write(b"hello")
            return "written"

        worker.register_function("sc::produce", produce, max_concurrency=1)
        both_in = asyncio.Event()
        arrived: list[Any] = []
        worker.invocations.subscribe(
            lambda invocation: (arrived.append(invocation), len(arrived) == 2 and both_in.set()))
        await caller.wait_for_function("sc::produce", 5)
        first = asyncio.ensure_future(caller.trigger("sc::produce", "block"))
        channel = await caller.create_channel_async()
        second = asyncio.ensure_future(caller.trigger("sc::produce",
                                                      {"out": channel.writer_ref}))
        await asyncio.wait_for(both_in.wait(), 5)
        back = await _state(worker, ConnectionState.CONNECTED)
        await proxy.refuse()
        for call in (first, second):
            with pytest.raises(IIIInvocationError):
                await asyncio.wait_for(call, 5)
        await proxy.resume()
        await asyncio.wait_for(back.wait(), 5)
        release.set()
        with pytest.raises(iii_rx.ChannelClosedError) as ended:
            await asyncio.wait_for(channel.reader.read_all(), 5)
        assert "connection to the engine was lost" in str(ended.value)
