"""Client round trips: iii_rx against the official iii-sdk, as a caller and as a worker.

One role at a time, against raw-frame peers that are never the bottleneck:

* **callers** — iii_rx and the official SDK call the same raw-frame echo worker through the same
  engine: sequential latency (p50/p99) and throughput with 1, 64 and 512 calls in flight, for
  ``async`` calls (``await iii.trigger(...)`` on the client's loop / ``await trigger_async``) and
  for ``blocking`` calls (N threads each blocking in ``.result()`` / ``trigger``).
  Targets (issue 3): iii_rx >= 1.3x the official SDK (>= 1.5x at 64 in flight),
  p99 no worse.
* **workers** — a raw-frame caller calls an iii_rx worker and an official-SDK worker (sync
  handler in a thread, async handler as a task) through the same engine. Target: >= 3x.
* **tracing** — the same iii_rx caller and workers with OpenTelemetry off, with spans on
  (``connect(otel=OtelConfig(enabled=True, metrics_enabled=False))``, an SDK
  ``TracerProvider`` whose batch processor feeds an exporter that drops the spans; payload
  events on, as by default) and with ``OtelConfig(enabled=True)``'s defaults (spans and
  metrics), and with the defaults and 10% of the traces sampled, same run, interleaved; then
  ``OtelConfig(enabled=True)`` alone, which exports to the engine's ``/otel``, beside the
  official SDK's worker with OpenTelemetry on (the same kind of export) and off.
  Target (issue 14): tracing on costs <= 15% of throughput
  (ratio >= 0.85); off is the default, whose cost is one ``if`` per call. The traced roles
  inherit the environment, so
  ``OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1`` measures
  sampling and ``III_DISABLE_TRACE_PAYLOADS=1`` spans without payload events.

Every contender runs in its own process, figures are interleaved round by round, and the ratios
are taken per round (each pair saw the same load)::

    .venv/bin/python benchmarks/client_roundtrip.py
    .venv/bin/python benchmarks/client_roundtrip.py --part callers --windows 1,64 --rounds 5
    .venv/bin/python benchmarks/client_roundtrip.py --engine rust    # the Rust engine, if built
    .venv/bin/python benchmarks/client_roundtrip.py --part spancost  # tracing's CPU per span

The roles it starts are subcommands of this file (``rx-caller``, ``sdk-caller``, ``rx-worker``);
the raw-frame peers and the official-SDK worker come from ``rawpeers.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import Peer, rawpeer_argv, spread, start_engine, start_peer  # noqa: E402
from _common import median as med  # noqa: E402
from rawpeers import (  # noqa: E402
    emit,
    lanes_async,
    lanes_blocking,
    make_payload,
    read_commands,
    wait_served,
    wait_served_blocking,
)

SELF = str(Path(__file__).resolve())
ECHO = "bench::echo"
TRACING_CONFIGS = {"off": [], "spans": ["--otel", "--no-metrics"], "all": ["--otel"],
                   "sampled": ["--otel", "--sample", "0.1"], "engine": ["--otel-engine"]}
"""The tracing part's contenders: OpenTelemetry off, spans without metrics, the defaults, the
defaults with 10% of the traces sampled (these three with a span exporter that drops), and the
defaults exporting to the engine's ``/otel`` (no exporter of the user's)."""


# =========================================================================== roles


def otel_option(args: argparse.Namespace) -> dict[str, Any]:
    """``{"otel": ...}`` with a real SDK pipeline (batch processor, dropping exporter) when
    the role runs with ``--otel`` (metrics too unless ``--no-metrics``; ``--sample R``: a
    ``ParentBased(TraceIdRatioBased(R))`` sampler), ``OtelConfig(enabled=True)`` alone with
    ``--otel-engine`` (iii_rx's own pipeline, exporting to the engine); ``{}`` otherwise."""
    import iii_rx

    if getattr(args, "otel_engine", False):  # iii_rx installs its provider: engine export
        return {"otel": iii_rx.OtelConfig(enabled=True)}
    if not getattr(args, "otel", False):
        return {}
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    sampler = None
    if args.sample is not None:
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        sampler = ParentBased(TraceIdRatioBased(args.sample))
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    return {"otel": iii_rx.OtelConfig(enabled=True, metrics_enabled=not args.no_metrics)}


def run_rx_caller(args: argparse.Namespace) -> None:
    """iii_rx as the caller: ``await iii.trigger`` on the client's loop, or ``.result()``."""
    import iii_rx

    payload = make_payload(args.payload_bytes)
    options: dict[str, Any] = {"name": args.name, "timeout_ms": 30_000, **otel_option(args)}

    if args.mode == "async":
        async def main() -> None:
            async with iii_rx.connect(args.url, **options) as iii:
                await wait_served(lambda: iii.trigger(ECHO, payload, timeout_ms=2000))
                emit({"ready": True, "role": "rx-caller", "mode": "async"})

                async def run(command: dict[str, Any]) -> None:
                    emit(await lanes_async(lambda: iii.trigger(ECHO, payload),
                                            int(command["window"]), float(command["duration"])))

                await read_commands(run)

        asyncio.run(main())
        return

    with iii_rx.connect_sync(args.url, **options) as iii:
        wait_served_blocking(lambda: iii.trigger(ECHO, payload, timeout_ms=2000).result())
        emit({"ready": True, "role": "rx-caller", "mode": "blocking"})
        for line in sys.stdin:
            if line.strip():
                command = json.loads(line)
                emit(lanes_blocking(lambda: iii.trigger(ECHO, payload).result(),
                                     int(command["window"]), float(command["duration"])))


def run_sdk_caller(args: argparse.Namespace) -> None:
    """The official SDK as the caller: ``await trigger_async`` or blocking ``trigger``."""
    from iii import InitOptions, register_worker

    client = register_worker(args.url, InitOptions(worker_name=args.name,
                                                   otel={"enabled": False},
                                                   invocation_timeout_ms=30_000))
    request = {"function_id": ECHO, "payload": make_payload(args.payload_bytes)}
    try:
        wait_served_blocking(lambda: client.trigger({**request, "timeout_ms": 2000}))
        emit({"ready": True, "role": "sdk-caller", "mode": args.mode})
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            window, duration = int(command["window"]), float(command["duration"])
            if args.mode == "async":
                emit(asyncio.run(lanes_async(lambda: client.trigger_async(request),
                                              window, duration)))
            else:
                emit(lanes_blocking(lambda: client.trigger(request), window, duration))
    finally:
        client.shutdown()


def run_rx_worker(args: argparse.Namespace) -> None:
    """iii_rx as the worker: an echo handler, sync (thread pool) or async (task)."""
    import iii_rx

    async def main() -> None:
        async with iii_rx.connect(args.url, name=args.name, **otel_option(args)) as iii:
            if args.handler == "async":
                async def echo_async(data: Any) -> Any:
                    return data

                for function_id in args.function:
                    iii.register_function(function_id, echo_async)
            else:
                def echo(data: Any) -> Any:
                    return data

                for function_id in args.function:
                    iii.register_function(function_id, echo)
            await iii.trigger(args.function[0], None)  # registered and served
            emit({"ready": True, "role": "rx-worker", "handler": args.handler})

            async def ignore(_: dict[str, Any]) -> None:
                return None

            await read_commands(ignore)

    asyncio.run(main())


# =========================================================================== orchestration


class Contender:
    """One measured process (a caller, or the raw caller in front of a worker)."""

    def __init__(self, key: str, label: str, caller: Peer, worker: Peer | None = None) -> None:
        self.key = key
        self.label = label
        self.caller = caller
        self.worker = worker
        self.results: dict[int, list[dict[str, Any]]] = {}

    def measure(self, window: int, duration: float, warmup: float) -> None:
        if warmup > 0:
            self.caller.send({"window": window, "duration": warmup})
            self.caller.read_json(timeout=warmup + 120)
        worker_cpu = self.worker.cpu_seconds() if self.worker else None
        self.caller.send({"window": window, "duration": duration})
        result = self.caller.read_json(timeout=duration + 120)
        if self.worker is not None and worker_cpu is not None and result["calls"]:
            end = self.worker.cpu_seconds()
            if end is not None:
                result["cpu_us"] = (end - worker_cpu) / result["calls"] * 1e6
        self.results.setdefault(window, []).append(result)


def ratio_row(label: str, ours: Contender, theirs: Contender, window: int) -> str:
    a, b = ours.results.get(window, []), theirs.results.get(window, [])
    ratios = [x["rate"] / y["rate"] for x, y in zip(a, b, strict=False) if y["rate"] > 0]
    flight = "sequential" if window == 1 else f"{window} in flight"
    cells = []
    for c in (ours, theirs):
        runs = c.results.get(window, [])
        failures = sum(r["errors"] for r in runs)
        note = f" ({failures} failed)" if failures else ""
        cells.append(
            f"{spread([r['rate'] for r in runs], ',.0f'):>22} "
            f"{med([r['p50_ms'] for r in runs]):6.2f}/{med([r['p99_ms'] for r in runs]):6.2f}"
            f" {med([r.get('cpu_us', float('nan')) for r in runs]):6.1f}{note}"
        )
    return (f"{label:<18}{flight:<15}" + "".join(f"{c:<46}" for c in cells)
            + f"{spread(ratios, '.2f')}")


def header(first: str, second: str) -> str:
    cols = "inv/s median [range]   p50/p99 ms  cpu us"
    return (f"{'':<18}{'':<15}{first:<46}{second:<46}ratio\n"
            f"{'':<18}{'':<15}{cols:<46}{cols:<46}median [range]")


def bench_callers(args: argparse.Namespace, url: str, log_dir: str,
                  stack: contextlib.ExitStack) -> None:
    start_peer("raw-worker", rawpeer_argv("worker", url, ECHO, "--name", "bench-raw-echo"),
               log_dir, stack)
    contenders: dict[tuple[str, str], Contender] = {}
    for mode in args.modes:
        for impl, role in (("rx", "rx-caller"), ("sdk", "sdk-caller")):
            argv = [sys.executable, SELF, role, "--url", url, "--mode", mode,
                    "--payload-bytes", str(args.payload_bytes),
                    "--name", f"bench-{impl}-{mode}-{uuid.uuid4().hex[:6]}"]
            caller = start_peer(f"{impl}-caller-{mode}", argv, log_dir, stack)
            contenders[impl, mode] = Contender(f"{impl}-{mode}", f"{impl} {mode}", caller)
    raw = Contender("raw", "raw frames", start_peer("raw-caller", rawpeer_argv(
        "caller", url, ECHO, "--payload-bytes", str(args.payload_bytes)), log_dir, stack))
    for _ in range(args.rounds):
        for window in args.windows:
            for mode in args.modes:
                for impl in ("rx", "sdk"):
                    contenders[impl, mode].measure(window, args.duration, args.warmup)
            raw.measure(window, args.duration, args.warmup)
    print()
    print("CALLERS: iii_rx vs official iii-sdk calling a raw-frame echo worker "
          f"(engine: {args.engine}); cpu us = caller CPU per call")
    print(header("iii_rx", "official iii-sdk"))
    for mode in args.modes:
        for window in args.windows:
            print(ratio_row(f"{mode}", contenders["rx", mode], contenders["sdk", mode], window))
    for window in args.windows:  # the floor: a caller that only writes and reads frames
        runs = raw.results.get(window, [])
        if not runs:
            continue
        raw_p50 = med([r["p50_ms"] for r in runs])
        over = " / ".join(
            f"{med([r['p50_ms'] for r in contenders['rx', m].results[window]]) / raw_p50:.2f}"
            for m in args.modes)
        flight = "sequential" if window == 1 else f"{window} in flight"
        print(f"{'raw frames':<18}{flight:<15}{spread([r['rate'] for r in runs], ',.0f'):>22} "
              f"{raw_p50:6.2f}/{med([r['p99_ms'] for r in runs]):6.2f}   "
              f"p50 iii_rx / raw frames ({', '.join(args.modes)}): {over}")


def bench_workers(args: argparse.Namespace, url: str, log_dir: str,
                  stack: contextlib.ExitStack) -> None:
    contenders: dict[tuple[str, str], Contender] = {}
    payload = ("--payload-bytes", str(args.payload_bytes))
    for handler in args.handlers:
        for impl in ("rx", "sdk"):
            function_id = f"bench::{impl}_{handler}"
            name = f"bench-{impl}-worker-{handler}-{uuid.uuid4().hex[:6]}"
            if impl == "rx":
                argv = [sys.executable, SELF, "rx-worker", "--url", url, "--function",
                        function_id, "--handler", handler, "--name", name]
            else:
                argv = rawpeer_argv("sdk-worker", url, function_id, "--handler", handler,
                                    "--name", name)
            worker = start_peer(f"{impl}-worker-{handler}", argv, log_dir, stack)
            caller = start_peer(f"raw-caller-{impl}-{handler}",
                                rawpeer_argv("caller", url, function_id, *payload), log_dir,
                                stack)
            contenders[impl, handler] = Contender(f"{impl}-{handler}", f"{impl} {handler}",
                                                  caller, worker)
    raw_worker = start_peer("raw-worker-ceiling", rawpeer_argv(
        "worker", url, "bench::raw", "--name", "bench-raw-ceiling"), log_dir, stack)
    raw_caller = start_peer("raw-caller-raw", rawpeer_argv("caller", url, "bench::raw", *payload),
                            log_dir, stack)
    ceiling = Contender("raw", "raw", raw_caller, raw_worker)
    windows = [w for w in args.windows if w <= 64] or [1]
    for _ in range(args.rounds):
        for window in windows:
            for handler in args.handlers:
                for impl in ("rx", "sdk"):
                    contenders[impl, handler].measure(window, args.duration, args.warmup)
            ceiling.measure(window, args.duration, args.warmup)
    print()
    print("WORKERS: a raw-frame caller calls an iii_rx worker vs an official iii-sdk worker "
          f"(engine: {args.engine}); cpu us = worker CPU per call")
    print(header("iii_rx", "official iii-sdk"))
    for handler in args.handlers:
        for window in windows:
            print(ratio_row(f"{handler} handler", contenders["rx", handler],
                            contenders["sdk", handler], window))
    for window in windows:
        runs = ceiling.results.get(window, [])
        flight = "sequential" if window == 1 else f"{window} in flight"
        print(f"{'raw-frame worker':<18}{flight:<15}{spread([r['rate'] for r in runs], ',.0f'):>22}"
              f" {med([r['p50_ms'] for r in runs]):6.2f}/{med([r['p99_ms'] for r in runs]):6.2f}"
              f" {med([r.get('cpu_us', float('nan')) for r in runs]):6.1f}"
              "   (the ceiling: what this engine and caller allow)")


def bench_tracing(args: argparse.Namespace, url: str, log_dir: str,
                  stack: contextlib.ExitStack) -> None:
    if "callers" not in args.parts:
        start_peer("raw-worker", rawpeer_argv("worker", url, ECHO, "--name", "bench-raw-echo"),
                   log_dir, stack)
    payload = ("--payload-bytes", str(args.payload_bytes))
    pairs: dict[str, dict[str, Contender]] = {}
    for tag, flags in TRACING_CONFIGS.items():
        argv = [sys.executable, SELF, "rx-caller", "--url", url, "--mode", "async", *payload,
                "--name", f"bench-rx-otel-{tag}-{uuid.uuid4().hex[:6]}", *flags]
        caller = start_peer(f"rx-caller-otel-{tag}", argv, log_dir, stack)
        pairs.setdefault("async caller", {})[tag] = Contender(f"caller-{tag}", tag, caller)
        for handler in args.handlers:
            function_id = f"bench::otel_{tag}_{handler}"
            worker = start_peer(f"rx-worker-otel-{tag}-{handler}", [
                sys.executable, SELF, "rx-worker", "--url", url, "--function", function_id,
                "--handler", handler, "--name", f"bench-otel-{tag}-{handler}-"
                f"{uuid.uuid4().hex[:6]}", *flags], log_dir, stack)
            raw = start_peer(f"raw-caller-otel-{tag}-{handler}",
                             rawpeer_argv("caller", url, function_id, *payload), log_dir, stack)
            pairs.setdefault(f"{handler} worker", {})[tag] = Contender(
                f"{handler}-{tag}", tag, raw, worker)
    official = official_tracing_pairs(args, url, log_dir, stack)
    windows = [w for w in args.windows if w <= 64] or [1]
    for _ in range(args.rounds):
        for window in windows:
            for pair in [*pairs.values(), *official.values()]:
                for contender in pair.values():
                    contender.measure(window, args.duration, args.warmup)
    engine = f"engine: {args.engine}"
    for tag, heading, column in (
            ("spans", "TRACING: iii_rx with spans on (payload events, metrics off) vs "
             f"OpenTelemetry off (same run; ratio = on / off, target >= 0.85; {engine}); "
             "cpu us = traced process CPU per call", "spans on"),
            ("all", "TELEMETRY: iii_rx with OtelConfig(enabled=True)'s defaults (spans and "
             f"metrics) vs off (same run; ratio = on / off; {engine})", "spans and metrics on"),
            ("sampled", "SAMPLED: iii_rx with the defaults and 10% of the traces sampled "
             "(ParentBased(TraceIdRatioBased(0.1))) vs off (same run; ratio = on / off; "
             f"{engine})", "defaults, 10% sampled"),
            ("engine", "EXPORT: iii_rx with OtelConfig(enabled=True) alone (spans, "
             "metrics and logs exported to the engine's /otel, as the official SDK does) vs "
             f"off (same run; ratio = on / off; {engine})", "defaults, engine export")):
        print_pairs(heading, (column, "off"), windows,
                    [(label, pair[tag], pair["off"]) for label, pair in pairs.items()])
    print_pairs("OFFICIAL: the official iii-sdk worker with OpenTelemetry on (its defaults: "
                f"engine export) vs off (same run; ratio = on / off; {engine})",
                ("official, otel on", "official, off"), windows,
                [(label, pair["on"], pair["off"]) for label, pair in official.items()])
    print_pairs("TRACED: iii_rx vs the official iii-sdk, both exporting to the engine with "
                f"their defaults (same run; ratio = iii_rx / official; {engine})",
                ("iii_rx, engine export", "official, otel on"), windows,
                [(label, pairs[label]["engine"], pair["on"]) for label, pair in official.items()])
    span_costs()


def print_pairs(heading: str, columns: tuple[str, str], windows: list[int],
                rows: list[tuple[str, Contender, Contender]]) -> None:
    """One table: per row label and window, the first contender against the second."""
    print()
    print(heading)
    print(header(*columns))
    for label, first, second in rows:
        for window in windows:
            print(ratio_row(label, first, second, window))


def official_tracing_pairs(args: argparse.Namespace, url: str, log_dir: str,
                           stack: contextlib.ExitStack) -> dict[str, dict[str, Contender]]:
    """Per handler, an official-SDK worker with OpenTelemetry off and one with it on, each
    behind its raw caller: ``{"<handler> worker": {"off": ..., "on": ...}}``."""
    payload = ("--payload-bytes", str(args.payload_bytes))
    pairs: dict[str, dict[str, Contender]] = {}
    for handler in args.handlers:
        for tag, flags in (("off", []), ("on", ["--otel"])):
            function_id = f"bench::sdk_otel_{tag}_{handler}"
            worker = start_peer(f"sdk-worker-otel-{tag}-{handler}", rawpeer_argv(
                "sdk-worker", url, function_id, "--handler", handler, "--name",
                f"bench-sdk-otel-{tag}-{handler}-{uuid.uuid4().hex[:6]}", *flags),
                log_dir, stack)
            raw = start_peer(f"raw-caller-sdk-otel-{tag}-{handler}",
                             rawpeer_argv("caller", url, function_id, *payload), log_dir, stack)
            pairs.setdefault(f"{handler} worker", {})[tag] = Contender(
                f"sdk-{handler}-{tag}", tag, raw, worker)
    return pairs


SPAN_COST_CONFIGS = (
    ("default (payload events, metrics)", {}),
    ("no metrics", {"metrics": False}),
    ("no payload events, no metrics", {"metrics": False, "III_DISABLE_TRACE_PAYLOADS": "1"}),
    ("10% sampled (traceidratio), metrics", {"OTEL_TRACES_SAMPLER": "traceidratio",
                                            "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
)


def span_costs() -> None:
    """What tracing adds per call and per invocation, in CPU of one process (the telemetry
    hooks alone, no I/O; best of 5), each configuration in a fresh interpreter."""
    print("\nPer-span CPU of the telemetry hooks (one process, no I/O; best of 5 x 5,000):")
    for label, config in SPAN_COST_CONFIGS:
        env = {**os.environ, **{k: v for k, v in config.items() if isinstance(v, str)}}
        argv = [sys.executable, SELF, "span-cost"] + ([] if config.get("metrics", True)
                                                       else ["--no-metrics"])
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        cost = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {}
        print(f"  {label:<40} call {cost.get('call_us', float('nan')):6.1f} us   "
              f"invocation {cost.get('invocation_us', float('nan')):6.1f} us")


def run_span_cost(args: argparse.Namespace) -> None:
    """The ``span-cost`` role: time ``Tracing.on_call`` and ``on_invoke`` + answer in-process."""
    import time

    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from iii_rx.aio import LoopBridge
    from iii_rx.calls import Calls
    from iii_rx.context import Invocation
    from iii_rx.telemetry.config import OtelConfig
    from iii_rx.telemetry.metrics import Metrics
    from iii_rx.telemetry.tracing import Tracing

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    n = 5000

    async def main() -> dict[str, float]:
        bridge = LoopBridge.current()
        metrics = (None if args.no_metrics
                   else Metrics(MeterProvider(metric_readers=[InMemoryMetricReader()])))
        tracing = Tracing(OtelConfig(enabled=True), bridge, "bench", provider, metrics)
        call = Calls(bridge, outbox=None).call(ECHO, {"a": 1}, timeout_ms=1000)  # type: ignore[arg-type]

        def send(sent: Any, target: Any) -> Any:
            target({"a": 1}, None)
            return lambda: None

        def calls() -> None:
            for _ in range(n):
                tracing.on_call(call, lambda value, error: None, send)

        def invocations() -> None:
            for _ in range(n):
                invocation = Invocation(None, ECHO, "iid", {"a": 1}, None,
                                        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                tracing.on_invoke(invocation)
                invocation.trace.end({"a": 1}, None)

        result = {}
        for key, run in (("call_us", calls), ("invocation_us", invocations)):
            best = []
            for _ in range(5):
                started = time.process_time()
                run()
                best.append(time.process_time() - started)
            result[key] = min(best) / n * 1e6
        return result

    emit(asyncio.run(main()))


def orchestrate(args: argparse.Namespace) -> None:
    load = [os.getloadavg()[0]]
    print(f"client round trips: ~{args.payload_bytes} B JSON echo, {args.duration:g} s per "
          f"figure after {args.warmup:g} s warm-up, {args.rounds} rounds interleaved, "
          f"{os.cpu_count()} cores; median [min-max] of rounds", flush=True)
    with tempfile.TemporaryDirectory(prefix="iii-rx-bench-") as log_dir, \
            contextlib.ExitStack() as stack:
        _, port = start_engine(args.engine, log_dir, stack)
        url = f"ws://127.0.0.1:{port}"
        if "callers" in args.parts:
            bench_callers(args, url, log_dir, stack)
        if "workers" in args.parts:
            bench_workers(args, url, log_dir, stack)
        if "tracing" in args.parts:
            bench_tracing(args, url, log_dir, stack)
        elif "spancost" in args.parts:
            span_costs()
    load.append(os.getloadavg()[0])
    print(f"\nload average (1 min) before {load[0]:.2f}, after {load[1]:.2f}: the machine is "
          "shared; trust ratios within a run more than figures across runs")


# =========================================================================== command line


def add_otel_flags(parser: argparse.ArgumentParser) -> None:
    """The telemetry flags of the iii_rx roles (see :func:`otel_option`)."""
    parser.add_argument("--otel", action="store_true")
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument("--sample", type=float)
    parser.add_argument("--otel-engine", action="store_true",
                        help="OtelConfig(enabled=True) exporting to the engine's /otel")


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("OTEL_ENABLED", "false")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("iii_rx", "rust", "relay"), default="iii_rx")
    parser.add_argument("--part", default="callers,workers,tracing")
    parser.add_argument("--windows", default="1,64,512")
    parser.add_argument("--modes", default="async,blocking")
    parser.add_argument("--handlers", default="sync,async")
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--payload-bytes", type=int, default=64)
    roles = parser.add_subparsers(dest="role")
    for role in ("rx-caller", "sdk-caller"):
        p = roles.add_parser(role)
        p.add_argument("--url", required=True)
        p.add_argument("--mode", choices=("async", "blocking"), default="async")
        p.add_argument("--payload-bytes", type=int, default=64)
        p.add_argument("--name", default=f"bench-{role}-{uuid.uuid4().hex[:6]}")
        add_otel_flags(p)
    p = roles.add_parser("span-cost")
    p.add_argument("--no-metrics", action="store_true")
    p = roles.add_parser("rx-worker")
    add_otel_flags(p)
    p.add_argument("--url", required=True)
    p.add_argument("--function", action="append", required=True)
    p.add_argument("--handler", choices=("sync", "async"), default="sync")
    p.add_argument("--name", default=f"bench-rx-worker-{uuid.uuid4().hex[:6]}")
    args = parser.parse_args(argv)
    if args.role == "rx-caller":
        run_rx_caller(args)
    elif args.role == "sdk-caller":
        run_sdk_caller(args)
    elif args.role == "rx-worker":
        run_rx_worker(args)
    elif args.role == "span-cost":
        run_span_cost(args)
    else:
        args.parts = {p.strip() for p in args.part.split(",")}
        args.windows = [int(w) for w in args.windows.split(",")]
        args.modes = [m.strip() for m in args.modes.split(",")]
        args.handlers = [h.strip() for h in args.handlers.split(",")]
        orchestrate(args)


if __name__ == "__main__":
    main()
