"""Benchmark peers that are never the bottleneck: raw-frame worker, caller and relay.

A benchmark measures one component at a time, so the peers around it must be as lean as the
protocol allows (see benchmarks/README.md). Everything here speaks the iii frames with plain
`websockets` + `json` and nothing else:

- ``worker``: registers functions, sends ``engine::workers::register`` (the engine buffers
  registrations until then) and answers each ``invokefunction`` with an ``invocationresult``
  echoing ``data`` (extra keys such as ``_caller_worker_id`` are echoed too).
- ``caller``: sync calls with a window of N calls in flight (N=1 is sequential); reports
  throughput and p50/p99 latency as one JSON line per measurement.
- ``relay``: the ceiling for an engine. It parses each frame's JSON only to route
  ``invokefunction`` to the worker that registered the function and ``invocationresult`` back
  to the caller, forwarding the original text; it greets with ``workerregistered`` so official
  SDKs connect to it too.
- ``sdk-worker`` / ``sdk-caller``: the same roles played by the official ``iii-sdk``, for
  context figures.

Each role runs as its own process so that peers and engine use separate cores::

    python benchmarks/rawpeers.py relay --port 49200
    python benchmarks/rawpeers.py worker --url ws://127.0.0.1:49200 --function bench::echo
    python benchmarks/rawpeers.py caller --url ws://127.0.0.1:49200 --function bench::echo \\
        --window 64 --duration 2

Every peer prints ``{"ready": true, ...}`` on stdout when it is ready. Callers started with
``--control`` then run one measurement per JSON command read from stdin (``{"window": 64,
"duration": 1.0, "warmup": 0.2}``), printing one JSON line each, and exit at end of input;
otherwise they run ``--rounds`` measurements and exit. Workers run until the connection closes
or they are terminated, or with ``--control`` until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

# Loopback peers: no compression (the Rust engine does not negotiate it), no proxy, and frames
# up to 64 MiB like the SDKs.
WS_OPTIONS: dict[str, Any] = {"compression": None, "max_size": 64 * 1024 * 1024}


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON line on stdout for the process that drives this peer."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def make_payload(size: int) -> Any:
    """A JSON object of roughly `size` bytes once encoded."""
    return {"seq": 1, "text": "x" * max(0, size - 22)}


def percentile(sorted_values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize(
    window: int, latencies: list[float], seconds: float, errors: int, lost: int = 0
) -> dict[str, Any]:
    """One measurement as the JSON line that callers print (`lost`: calls never answered)."""
    ordered = sorted(latencies)
    return {
        "window": window,
        "calls": len(latencies),
        "errors": errors,
        "lost": lost,
        "seconds": round(seconds, 4),
        "rate": len(latencies) / seconds if seconds > 0 else 0.0,
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
    }


def worker_metadata(name: str) -> dict[str, Any]:
    """The `engine::workers::register` payload, shaped like the official SDKs send it."""
    return {
        "runtime": "python",
        "version": "rawpeers",
        "name": name,
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "pid": os.getpid(),
        "isolation": None,
        "namespace": None,
        "telemetry": {"language": "en", "project_name": "bench", "framework": "raw-frames"},
    }


async def read_commands(run: Callable[[dict[str, Any]], Any]) -> None:
    """Run `await run(command)` for each JSON line on stdin until end of input."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        if line.strip():
            await run(json.loads(line))


# --------------------------------------------------------------------------- raw worker


async def run_worker(url: str, functions: list[str], name: str, control: bool) -> None:
    """Register `functions` and echo every invocation until the connection closes (or, with
    `control`, until stdin closes)."""
    async with connect(url, proxy=None, **WS_OPTIONS) as ws:
        for function_id in functions:
            await ws.send(json.dumps({"type": "registerfunction", "id": function_id}))
        register = {
            "type": "invokefunction",
            "function_id": "engine::workers::register",
            "data": worker_metadata(name),
            "action": {"type": "void"},
        }
        await ws.send(json.dumps(register))
        emit({"ready": True, "role": "worker", "functions": functions})
        tasks = {asyncio.create_task(_echo_loop(ws))}
        if control:
            tasks.add(asyncio.create_task(read_commands(_ignore)))
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            task.result()


async def _ignore(_command: dict[str, Any]) -> None:
    return None


