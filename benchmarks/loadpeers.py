"""Peers of the load and soak benchmarks (``engine_load.py``, ``engine_soak.py``).

Each role is a process of its own that prints ``{"ready": true, ...}`` when ready and then
takes one JSON command a line on stdin (the answer is one JSON line), until stdin closes:

- ``engine``: an iii_rx engine with ``--options`` (JSON keywords of ``Engine``); the ``stats``
  command answers with its own accounting (workers, functions, calls in flight, bytes queued
  toward workers, channels, peers dropped) and its RSS.
- ``workers``: ``--count`` raw-frame worker connections in one process, each registering
  ``--functions`` functions ``{prefix}{i}::f{j}`` and echoing every call.
- ``caller``: ``{"calls": N, "window": W}`` makes N sync calls of random functions of the
  ``workers`` layout with W in flight; answers with throughput and p50/p99.
- ``paced``: ``{"rate": R, "duration": D, "interval": I}`` calls at a steady R calls/s (open
  loop) and prints one line every I seconds (rate, p50/p99 of that interval, RSS), then a
  final line.
- ``stuck``: the misbehaving readers of the soak (a worker that does not read its calls, fed by
  a caller; a caller that does not read its results; a channel writer with no reader), each
  reconnecting once the engine drops it; ``stats`` answers with their counters.
- ``loris``: slow-loris sockets: half dribble an opening handshake a byte at a time, half
  dribble a websocket frame after a complete handshake and never answer pings.

Peers speak plain ``websockets`` + ``json`` (see ``rawpeers.py``); loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rawpeers import WS_OPTIONS, _echo_loop, emit, percentile, read_commands, worker_metadata
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

LOOPBACK = "127.0.0.1"


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process in MB (``/proc``; NaN where it is missing)."""
    try:
        with open(f"/proc/{pid or os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def function_ids(prefix: str, workers: int, functions: int) -> list[str]:
    return [f"{prefix}{i}::f{j}" for i in range(workers) for j in range(functions)]


async def open_worker(url: str, name: str, *, rcvbuf: int | None = None) -> ClientConnection:
    """A connected worker socket that has sent ``engine::workers::register`` (answered)."""
    sock = None
    if rcvbuf is not None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        host, port = url.removeprefix("ws://").split(":")
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    ws = await connect(url, proxy=None, ping_interval=None, sock=sock, **WS_OPTIONS)
    await ws.recv()  # workerregistered
    return ws


async def register(ws: ClientConnection, name: str, functions: list[str], *,
                   void: bool = False) -> None:
    """Register ``functions``, then ``engine::workers::register``: waits for its answer, or
    sends it void (the Rust engine 0.23 does not answer it)."""
    for function_id in functions:
        await ws.send(json.dumps({"type": "registerfunction", "id": function_id}))
    if void:
        await ws.send(json.dumps({"type": "invokefunction", "function_id":
                                  "engine::workers::register", "data": worker_metadata(name),
                                  "action": {"type": "void"}}))
        return
    await ws.send(json.dumps({"type": "invokefunction", "function_id":
                              "engine::workers::register", "data": worker_metadata(name),
                              "invocation_id": "register"}))
    async for message in ws:
        if json.loads(message).get("invocation_id") == "register":
            return


# --------------------------------------------------------------------------- engine


class _Drops(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("dropping worker"):
            self.count += 1


async def run_engine(options: dict[str, Any]) -> None:
    from iii_rx.engine import Engine

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    drops = _Drops()
    logging.getLogger("iii_rx.engine").addHandler(drops)
    async with Engine(LOOPBACK, 0, **options) as engine:
        emit({"ready": True, "role": "engine", "port": engine.port, "pid": os.getpid()})
        peak, lag = [0], [0.0]
        loop = asyncio.get_running_loop()

        async def watch() -> None:
            """The largest queue any peer had, dropped ones included, and the loop's lag (how
            late a 50 ms sleep wakes up: time the loop spent on other work), every 50 ms."""
            while True:
                began = loop.time()
                await asyncio.sleep(0.05)
                lag[0] = max(lag[0], loop.time() - began - 0.05)
                for conn in engine.registry.workers.values():
                    peak[0] = max(peak[0], conn.peak_queued_bytes)

        async def answer(command: dict[str, Any]) -> None:
            conns = list(engine.registry.workers.values())
            emit({"rss_mb": rss_mb(), "workers": len(conns),
                  "functions": len(engine.registry.functions),
                  "pending": engine.router.pending_count(),
                  "queued_bytes": sum(c.queued_bytes for c in conns),
                  "peak_queued_bytes": peak[0],
                  "channels": len(engine.hub), "dropped": drops.count,
                  "max_lag_ms": lag[0] * 1000})
            lag[0] = 0.0

        watcher = asyncio.ensure_future(watch())
        await read_commands(answer)
        watcher.cancel()


# --------------------------------------------------------------------------- workers


async def run_workers(url: str, count: int, functions: int, prefix: str, first: int,
                      void: bool = False) -> None:
    sockets: list[ClientConnection] = []

    async def one(index: int) -> None:
        ws = await open_worker(url, f"{prefix}{index}")
        await register(ws, f"{prefix}{index}",
                       [f"{prefix}{index}::f{j}" for j in range(functions)], void=void)
        sockets.append(ws)

    began = time.perf_counter()
    await asyncio.gather(*(one(first + i) for i in range(count)))
    emit({"ready": True, "role": "workers", "count": count,
          "seconds": time.perf_counter() - began})
    loops = [asyncio.ensure_future(_echo_loop(ws)) for ws in sockets]
    await read_commands(_stats_of_self)
    for task in loops:
        task.cancel()
    for ws in sockets:
        with contextlib.suppress(Exception):
            await ws.close()


async def _stats_of_self(_command: dict[str, Any]) -> None:
    emit({"rss_mb": rss_mb()})


# --------------------------------------------------------------------------- callers


class Calls:
    """Sync calls over one connection, of random functions, with their latencies."""

    def __init__(self, ws: ClientConnection, functions: list[str], payload: Any) -> None:
        self.ws = ws
        tail = ',"data":' + json.dumps(payload) + "}"
        self.frames = ['{"type":"invokefunction","function_id":' + json.dumps(f)
                       + ',"invocation_id":"' for f in functions]
        self.tail = tail
        # UUID-shaped ids (the Rust engine drops a call whose id is not a UUID).
        self.prefix = uuid.uuid4().hex[:8] + "-0000-4000-8000-"
        self.counter = 0
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.errors = 0
        self.idle = asyncio.Event()
        """Set while no call is in flight."""
        self.idle.set()

    async def send_one(self) -> None:
        self.counter += 1
        invocation_id = f"{self.prefix}{self.counter:012x}"
        head = random.choice(self.frames)
        self.sent_at[invocation_id] = time.perf_counter()
        self.idle.clear()
        await self.ws.send(head + invocation_id + '"' + self.tail)

    async def receive(self, on_answer: Any = None) -> None:
        loads, perf = json.loads, time.perf_counter
        async for message in self.ws:
            frame = loads(message)
            began = self.sent_at.pop(frame.get("invocation_id"), None)
            if began is None:
                continue
            self.latencies.append(perf() - began)
            if not self.sent_at:
                self.idle.set()
            if frame.get("error"):
                self.errors += 1
            if on_answer is not None:
                await on_answer()


async def run_caller(url: str, prefix: str, workers: int, functions: int,
                     void: bool = False) -> None:
    ws = await open_worker(url, f"load-caller-{uuid.uuid4().hex[:6]}")
    await register(ws, f"load-caller-{uuid.uuid4().hex[:6]}", [], void=void)
    emit({"ready": True, "role": "caller"})
    calls = Calls(ws, function_ids(prefix, workers, functions), {"n": 1, "text": "x" * 40})

    async def run(command: dict[str, Any]) -> None:
        total, window = int(command["calls"]), int(command["window"])
        calls.latencies.clear()
        calls.errors = 0
        sent = 0

        async def next_call() -> None:
            nonlocal sent
            if sent < total:
                sent += 1
                await calls.send_one()
            elif not calls.sent_at:
                raise _Finished

        began = time.perf_counter()
        for _ in range(min(window, total)):
            sent += 1
            await calls.send_one()
        with contextlib.suppress(_Finished):
            await calls.receive(next_call)
        seconds = time.perf_counter() - began
        ordered = sorted(calls.latencies)
        emit({"calls": len(ordered), "errors": calls.errors, "lost": total - len(ordered),
              "seconds": seconds, "rate": len(ordered) / seconds,
              "p50_ms": percentile(ordered, 0.5) * 1000,
              "p99_ms": percentile(ordered, 0.99) * 1000, "rss_mb": rss_mb()})

    await read_commands(run)


class Histogram:
    """Latencies in fixed buckets (0.1 ms up to 1 s, then 10 ms up to 60 s): a soak's whole
    run in constant memory, so that the caller's own RSS stays flat."""

    def __init__(self) -> None:
        self.fine = [0] * 10_000
        self.coarse = [0] * 6_000
        self.count = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        if seconds < 1.0:
            self.fine[int(seconds * 10_000)] += 1
        else:
            self.coarse[min(5_999, int(seconds * 100))] += 1

    def percentile_ms(self, q: float) -> float:
        if not self.count:
            return float("nan")
        rank = max(1, round(q * self.count))
        for width, buckets in ((0.1, self.fine), (10.0, self.coarse)):
            for index, n in enumerate(buckets):
                rank -= n
                if rank <= 0:
                    return (index + 1) * width
        return float("inf")


class _Finished(Exception):
    """Every call of a run was answered."""


async def run_paced(url: str, prefix: str, workers: int, functions: int) -> None:
    ws = await open_worker(url, f"soak-caller-{uuid.uuid4().hex[:6]}")
    await register(ws, f"soak-caller-{uuid.uuid4().hex[:6]}", [])
    emit({"ready": True, "role": "paced"})
    calls = Calls(ws, function_ids(prefix, workers, functions), {"n": 1, "text": "x" * 200})
    receiver = asyncio.ensure_future(calls.receive())

    async def run(command: dict[str, Any]) -> None:
        rate, duration = float(command["rate"]), float(command["duration"])
        interval = float(command["interval"])
        loop = asyncio.get_running_loop()
        start = loop.time()
        due, sent, skipped = start, 0, 0
        next_report = start + interval
        whole = Histogram()
        while due < start + duration:
            now = loop.time()
            if now < due:
                await asyncio.sleep(due - now)
            if len(calls.sent_at) < 1000:
                await calls.send_one()
                sent += 1
            else:
                skipped += 1  # the engine fell behind by over 1,000 calls: never unbounded
            due += 1 / rate
            if loop.time() >= next_report:
                ordered = sorted(calls.latencies)
                for latency in ordered:
                    whole.add(latency)
                emit({"t": round(loop.time() - start, 1), "calls": len(ordered),
                      "errors": calls.errors, "skipped": skipped,
                      "in_flight": len(calls.sent_at),
                      "p50_ms": percentile(ordered, 0.5) * 1000,
                      "p99_ms": percentile(ordered, 0.99) * 1000, "rss_mb": rss_mb()})
                calls.latencies.clear()
                calls.errors = 0
                next_report += interval
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(calls.idle.wait(), 10)
        for latency in calls.latencies:
            whole.add(latency)
        calls.latencies.clear()
        emit({"final": True, "sent": sent, "answered": whole.count,
              "lost": len(calls.sent_at), "skipped": skipped,
              "p50_ms": whole.percentile_ms(0.5), "p99_ms": whole.percentile_ms(0.99),
              "rss_mb": rss_mb()})

    await read_commands(run)
    receiver.cancel()


# --------------------------------------------------------------------------- stuck readers


class Stuck:
    """A worker and a caller that stop reading, and a channel writer with no reader."""

    def __init__(self, url: str, target: str) -> None:
        self.url = url
        self.target = target  # a normal worker's function, called by the deaf caller
        self.counts: dict[str, int] = {"worker_incarnations": 0, "caller_incarnations": 0,
                                       "fed": 0, "channel_frames": 0}
        self.stuck_gone = asyncio.Event()

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    async def deaf_worker(self) -> None:
        """Registers ``soak::stuck``, stops reading; a new one once the engine dropped it."""
        while True:
            ws = await open_worker(self.url, "soak-stuck", rcvbuf=4096)
            await register(ws, f"soak-stuck-{uuid.uuid4().hex[:6]}", ["soak::stuck"])
            self.count("worker_incarnations")
            ws.transport.pause_reading()
            self.stuck_gone.clear()
            await self.stuck_gone.wait()  # the feeder saw its calls stopped: it was dropped
            ws.transport.abort()

    async def feeder(self) -> None:
        """Calls ``soak::stuck`` 50 times a second with 16 KiB and counts the answers."""
        ws = await open_worker(self.url, "soak-feeder")
        await register(ws, f"soak-feeder-{uuid.uuid4().hex[:6]}", [])
        blob = json.dumps({"blob": "x" * 16 * 1024})

        async def answers() -> None:
            async for message in ws:
                frame = json.loads(message)
                error = frame.get("error")
                code = error.get("code") if isinstance(error, dict) else "ok"
                self.count(f"stuck_{code}")
                if code in ("invocation_stopped", "function_not_found"):
                    self.stuck_gone.set()

        reader = asyncio.ensure_future(answers())
        try:
            while True:
                await ws.send('{"type":"invokefunction","function_id":"soak::stuck",'
                              f'"invocation_id":"{uuid.uuid4()}","data":{blob}}}')
                self.counts["fed"] += 1
                await asyncio.sleep(0.02)
        finally:
            reader.cancel()

    async def deaf_caller(self) -> None:
        """Calls an echo function 50 times a second with 16 KiB, never reading results."""
        blob = json.dumps({"blob": "x" * 16 * 1024})
        while True:
            ws = await open_worker(self.url, "soak-deaf-caller", rcvbuf=4096)
            await register(ws, f"soak-deaf-{uuid.uuid4().hex[:6]}", [])
            self.count("caller_incarnations")
            ws.transport.pause_reading()
            with contextlib.suppress(ConnectionClosed, OSError):
                while True:
                    await ws.send('{"type":"invokefunction","function_id":'
                                  f'{json.dumps(self.target)},'
                                  f'"invocation_id":"{uuid.uuid4()}","data":{blob}}}')
                    await asyncio.sleep(0.02)
                    if ws.transport.is_closing():
                        break
            ws.transport.abort()

    async def channel_writer(self) -> None:
        """Writes 64 KiB frames into a channel nobody reads; a new one if the engine ends it."""
        ws = await open_worker(self.url, "soak-channel")
        await register(ws, f"soak-channel-{uuid.uuid4().hex[:6]}", [])
        answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def read() -> None:
            async for message in ws:
                answers.put_nowait(json.loads(message))

        reader = asyncio.ensure_future(read())
        chunk = os.urandom(64 * 1024)
        try:
            while True:
                await ws.send(json.dumps({"type": "invokefunction", "function_id":
                                          "engine::channels::create",
                                          "data": {"buffer_size": 1024},
                                          "invocation_id": "channel"}))
                ref = (await answers.get())["result"]["writer"]
                writer = await connect(
                    f"{self.url}/ws/channels/{ref['channel_id']}?key={ref['access_key']}"
                    "&dir=write", proxy=None, ping_interval=None, write_limit=64 * 1024,
                    **WS_OPTIONS)
                self.count("channel_incarnations")
                with contextlib.suppress(ConnectionClosed):
                    while True:  # blocks once the pipe and the socket buffers are full
                        await writer.send(chunk)
                        self.counts["channel_frames"] += 1
        finally:
            reader.cancel()


async def run_stuck(url: str, target: str) -> None:
    stuck = Stuck(url, target)
    tasks = [asyncio.ensure_future(coro) for coro in (
        stuck.deaf_worker(), stuck.feeder(), stuck.deaf_caller(), stuck.channel_writer())]
    emit({"ready": True, "role": "stuck"})

    async def answer(_command: dict[str, Any]) -> None:
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        emit({**stuck.counts, "rss_mb": rss_mb()})

    await read_commands(answer)
    for task in tasks:
        task.cancel()


# --------------------------------------------------------------------------- slow loris


async def run_loris(url: str, sockets: int, byte_every: float) -> None:
    host, port = url.removeprefix("ws://").split(":")
    counts = {"handshake_closed": 0, "frame_closed": 0, "open": 0}
    request = (f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
               f"{base64.b64encode(os.urandom(16)).decode()}\r\n\r\n").encode()
    frame = bytes([0x81, 0x80 | 100]) + os.urandom(4) + os.urandom(100)  # masked, 100 B text

    async def dribble(writer: asyncio.StreamWriter, data: bytes) -> None:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(byte_every)

    async def one(kind: str) -> None:
        await asyncio.sleep(random.uniform(0, 10))  # staggered, not one burst every 10 s
        while True:
            reader, writer = await asyncio.open_connection(host, int(port))
            counts["open"] += 1
            try:
                if kind == "frame":
                    writer.write(request)
                    await writer.drain()
                    await reader.readuntil(b"\r\n\r\n")  # 101; then pings go unanswered
                    while True:
                        await dribble(writer, frame)
                else:
                    closed = asyncio.ensure_future(_until_eof(reader))
                    sending = asyncio.ensure_future(dribble(writer, request))
                    await asyncio.wait({sending, closed}, return_when=asyncio.FIRST_COMPLETED)
                    sending.cancel()
                    closed.cancel()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the engine closed it: a write failed
            finally:
                counts["open"] -= 1
                counts[f"{kind}_closed"] += 1
                writer.transport.abort()

    tasks = [asyncio.ensure_future(one("handshake" if i % 2 else "frame"))
             for i in range(sockets)]
    emit({"ready": True, "role": "loris"})
    await read_commands(lambda _c: _emit_async({**counts, "rss_mb": rss_mb()}))
    for task in tasks:
        task.cancel()


async def _emit_async(obj: dict[str, Any]) -> None:
    emit(obj)


async def _until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(4096):
        pass


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    roles = parser.add_subparsers(dest="role", required=True)
    p = roles.add_parser("engine")
    p.add_argument("--options", default="{}", help="JSON keywords of Engine")
    for role in ("workers", "caller", "paced"):
        p = roles.add_parser(role)
        p.add_argument("--url", required=True)
        p.add_argument("--prefix", default="load::w")
        p.add_argument("--count", type=int, default=25, help="workers: connections")
        p.add_argument("--first", type=int, default=0, help="workers: index of the first")
        p.add_argument("--workers", type=int, default=100, help="callers: workers in total")
        p.add_argument("--functions", type=int, default=100, help="functions per worker")
        p.add_argument("--void-register", action="store_true",
                       help="send engine::workers::register void (for the Rust engine)")
    p = roles.add_parser("stuck")
    p.add_argument("--url", required=True)
    p.add_argument("--target", required=True, help="an echo function for the deaf caller")
    p = roles.add_parser("loris")
    p.add_argument("--url", required=True)
    p.add_argument("--sockets", type=int, default=40)
    p.add_argument("--byte-every", type=float, default=1.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        if args.role == "engine":
            asyncio.run(run_engine(json.loads(args.options)))
        elif args.role == "workers":
            asyncio.run(run_workers(args.url, args.count, args.functions, args.prefix,
                                    args.first, args.void_register))
        elif args.role == "caller":
            asyncio.run(run_caller(args.url, args.prefix, args.workers, args.functions,
                                   args.void_register))
        elif args.role == "paced":
            asyncio.run(run_paced(args.url, args.prefix, args.workers, args.functions))
        elif args.role == "stuck":
            asyncio.run(run_stuck(args.url, args.target))
        else:
            asyncio.run(run_loris(args.url, args.sockets, args.byte_every))


if __name__ == "__main__":
    main()
