"""Engine load: 100 workers and 10,000 functions on one engine, 50,000 calls, 512 in flight.

Issue 12, "Load and soak". One iii_rx engine process; the workers are raw-frame connections
hosted by a few processes (100 Python processes would measure the machine, not the engine);
8 caller processes each keep 64 calls in flight (512 in all) on random functions until
50,000 calls are answered. Reported: how long the 10,000 registrations take,
``engine::functions::list`` with 10,000 functions, throughput and latency of the calls, the
engine's CPU per call and its memory before and after.

    python benchmarks/engine_load.py [--workers 100] [--functions 100] [--calls 50000]
        [--callers 8] [--window 64] [--worker-processes 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Peer, cpu_seconds, per_call_us, start_peer, wait_for_port
from loadpeers import rss_mb
from websockets.asyncio.client import connect

LOADPEERS = str(Path(__file__).resolve().parent / "loadpeers.py")


def peer_argv(role: str, *args: str) -> list[str]:
    return [sys.executable, LOADPEERS, role, *args]


def start_engine(log_dir: str, stack: contextlib.ExitStack,
                 options: dict[str, Any] | None = None) -> tuple[Peer, str]:
    """The engine role (stopped with ``stack``); its peer and worker URL."""
    engine = Peer("engine", peer_argv("engine", "--options", json.dumps(options or {})),
                  log_dir)
    stack.callback(engine.stop)
    port = int(engine.read_json(timeout=60)["port"])
    wait_for_port(engine, port)
    return engine, f"ws://127.0.0.1:{port}"


def stats(peer: Peer, timeout: float = 30) -> dict[str, Any]:
    peer.send({"cmd": "stats"})
    return peer.read_json(timeout)


async def list_functions(url: str, rounds: int) -> tuple[list[float], int]:
    """Times of ``engine::functions::list`` (ms) and the number of functions listed."""
    async with connect(url, compression=None, max_size=2**27, ping_interval=None) as ws:
        await ws.recv()
        times, count = [], 0
        for n in range(rounds):
            began = time.perf_counter()
            await ws.send(json.dumps({"type": "invokefunction", "invocation_id": f"l{n}",
                                      "function_id": "engine::functions::list", "data": {}}))
            async for message in ws:
                frame = json.loads(message)
                if frame.get("invocation_id") == f"l{n}":
                    break
            times.append((time.perf_counter() - began) * 1000)
            count = len(frame["result"]["functions"])
        return times, count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--functions", type=int, default=100, help="per worker")
    parser.add_argument("--worker-processes", type=int, default=4)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--window", type=int, default=64, help="calls in flight per caller")
    args = parser.parse_args(argv)
    layout = ["--workers", str(args.workers), "--functions", str(args.functions)]

    with tempfile.TemporaryDirectory(prefix="iii-load-") as log_dir, \
            contextlib.ExitStack() as stack:
        engine, url = start_engine(log_dir, stack)
        idle = stats(engine)

        began = time.perf_counter()
        per = -(-args.workers // args.worker_processes)
        hosts = []
        for p in range(args.worker_processes):
            first = p * per
            count = min(per, args.workers - first)
            if count <= 0:
                break
            hosts.append(Peer(f"workers-{p}", peer_argv(
                "workers", "--url", url, "--count", str(count), "--first", str(first),
                "--functions", str(args.functions)), log_dir))
            stack.callback(hosts[-1].stop)
        for host in hosts:
            host.read_json(timeout=600)
        registered_s = time.perf_counter() - began
        loaded = stats(engine)
        list_ms, listed = asyncio.run(list_functions(url, 5))

        callers = [start_peer(f"caller-{c}", peer_argv("caller", "--url", url, *layout),
                              log_dir, stack, timeout=120) for c in range(args.callers)]
        share = [args.calls // args.callers + (c < args.calls % args.callers)
                 for c in range(args.callers)]
        cpu_before = cpu_seconds(engine.proc.pid)
        began = time.perf_counter()
        for caller, calls in zip(callers, share, strict=True):
            caller.send({"calls": calls, "window": args.window})
        results = [caller.read_json(timeout=900) for caller in callers]
        wall = time.perf_counter() - began
        cpu_after = cpu_seconds(engine.proc.pid)
        after = stats(engine)

    answered = sum(r["calls"] for r in results)
    print(f"\nengine load: {args.workers} workers x {args.functions} functions, "
          f"{args.calls:,} calls from {args.callers} caller processes x {args.window} in "
          f"flight ({args.callers * args.window} in all), raw-frame peers, one iii_rx engine")
    print(f"registration: {loaded['functions'] - idle['functions']:,} functions of "
          f"{loaded['workers']} workers registered in {registered_s:.1f} s (processes "
          f"started, connected, registered, acknowledged)")
    print(f"engine::functions::list with {listed:,} functions: median "
          f"{statistics.median(list_ms):.0f} ms [{min(list_ms):.0f}-{max(list_ms):.0f}] "
          f"over {len(list_ms)} calls")
    print(f"calls: {answered:,} answered in {wall:.1f} s = {answered / wall:,.0f} calls/s; "
          f"errors {sum(r['errors'] for r in results)}, lost {sum(r['lost'] for r in results)}")
    print(f"latency per caller: p50 median {statistics.median(r['p50_ms'] for r in results):.1f}"
          f" ms, p99 median {statistics.median(r['p99_ms'] for r in results):.1f} ms, "
          f"worst p99 {max(r['p99_ms'] for r in results):.1f} ms")
    print(f"engine CPU per call: {per_call_us(cpu_before, cpu_after, answered):.1f} us")
    print(f"engine RSS: idle {idle['rss_mb']:.0f} MB, with "
          f"{loaded['functions'] - idle['functions']:,} functions "
          f"{loaded['rss_mb']:.0f} MB, after the calls {after['rss_mb']:.0f} MB; "
          f"calls in flight after: {after['pending']}, bytes queued: {after['queued_bytes']}")
    caller_rss = ", ".join(f"{r['rss_mb']:.0f}" for r in results)
    print(f"caller RSS: {caller_rss} MB; this process {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