async def _echo_loop(ws: ClientConnection) -> None:
    loads, dumps, send = json.loads, json.dumps, ws.send
    try:
        async for message in ws:
            frame = loads(message)
            kind = frame.get("type")
            if kind == "invokefunction":
                invocation_id = frame.get("invocation_id")
                if invocation_id is None:  # void call: run, never answer
                    continue
                await send(
                    dumps(
                        {
                            "type": "invocationresult",
                            "invocation_id": invocation_id,
                            "function_id": frame["function_id"],
                            "result": frame.get("data"),
                        }
                    )
                )
            elif kind == "ping":
                await send('{"type":"pong"}')
    except ConnectionClosed:
        return


# --------------------------------------------------------------------------- raw caller


class RawCaller:
    """Sync calls over one connection, `window` of them in flight at any time."""

    def __init__(self, ws: ClientConnection, function_id: str, payload: Any) -> None:
        self.ws = ws
        # Frames are built by concatenation: the caller must cost less than what it measures.
        self._head = '{"type":"invokefunction","function_id":' + json.dumps(function_id)
        self._tail = ',"data":' + json.dumps(payload) + "}"
        self._prefix = uuid.uuid4().hex[:8] + "-0000-4000-8000-"
        self._counter = 0

    def _frame(self) -> tuple[str, str]:
        self._counter += 1
        invocation_id = f"{self._prefix}{self._counter:012x}"
        return invocation_id, self._head + ',"invocation_id":"' + invocation_id + '"' + self._tail

    async def wait_until_served(self, timeout: float = 30.0) -> None:
        """Call until the function answers without error (the worker may still be registering)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            invocation_id, text = self._frame()
            await self.ws.send(text)
            while True:
                frame = json.loads(await self.ws.recv())
                if frame.get("type") == "invocationresult" and (
                    frame.get("invocation_id") == invocation_id
                ):
                    break
            if not frame.get("error"):
                return
            last = frame["error"]
            await asyncio.sleep(0.05)  # no event tells a caller that a function appeared
        raise TimeoutError(f"function never answered: {last}")

    async def measure(self, window: int, duration: float) -> dict[str, Any]:
        """Keep `window` calls in flight for `duration` seconds; latencies of every call.

        A result that never comes back (an engine may lose one) must not hang the run, and a
        timer per call would cost more than the calls: a watchdog ends the run when no result
        arrived for `STALL` seconds and reports the calls still out as `lost`.
        """
        run = _Run(time.perf_counter())
        task = asyncio.ensure_future(self._measure(run, window, duration))
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if not task.done() and time.perf_counter() - run.progress > STALL:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not task.cancelled():
            task.result()
        return summarize(window, run.latencies, run.end - run.start, run.errors, len(run.sent_at))

    async def _measure(self, run: _Run, window: int, duration: float) -> None:
        loads, perf, send, recv = json.loads, time.perf_counter, self.ws.send, self.ws.recv
        sent_at, latencies = run.sent_at, run.latencies
        deadline = run.start + duration
        for _ in range(window):
            invocation_id, text = self._frame()
            sent_at[invocation_id] = perf()
            await send(text)
        while sent_at:
            frame = loads(await recv())
            if frame.get("type") != "invocationresult":
                continue
            began = sent_at.pop(frame.get("invocation_id"), None)
            if began is None:
                continue
            run.end = run.progress = now = perf()
            latencies.append(now - began)
            if frame.get("error"):
                run.errors += 1
            if now < deadline:
                invocation_id, text = self._frame()
                sent_at[invocation_id] = perf()
                await send(text)


STALL = 3.0  # seconds without any result before a measurement gives up on the calls still out


class _Run:
    """The state of one measurement, kept outside the task so a cancelled run still reports."""

    def __init__(self, start: float) -> None:
        self.start = self.end = self.progress = start
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.errors = 0


async def run_caller(args: argparse.Namespace) -> None:
    async with connect(args.url, proxy=None, **WS_OPTIONS) as ws:
        register = {
            "type": "invokefunction",
            "function_id": "engine::workers::register",
            "data": worker_metadata(args.name),
            "action": {"type": "void"},
        }
        await ws.send(json.dumps(register))
        caller = RawCaller(ws, args.function, make_payload(args.payload_bytes))
        await caller.wait_until_served()

        async def run(command: dict[str, Any]) -> None:
            warmup = float(command.get("warmup", 0.0))
            window = int(command.get("window", 1))
            if warmup > 0:
                await caller.measure(window, warmup)
            emit(await caller.measure(window, float(command.get("duration", 1.0))))

        if args.control:
            emit({"ready": True, "role": "caller"})
            await read_commands(run)
        else:
            for _ in range(args.rounds):
                await run({"window": args.window, "duration": args.duration, "warmup": 0.2})


# --------------------------------------------------------------------------- bare relay


class Relay:
    """Routing only: function id -> registering connection, invocation id -> caller."""

    def __init__(self) -> None:
        self.owners: dict[str, ServerConnection] = {}
        self.pending: dict[str, ServerConnection] = {}

    async def handle(self, ws: ServerConnection) -> None:
        loads, owners, pending = json.loads, self.owners, self.pending
        greeting = {
            "type": "workerregistered",
            "worker_id": str(uuid.uuid4()),
            "reattach_token": str(uuid.uuid4()),
        }
        await ws.send(json.dumps(greeting))
        try:
            async for message in ws:
                frame = loads(message)
                kind = frame.get("type")
                if kind == "invokefunction":
                    await self._route_call(ws, frame, message)
                elif kind == "invocationresult":
                    caller = pending.pop(frame.get("invocation_id"), None)
                    if caller is not None:
                        with contextlib.suppress(ConnectionClosed):
                            await caller.send(message)
                elif kind == "registerfunction":
                    owners[frame["id"]] = ws
                elif kind == "unregisterfunction" and owners.get(frame.get("id")) is ws:
                    del owners[frame["id"]]
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
        except ConnectionClosed:
            pass
        finally:
            for function_id in [f for f, owner in owners.items() if owner is ws]:
                del owners[function_id]

    async def _route_call(
        self, ws: ServerConnection, frame: dict[str, Any], message: str | bytes
    ) -> None:
        invocation_id = frame.get("invocation_id")
        action = frame.get("action") or {}
        wants_result = invocation_id is not None and action.get("type") != "void"
        target = self.owners.get(frame.get("function_id", ""))
        if target is None:
            if wants_result:
                error = {"code": "function_not_found", "message": "not registered on the relay"}
                reply = {
                    "type": "invocationresult",
                    "invocation_id": invocation_id,
                    "function_id": frame.get("function_id"),
                    "error": error,
                }
                await ws.send(json.dumps(reply))
            return
        if wants_result:
            self.pending[invocation_id] = ws
        with contextlib.suppress(ConnectionClosed):
            await target.send(message)


async def run_relay(host: str, port: int) -> None:
    relay = Relay()
    async with serve(relay.handle, host, port, **WS_OPTIONS) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        emit({"ready": True, "role": "relay", "url": f"ws://{host}:{bound}"})
        await server.serve_forever()


# --------------------------------------------------------------------------- call lanes


def lanes_async(call: Callable[[], Awaitable[Any]], window: int,
                duration: float) -> Awaitable[dict[str, Any]]:
    """``window`` lanes on the running loop, each awaiting ``call()`` back to back for
    ``duration`` seconds: the measurement as :func:`summarize` gives it, plus ``cpu_us`` (the
    CPU time of this process per call). Used to time SDK clients, which bring their own
    connection."""

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        errors = 0
        perf = time.perf_counter
        start = end = perf()
        deadline = start + duration

        async def lane() -> None:
            nonlocal errors, end
            now = perf()
            while now < deadline:
                began = now
                try:
                    await call()
                except Exception:
                    errors += 1
                now = perf()
                latencies.append(now - began)
            end = max(end, now)

        cpu = time.process_time()
        await asyncio.gather(*(lane() for _ in range(window)))
        return _with_cpu(summarize(window, latencies, end - start, errors), cpu)

    return run()


def lanes_blocking(call: Callable[[], Any], window: int, duration: float) -> dict[str, Any]:
    """As :func:`lanes_async` with blocking calls: ``window`` threads (one lane runs inline)."""
    latencies: list[float] = []
    errors = [0]
    ends: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + duration

    def lane() -> None:
        perf = time.perf_counter
        mine: list[float] = []
        failed = 0
        now = perf()
        while now < deadline:
            began = now
            try:
                call()
            except Exception:
                failed += 1
            now = perf()
            mine.append(now - began)
        with lock:
            latencies.extend(mine)
            errors[0] += failed
            ends.append(now)

    cpu = time.process_time()
    if window == 1:
        lane()
    else:
        threads = [threading.Thread(target=lane) for _ in range(window)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return _with_cpu(summarize(window, latencies, max(ends) - start, errors[0]), cpu)


def _with_cpu(result: dict[str, Any], cpu_before: float) -> dict[str, Any]:
    result["cpu_us"] = (time.process_time() - cpu_before) / max(1, result["calls"]) * 1e6
    return result


async def wait_served(call: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> None:
    """Await ``call()`` until it succeeds (the worker may still be registering)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await call()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # no event tells a caller that a function appeared


