"""http trigger throughput: requests/s and latency through an engine's REST API.

A load generator (this process, aiohttp on loopback) sends GET requests to an ``http`` route
bound to a function; the function runs in a worker process of its own and returns a small JSON
envelope. Handlers, in one run:

  rx   an iii_rx worker      (async handler returning {"status_code": 200, "body": {...}})
  sdk  an official iii-sdk worker (the same handler)

through the iii_rx engine, and (context, when ``~/.cache/iii-engine/iii`` is built) through the
real Rust iii engine. Engine, each worker and the load generator are separate processes. Each
figure is measured with ``--concurrency`` requests in flight and sequentially (one in flight);
rounds are interleaved across scenarios and the median of the rounds is printed with the range
beside it, with the CPU time the engine and the worker process spent per request (from
/proc). The machine has 2 cores shared by every process here (and by whatever else runs): the
load generator competes with the engine and the worker and often caps the requests/s, so the
CPU per request is the steadier figure for comparing the two workers.

    python benchmarks/http_trigger.py [--duration 2] [--rounds 3] [--concurrency 64]
                                      [--engines iii_rx,rust] [--handlers rx,sdk]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from _common import (  # noqa: E402
    Peer,
    free_port,
    per_call_us,
    rust_available,
    spread,
    start_engine,
    wait_for_port,
)

ANSWER = {"status_code": 200, "headers": {"x-bench": "1"}, "body": {"ok": True}}


# ----------------------------------------------------------------------------- workers


async def handler(data: Any) -> Any:
    return ANSWER


def run_worker(kind: str, url: str, path: str) -> None:
    """Register ``bench::<kind>`` behind ``GET <path>`` and serve until stdin closes."""
    function_id = f"bench::{kind}"
    trigger = {"type": "http", "function_id": function_id,
               "config": {"api_path": path, "http_method": "GET"}}
    name = f"bench-http-{kind}-{uuid.uuid4().hex[:6]}"
    if kind == "sdk":
        from iii import InitOptions, register_worker

        sdk = register_worker(url, InitOptions(worker_name=name))
        sdk.register_function(function_id, handler)
        sdk.register_trigger(trigger)
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.read()
        sdk.shutdown()
        return

    import iii_rx

    async def serve() -> None:
        async with iii_rx.connect(url, name=name) as iii:
            iii.register_function(function_id, handler)
            iii.register_trigger(trigger)
            print(json.dumps({"ready": True}), flush=True)
            await asyncio.to_thread(sys.stdin.read)

    asyncio.run(serve())


# ----------------------------------------------------------------------------- load


@dataclass
class Scenario:
    engine: str
    handler: str
    url: str = ""
    engine_peer: Peer | None = None
    worker_peer: Peer | None = None
    results: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    failure: str | None = None

    @property
    def label(self) -> str:
        who = "iii_rx worker" if self.handler == "rx" else "official iii-sdk worker"
        return f"{self.engine} engine -> {who}"


async def load(url: str, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    """Requests/s and latency percentiles with ``concurrency`` requests always in flight."""
    import aiohttp

    latencies: list[float] = []
    errors: dict[int, int] = {}
    total = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration

        async def client() -> None:
            nonlocal total
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                async with session.get(url) as response:
                    await response.read()
                    status = response.status
                done = time.perf_counter()
                total += 1
                if sent >= measure_from:
                    if status == 200:
                        latencies.append(done - sent)
                    else:
                        errors[status] = errors.get(status, 0) + 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    latencies.sort()
    count = len(latencies)
    if not count:
        return {"rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"), "errors": errors,
                "total": total}
    return {
        "rps": count / duration,
        "p50_ms": latencies[count // 2] * 1000,
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1000,
        "errors": errors,
        "total": total,
    }


async def wait_routed(url: str, timeout: float = 30.0) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} never answered 200")


# ----------------------------------------------------------------------------- report


def report(scenarios: list[Scenario], windows: list[int]) -> None:
    for window in windows:
        kind = "sequential" if window == 1 else f"{window} in flight"
        print(f"\n{kind}: requests/s, latency ms, CPU µs per request (median [range])")
        print(f"  {'scenario':<44} {'req/s':>22} {'p50 ms':>20} {'p99 ms':>20} "
              f"{'engine CPU µs':>18} {'worker CPU µs':>18}")
        for sc in scenarios:
            rows = sc.results.get(window, [])
            if sc.failure:
                print(f"  {sc.label:<44} failed: {sc.failure}")
                continue
            print(f"  {sc.label:<44} {spread([r['rps'] for r in rows], ',.0f'):>22} "
                  f"{spread([r['p50_ms'] for r in rows], '.2f'):>20} "
                  f"{spread([r['p99_ms'] for r in rows], '.2f'):>20} "
                  f"{spread([r['engine_us'] for r in rows], ',.0f'):>18} "
                  f"{spread([r['worker_us'] for r in rows], ',.0f'):>18}")
            errors: dict[int, int] = {}
            for r in rows:
                for status, n in r["errors"].items():
                    errors[status] = errors.get(status, 0) + n
            if errors:
                listed = ", ".join(f"{n} x {status}" for status, n in sorted(errors.items()))
                print(f"  {'':<44} (non-200 answers: {listed})")
        for engine in sorted({sc.engine for sc in scenarios}):
            pair = {sc.handler: sc for sc in scenarios if sc.engine == engine and not sc.failure}
            if {"rx", "sdk"} <= set(pair):
                rx = statistics.median(r["rps"] for r in pair["rx"].results[window])
                sdk = statistics.median(r["rps"] for r in pair["sdk"].results[window])
                rx_cpu = statistics.median(r["worker_us"] for r in pair["rx"].results[window])
                sdk_cpu = statistics.median(r["worker_us"] for r in pair["sdk"].results[window])
                if sdk and rx_cpu:
                    print(f"  through {engine}: iii_rx / official worker requests/s "
                          f"{rx / sdk:.2f}x; official / iii_rx worker CPU per request "
                          f"{sdk_cpu / rx_cpu:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    worker = sub.add_parser("worker", help="(internal) run one handler worker")
    worker.add_argument("--kind", choices=["rx", "sdk"], required=True)
    worker.add_argument("--url", required=True)
    worker.add_argument("--path", required=True)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--engines", default="iii_rx,rust")
    parser.add_argument("--handlers", default="rx,sdk")
    args = parser.parse_args(argv)
    if args.role == "worker":
        run_worker(args.kind, args.url, args.path)
        return 0

    engines = [e for e in args.engines.split(",") if e]
    if "rust" in engines and not rust_available():
        print("(skipping the Rust engine: it is not built)")
        engines.remove("rust")
    handlers = [h for h in args.handlers.split(",") if h]
    windows = [args.concurrency, 1]
    scenarios = [Scenario(e, h) for e in engines for h in handlers]
    print(f"http trigger benchmark: GET -> function -> JSON envelope; {args.rounds} rounds of "
          f"{args.duration:.1f} s per figure; {os.cpu_count()} CPUs shared by all processes")
    with tempfile.TemporaryDirectory(prefix="bench-http-") as log_dir, \
            contextlib.ExitStack() as stack:
        for engine in engines:
            rest_port = free_port()
            peer, port = start_engine(engine, log_dir, stack, rest_port=rest_port)
            wait_for_port(peer, rest_port)
            for sc in scenarios:
                if sc.engine != engine:
                    continue
                path = f"/bench/{sc.handler}"
                worker_peer = Peer(f"worker-{engine}-{sc.handler}", [
                    sys.executable, str(HERE), "worker", "--kind", sc.handler,
                    "--url", f"ws://127.0.0.1:{port}", "--path", path], log_dir, stop_grace=5)
                stack.callback(worker_peer.stop)
                sc.engine_peer, sc.worker_peer = peer, worker_peer
                try:
                    worker_peer.read_json(timeout=60)
                    sc.url = f"http://127.0.0.1:{rest_port}{path}"
                    asyncio.run(wait_routed(sc.url))
                except (TimeoutError, RuntimeError) as exc:
                    sc.failure = str(exc)
        for round_no in range(args.rounds):
            for window in windows:
                for sc in scenarios:
                    if sc.failure:
                        continue
                    assert sc.engine_peer is not None and sc.worker_peer is not None
                    cpu = (sc.engine_peer.cpu_seconds(), sc.worker_peer.cpu_seconds())
                    figure = asyncio.run(load(sc.url, window, args.duration, args.warmup))
                    requests = max(1, figure["total"])
                    figure["engine_us"] = per_call_us(cpu[0], sc.engine_peer.cpu_seconds(),
                                                      requests)
                    figure["worker_us"] = per_call_us(cpu[1], sc.worker_peer.cpu_seconds(),
                                                      requests)
                    sc.results.setdefault(window, []).append(figure)
            print(f"  round {round_no + 1}/{args.rounds} done", flush=True)
    report(scenarios, windows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