def wait_served_blocking(call: Callable[[], Any], timeout: float = 30.0) -> None:
    """Blocking :func:`wait_served`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # no event tells a caller that a function appeared


# --------------------------------------------------------------------------- official SDK


def _sdk_options(name: str, otel: bool = False) -> Any:
    """The official SDK's options: OpenTelemetry off, or (``otel``) its defaults: spans,
    metrics and logs exported to the engine's ``/otel``."""
    from iii import InitOptions

    return InitOptions(
        worker_name=name,
        otel={"enabled": otel},
        enable_metrics_reporting=False,
        invocation_timeout_ms=30_000,
    )


def run_sdk_worker(args: argparse.Namespace) -> None:
    """The official SDK as the worker: an echo handler, sync (in a thread) or async."""
    from iii import register_worker

    client = register_worker(args.url, _sdk_options(args.name, args.otel))
    try:
        for function_id in args.function:
            if args.handler == "async":

                async def echo_async(data: Any) -> Any:
                    return data

                client.register_function(function_id, echo_async)
            else:

                def echo(data: Any) -> Any:
                    return data

                client.register_function(function_id, echo)
        emit({"ready": True, "role": "sdk-worker", "functions": args.function})
        if args.control:
            while sys.stdin.readline():
                pass
        else:
            threading.Event().wait()  # until terminated
    finally:
        client.shutdown()


def run_sdk_caller(args: argparse.Namespace) -> None:
    """The official SDK as the caller: sequential `trigger`, `trigger_async` for a window."""
    from iii import register_worker

    client = register_worker(args.url, _sdk_options(args.name))
    request = {"function_id": args.function, "payload": make_payload(args.payload_bytes)}
    try:
        wait_served_blocking(lambda: client.trigger({**request, "timeout_ms": 2000}))

        def measure(window: int, duration: float) -> dict[str, Any]:
            if window == 1:
                return lanes_blocking(lambda: client.trigger(request), 1, duration)
            return asyncio.run(lanes_async(lambda: client.trigger_async(request), window,
                                           duration))

        def run(command: dict[str, Any]) -> None:
            window = int(command.get("window", 1))
            warmup = float(command.get("warmup", 0.0))
            if warmup > 0:
                measure(window, warmup)
            emit(measure(window, float(command.get("duration", 1.0))))

        if args.control:
            emit({"ready": True, "role": "sdk-caller"})
            for line in sys.stdin:
                if line.strip():
                    run(json.loads(line))
        else:
            for _ in range(args.rounds):
                run({"window": args.window, "duration": args.duration, "warmup": 0.2})
    finally:
        client.shutdown()


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    roles = parser.add_subparsers(dest="role", required=True)

    relay = roles.add_parser("relay", help="routing-only relay (the ceiling of an engine)")
    relay.add_argument("--host", default="127.0.0.1")
    relay.add_argument("--port", type=int, default=0)

    for role in ("worker", "sdk-worker"):
        p = roles.add_parser(role, help=f"{role}: echo every invocation")
        p.add_argument("--url", required=True)
        p.add_argument("--function", action="append", required=True)
        p.add_argument("--name", default=f"bench-{role}-{uuid.uuid4().hex[:6]}")
        p.add_argument("--control", action="store_true", help="stop when stdin closes")
        if role == "sdk-worker":
            p.add_argument("--handler", choices=("sync", "async"), default="sync")
            p.add_argument("--otel", action="store_true",
                           help="OpenTelemetry on, with the SDK's defaults (engine export)")

    for role in ("caller", "sdk-caller"):
        p = roles.add_parser(role, help=f"{role}: sync calls, N in flight")
        p.add_argument("--url", required=True)
        p.add_argument("--function", required=True)
        p.add_argument("--name", default=f"bench-{role}-{uuid.uuid4().hex[:6]}")
        p.add_argument("--payload-bytes", type=int, default=64)
        p.add_argument("--control", action="store_true", help="take commands on stdin")
        p.add_argument("--window", type=int, default=64)
        p.add_argument("--duration", type=float, default=2.0)
        p.add_argument("--rounds", type=int, default=1)

    args = parser.parse_args(argv)
    try:
        if args.role == "relay":
            asyncio.run(run_relay(args.host, args.port))
        elif args.role == "worker":
            asyncio.run(run_worker(args.url, args.function, args.name, args.control))
        elif args.role == "caller":
            asyncio.run(run_caller(args))
        elif args.role == "sdk-worker":
            run_sdk_worker(args)
        else:
            run_sdk_caller(args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
