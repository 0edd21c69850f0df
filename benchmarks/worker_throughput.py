"""Worker throughput: iii_rx as a worker against the official iii-sdk 0.25 as a worker.

One role at a time (see benchmarks/README.md): a raw-frame caller (``rawpeers.py caller``, never the
bottleneck) calls an echo function through the embedded iii_rx engine, and only the worker
changes. Contenders, each in its own process, all in one run:

* iii_rx worker, async handler (``async def h(data): return data``, a task on the loop)
* iii_rx worker, sync handler (``def h(data): return data``, in the client's thread pool)
* official ``iii-sdk`` worker, async handler / sync handler (``rawpeers.py sdk-worker``)
* the raw-frame echo worker (``rawpeers.py worker``): the ceiling this engine and caller allow

Each is measured sequentially and with 64 calls in flight; rounds are interleaved (the order
rotates) so that load from elsewhere hits every contender. Printed: median [min-max] of the
rounds, p50/p99 latency, the CPU each process spent per call, and per-round ratios
iii_rx / official for each handler kind. Target: as a worker, iii_rx >= 3x.

On two cores the caller, the engine and the worker share the CPU, so throughput ratios are
compressed towards 1 whatever the worker does; the **worker CPU per call** ratio (official /
iii_rx) is the ratio the worker would reach if it alone set the pace. Both are printed.

    .venv/bin/python benchmarks/worker_throughput.py              # ~45 s
    .venv/bin/python benchmarks/worker_throughput.py --rounds 5 --handlers async
    .venv/bin/python benchmarks/worker_throughput.py --profile async   # where the time goes

``--profile sync|async`` runs only the iii_rx worker: first an unprofiled figure (CPU per call of
the loop thread and of the other threads, from ``/proc``), then the same load under ``cProfile``
(the loop thread and every handler thread), and prints the top functions with their cumulative
and own time in microseconds per invocation. cProfile slows Python code about twofold, so read
the shares, and scale by the unprofiled CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import io
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    Peer,
    median,
    rawpeer_argv,
    rust_available,
    spread,
    start_engine,
    start_peer,
)
from rawpeers import emit, read_commands  # noqa: E402

SELF = str(Path(__file__).resolve())
ENGINES = {"iii_rx": "iii_rx engine", "relay": "bare relay", "rust": "Rust iii engine"}


# =========================================================================== the iii_rx worker


def _echo_handler(kind: str) -> Any:
    if kind == "async":

        async def echo_async(data: Any) -> Any:
            return data

        return echo_async

    def echo(data: Any) -> Any:
        return data

    return echo


class _ThreadProfiles:
    """cProfile in every handler thread of the client's pool (cProfile is per thread).

    The client makes its pool with ``iii_rx._pool.HandlerPool``; the benchmark worker swaps in
    a subclass whose tasks, while ``active`` is set, enable a profiler in their thread if it has
    none yet (so threads started before profiling are covered too); :meth:`stop_in_pool`
    disables them.
    """

    def __init__(self) -> None:
        self.active = False
        self.make: Any = cProfile.Profile
        self.profiles: list[cProfile.Profile] = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def wrap(self, fn: Any) -> Any:
        if not self.active:
            return fn  # unprofiled figures pay nothing for the hook

        def run(*args: Any, **kwargs: Any) -> Any:
            if self.active and getattr(self._local, "profile", None) is None:
                profile = self.make()
                self._local.profile = profile
                with self._lock:
                    self.profiles.append(profile)
                profile.enable()
            return fn(*args, **kwargs)

        return run

    def stop_in_pool(self, pool: Any) -> None:
        """Disable each thread's profiler from that thread: one task per thread, held at a
        barrier so that no thread takes two."""
        self.active = False
        threads = pool.threads
        if not threads:
            return
        barrier = threading.Barrier(threads, timeout=10)
        stopped = threading.Semaphore(0)

        def stop() -> None:
            profile = getattr(self._local, "profile", None)
            if profile is not None:
                profile.disable()
                self._local.profile = None
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
            stopped.release()

        for _ in range(threads):
            pool.submit(stop)
        for _ in range(threads):
            if not stopped.acquire(timeout=15):
                raise TimeoutError("a handler thread did not stop its profiler")


def run_rx_worker(args: argparse.Namespace) -> None:
    """An iii_rx worker: ``register_function(id, echo)``; control commands on stdin.

    ``{"profile": "start"}`` starts cProfile on the loop thread and in the handler threads;
    ``{"profile": "stop", "path": P}`` writes the merged statistics to ``P``.
    """
    import iii_rx
    import iii_rx.client as client_module
    from iii_rx._pool import HandlerPool

    threads = _ThreadProfiles()

    class ProfiledPool(HandlerPool):
        def submit(self, fn: Any, *a: Any) -> None:
            super().submit(threads.wrap(fn), *a)

    if args.profilable:
        setattr(client_module, "HandlerPool", ProfiledPool)  # noqa: B010

    async def main() -> None:
        async with iii_rx.connect(args.url, name=args.name, max_workers=args.max_workers) as iii:
            for function_id in args.function:
                iii.register_function(function_id, _echo_handler(args.handler))
            emit({"ready": True, "role": "rx-worker", "handler": args.handler,
                  "pid": os.getpid(), "loop_thread": threading.get_native_id()})
            main_profile = cProfile.Profile()

            async def command(cmd: dict[str, Any]) -> None:
                nonlocal main_profile
                if cmd.get("profile") == "start":
                    # CPU time of the thread by default: waiting in select() or queue.get()
                    # and being preempted by the engine or the caller cost nothing then.
                    if cmd.get("clock", "cpu") == "cpu":
                        threads.make = functools.partial(cProfile.Profile, time.thread_time)
                    main_profile = threads.make()
                    threads.active = True
                    main_profile.enable()
                    emit({"profiling": True})
                elif cmd.get("profile") == "stop":
                    main_profile.disable()
                    pool = iii._pool
                    if pool is not None:
                        await asyncio.to_thread(threads.stop_in_pool, pool)
                    stats = pstats.Stats(main_profile)
                    for profile in threads.profiles:
                        stats.add(profile)
                    stats.dump_stats(str(cmd["path"]))
                    emit({"profiling": False, "handler_threads": len(threads.profiles)})

            await read_commands(command)

    asyncio.run(main())


# =========================================================================== orchestration


@dataclass
class Contender:
    key: str
    label: str
    impl: str  # "rx" | "sdk" | "raw"
    handler: str  # "async" | "sync" | "-"
    function_id: str = ""
    worker: Peer | None = None
    caller: Peer | None = None
    ready: dict[str, Any] = field(default_factory=dict)  # the worker's ready line
    results: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    failure: str | None = None


def contenders(handlers: list[str], ceiling: bool) -> list[Contender]:
    out: list[Contender] = []
    for handler in handlers:
        out.append(Contender(f"rx-{handler}", f"iii_rx, {handler} handler", "rx", handler))
        out.append(Contender(f"sdk-{handler}", f"official iii-sdk, {handler} handler", "sdk",
                             handler))
    if ceiling:
        out.append(Contender("raw", "raw-frame worker (ceiling)", "raw", "-"))
    return out


def worker_argv(c: Contender, url: str, *, profilable: bool = False,
                max_workers: int | None = None) -> list[str]:
    name = f"bench-{c.key}-{uuid.uuid4().hex[:6]}"
    if c.impl == "rx":
        argv = [sys.executable, SELF, "rx-worker", "--url", url, "--function", c.function_id,
                "--handler", c.handler, "--name", name]
        if max_workers:
            argv += ["--max-workers", str(max_workers)]
        return [*argv, "--profilable"] if profilable else argv
    if c.impl == "sdk":
        return rawpeer_argv("sdk-worker", url, c.function_id, "--name", name,
                            "--handler", c.handler)
    return rawpeer_argv("worker", url, c.function_id, "--name", name)


def start_contender(c: Contender, url: str, args: argparse.Namespace, log_dir: str,
                    stack: contextlib.ExitStack, *, profilable: bool = False) -> None:
    """The worker (its ready line kept), then its raw caller, ready once the function answers."""
    c.function_id = f"bench::{c.key.replace('-', '_')}"
    argv = worker_argv(c, url, profilable=profilable, max_workers=args.max_workers)
    c.worker = Peer(f"{c.key}-worker", argv, log_dir,
                    stop_grace=0.0 if c.impl == "raw" else 2.0)
    stack.callback(c.worker.stop)
    c.ready = c.worker.read_json(timeout=90)
    c.caller = start_peer(f"{c.key}-caller", rawpeer_argv(
        "caller", url, c.function_id, "--payload-bytes", str(args.payload_bytes),
        "--name", f"bench-caller-{c.key}-{uuid.uuid4().hex[:6]}"), log_dir, stack)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of `pid` so far (nanosecond schedstat; empty off Linux)."""
    out: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    out[int(tid)] = int(f.read().split()[0]) / 1e9
    return out


def measure(c: Contender, engine: Peer, window: int, duration: float, warmup: float,
            loop_thread: int | None = None) -> dict[str, Any]:
    """One figure: a warm-up, then the measured run with each process's CPU per call."""
    assert c.caller is not None and c.worker is not None
    if warmup > 0:
        c.caller.send({"window": window, "duration": warmup})
        c.caller.read_json(timeout=warmup + 60)
    procs = {"worker": c.worker, "engine": engine, "caller": c.caller}
    before = {role: p.cpu_seconds() for role, p in procs.items()}
    threads_before = thread_cpu(c.worker.proc.pid) if loop_thread else {}
    c.caller.send({"window": window, "duration": duration})
    result = c.caller.read_json(timeout=duration + 60)
    calls = result["calls"]
    for role, p in procs.items():
        start, end = before[role], p.cpu_seconds()
        if start is not None and end is not None and calls:
            result[f"cpu_us_{role}"] = (end - start) / calls * 1e6
    if loop_thread and calls:
        after = thread_cpu(c.worker.proc.pid)
        spent = {tid: after[tid] - threads_before.get(tid, 0.0) for tid in after}
        result["cpu_us_loop_thread"] = spent.get(loop_thread, 0.0) / calls * 1e6
        result["cpu_us_other_threads"] = sum(
            v for tid, v in spent.items() if tid != loop_thread) / calls * 1e6
    return result


def flight(window: int) -> str:
    return "sequential" if window == 1 else f"{window} in flight"


def report(cs: list[Contender], args: argparse.Namespace, load: list[float]) -> None:
    windows = (1, args.window)
    print()
    print(f"WORKER throughput: raw-frame caller -> {ENGINES[args.engine]} -> worker under test; "
          f"~{args.payload_bytes} B JSON echo; {args.duration:g} s per figure after "
          f"{args.warmup:g} s warm-up; {args.rounds} rounds interleaved; {os.cpu_count()} cores")
    print("median [min-max] of rounds; p50/p99 ms = median of rounds; cpu = worker CPU "
          "microseconds per call")
    head = f"{'worker':<40}"
    for w in windows:
        head += f"{flight(w) + ' inv/s':>24} {'p50/p99 ms':>13} {'cpu':>6}"
    print(head)
    for c in cs:
        line = f"{c.label:<40}"
        if c.failure:
            print(line + f"  not measured: {c.failure}")
            continue
        for w in windows:
            runs = c.results.get(w, [])
            p50, p99 = median([r["p50_ms"] for r in runs]), median([r["p99_ms"] for r in runs])
            cpu = median([r.get("cpu_us_worker", float("nan")) for r in runs])
            line += (f"{spread([r['rate'] for r in runs], ',.0f'):>24} "
                     f"{p50:6.2f}/{p99:<6.2f} {cpu:6.1f}")
        runs = [r for w in windows for r in c.results.get(w, [])]
        errors, lost = sum(r["errors"] for r in runs), sum(r.get("lost", 0) for r in runs)
        if errors or lost:
            line += f"  ({errors} calls failed, {lost} results never came back)"
        print(line)
    w = args.window
    print()
    print(f"CPU per call at {w} in flight, microseconds, median of rounds (who sets the pace: "
          "the three processes share 2 cores)")
    print(f"{'worker':<40}{'worker':>9}{'engine':>9}{'caller':>9}{'sum':>9}")
    for c in cs:
        runs = c.results.get(w, [])
        if c.failure or not runs:
            continue
        cells = [median([r[f"cpu_us_{role}"] for r in runs if f"cpu_us_{role}" in r])
                 for role in ("worker", "engine", "caller")]
        print(f"{c.label:<40}" + "".join(f"{v:9.1f}" for v in cells) + f"{sum(cells):9.1f}")
    print()
    by_key = {c.key: c for c in cs}
    print("RATIOS iii_rx / official iii-sdk, per round (each pair saw the same load), "
          "median [min-max]; target >= 3x")
    for handler in args.handlers:
        rx, sdk = by_key.get(f"rx-{handler}"), by_key.get(f"sdk-{handler}")
        if rx is None or sdk is None or rx.failure or sdk.failure:
            continue
        parts = []
        for win in windows:
            a, b = rx.results.get(win, []), sdk.results.get(win, [])
            rates = [x["rate"] / y["rate"] for x, y in zip(a, b, strict=False) if y["rate"]]
            parts.append(f"{flight(win)} {spread(rates, '.2f')}")
        a, b = rx.results.get(w, []), sdk.results.get(w, [])
        costs = [y["cpu_us_worker"] / x["cpu_us_worker"] for x, y in zip(a, b, strict=False)
                 if x.get("cpu_us_worker") and y.get("cpu_us_worker")]
        print(f"  {handler} handler: throughput {', '.join(parts)}; "
              f"worker CPU per call official/iii_rx at {w} in flight {spread(costs, '.2f')}")
    raw = by_key.get("raw")
    if raw is not None and not raw.failure:
        for handler in args.handlers:
            rx = by_key.get(f"rx-{handler}")
            if rx is None or rx.failure:
                continue
            a, b = rx.results.get(w, []), raw.results.get(w, [])
            rates = [x["rate"] / y["rate"] for x, y in zip(a, b, strict=False) if y["rate"]]
            print(f"  iii_rx {handler} handler / raw-frame worker at {w} in flight: "
                  f"{spread(rates, '.2f')} (how close to the ceiling of this engine and caller)")
        for handler in args.handlers:
            sdk = by_key.get(f"sdk-{handler}")
            if sdk is None or sdk.failure:
                continue
            a, b = raw.results.get(w, []), sdk.results.get(w, [])
            rates = [x["rate"] / y["rate"] for x, y in zip(a, b, strict=False) if y["rate"]]
            print(f"  raw-frame worker / official {handler} handler at {w} in flight: "
                  f"{spread(rates, '.2f')} (the most any worker could show here)")
    print(f"load average (1 min) before {load[0]:.2f}, after {load[1]:.2f}: the machine is "
          "shared; trust per-round ratios more than absolute figures")


def run_bench(args: argparse.Namespace) -> int:
    cs = contenders(args.handlers, not args.no_ceiling)
    load = [os.getloadavg()[0]]
    if args.engine == "rust" and not rust_available():
        print("the Rust engine is not built (~/.cache/iii-engine/iii);"
              " see docs/howto/real-engine.md")
        return 1
    with tempfile.TemporaryDirectory(prefix="iii-worker-bench-") as log_dir, \
            contextlib.ExitStack() as stack:
        engine, port = start_engine(args.engine, log_dir, stack)
        url = f"ws://127.0.0.1:{port}"
        for c in cs:
            try:
                start_contender(c, url, args, log_dir, stack)
            except (RuntimeError, TimeoutError) as exc:
                c.failure = f"could not start: {exc}"
            print(f"{c.label}: {'ready' if not c.failure else c.failure}", flush=True)
        live = [c for c in cs if not c.failure]
        for round_no in range(args.rounds):
            shift = round_no % max(1, len(live))
            for c in live[shift:] + live[:shift]:
                if c.failure:
                    continue
                try:
                    for window in (1, args.window):
                        c.results.setdefault(window, []).append(
                            measure(c, engine, window, args.duration, args.warmup))
                except (RuntimeError, TimeoutError) as exc:
                    c.failure = f"failed in round {round_no + 1}: {exc}"
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)
        load.append(os.getloadavg()[0])
    report(cs, args, load)
    return 1 if any(c.failure for c in cs) else 0


# =========================================================================== profile mode


def run_profile(args: argparse.Namespace) -> int:
    if args.engine == "rust" and not rust_available():
        print("the Rust engine is not built (~/.cache/iii-engine/iii);"
              " see docs/howto/real-engine.md")
        return 1
    c = Contender(f"rx-{args.profile}", f"iii_rx, {args.profile} handler", "rx", args.profile)
    with tempfile.TemporaryDirectory(prefix="iii-worker-profile-") as log_dir, \
            contextlib.ExitStack() as stack:
        engine, port = start_engine(args.engine, log_dir, stack)
        start_contender(c, f"ws://127.0.0.1:{port}", args, log_dir, stack, profilable=True)
        assert c.worker is not None
        plain = measure(c, engine, args.window, args.profile_seconds, args.warmup,
                        loop_thread=int(c.ready["loop_thread"]))
        c.worker.send({"profile": "start", "clock": args.profile_clock})
        c.worker.read_json(timeout=30)
        profiled = measure(c, engine, args.window, args.profile_seconds, 0.0)
        path = os.path.join(log_dir, "worker.prof")
        c.worker.send({"profile": "stop", "path": path})
        done = c.worker.read_json(timeout=60)
        text = _profile_table(path, profiled["calls"], plain["cpu_us_worker"], args.top)
        if args.profile_out:
            shutil.copyfile(path, args.profile_out)
    print()
    print(f"PROFILE of the iii_rx worker, {args.profile} handler, {args.window} in flight, "
          f"~{args.payload_bytes} B JSON echo, raw-frame caller through the "
          f"{ENGINES[args.engine]}")
    print(f"unprofiled: {plain['rate']:,.0f} inv/s, worker CPU {plain['cpu_us_worker']:.1f} us "
          f"per call (loop thread {plain['cpu_us_loop_thread']:.1f}, other threads "
          f"{plain['cpu_us_other_threads']:.1f}); engine {plain['cpu_us_engine']:.1f}, caller "
          f"{plain['cpu_us_caller']:.1f}")
    print(f"profiled:   {profiled['rate']:,.0f} inv/s, worker CPU {profiled['cpu_us_worker']:.1f}"
          f" us per call; {profiled['calls']:,} calls; handler threads profiled: "
          f"{done.get('handler_threads', 0)}")
    print(text)
    return 0


def _profile_table(path: str, calls: int, real_us: float, top: int) -> str:
    """Top functions by cumulative and by own time, per invocation.

    cProfile's own overhead inflates every figure; the share of the profiled total is steadier,
    so each row also gives that share applied to the unprofiled CPU per call (``est us``).
    """
    stats = pstats.Stats(path)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = [(cumulative, own, ncalls, _where(filename, line, name))
            for (filename, line, name), (_cc, ncalls, own, cumulative, _callers) in raw.items()]
    total = sum(r[1] for r in rows) or 1.0
    n = max(1, calls)
    out = io.StringIO()
    out.write(f"profiled total {total / n * 1e6:.1f} us per invocation = 100%; est = share x "
              f"{real_us:.1f} us (unprofiled)\n")
    head = (f"{'cumul %':>8} {'est us':>7} {'own %':>6} {'est us':>7} {'prof us':>8} "
            f"{'calls':>6}  function (cumulative includes callees, own does not)\n")

    def line(cumulative: float, own: float, ncalls: int, where: str) -> str:
        return (f"{cumulative / total:8.1%} {cumulative / total * real_us:7.2f} "
                f"{own / total:6.1%} {own / total * real_us:7.2f} {cumulative / n * 1e6:8.2f} "
                f"{ncalls / n:6.2f}  {where}\n")

    out.write(f"top {top} by cumulative time\n" + head)
    for row in sorted(rows, key=lambda r: r[0], reverse=True)[:top]:
        out.write(line(*row))
    out.write(f"\ntop {top} by own time\n" + head)
    for row in sorted(rows, key=lambda r: r[1], reverse=True)[:top]:
        out.write(line(*row))
    out.write("\nown time by component (a builtin's time goes to the component that called it, "
              "except pydantic-core and system calls)\n")
    groups = _by_component(raw)
    for group, own in sorted(groups.items(), key=lambda g: g[1], reverse=True):
        out.write(f"{own / total:8.1%} {own / total * real_us:7.2f} us  {group}\n")
    return out.getvalue()


def _component(filename: str, name: str) -> str:
    if filename == "~":
        if "pydantic_core" in name:
            return "pydantic-core (validate / serialize)"
        if any(k in name for k in ("socket", "select", "poll", "posix.", "os.")):
            return "system calls (socket, select, urandom)"
        return ""  # attributed to the caller
    parts = Path(filename).parts
    if "iii_rx" in parts:
        return str(Path(*parts[parts.index("iii_rx"):]))
    for anchor, group in (("websockets", "websockets"), ("asyncio", "asyncio"),
                          ("concurrent", "thread pool (concurrent.futures, threading, queue)"),
                          ("pydantic", "pydantic (Python side)"),
                          ("reactivex", "reactivex")):
        if anchor in parts:
            return group
    if Path(filename).name in ("threading.py", "queue.py"):
        return "thread pool (concurrent.futures, threading, queue)"
    if Path(filename).name in ("worker_throughput.py", "inspect.py", "contextlib.py"):
        return "other: " + Path(filename).name
    return "other: " + Path(filename).name


def _by_component(raw: dict[Any, Any]) -> dict[str, float]:
    groups: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, own, _cum, callers) in raw.items():
        group = _component(filename, name)
        if group:
            groups[group] = groups.get(group, 0.0) + own
            continue
        for (cfile, _cline, cname), caller_stats in callers.items():
            into = _component(cfile, cname) or "builtins called from builtins"
            groups[into] = groups.get(into, 0.0) + caller_stats[2]
    return groups


def _where(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name
    parts = Path(filename).parts
    for anchor in ("iii_rx", "websockets", "asyncio", "concurrent", "pydantic", "reactivex"):
        if anchor in parts:
            filename = str(Path(*parts[parts.index(anchor):]))
            break
    else:
        filename = Path(filename).name
    return f"{filename}:{line}({name})"


# =========================================================================== command line


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OTEL_ENABLED", "false")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per figure")
    parser.add_argument("--warmup", type=float, default=0.3, help="seconds before each figure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=64, help="calls in flight")
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--handlers", default="async,sync", help="async,sync or one of them")
    parser.add_argument("--engine", choices=tuple(ENGINES), default="iii_rx",
                        help="what routes the calls (relay/rust: to see what the engine costs)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the raw-frame worker")
    parser.add_argument("--max-workers", type=int,
                        help="iii_rx sync handler threads (default: the client's, 64)")
    parser.add_argument("--profile", choices=("async", "sync"),
                        help="profile the iii_rx worker with this handler kind instead")
    parser.add_argument("--profile-seconds", type=float, default=3.0)
    parser.add_argument("--top", type=int, default=30, help="rows of the profile table")
    parser.add_argument("--profile-out", help="also keep the cProfile statistics in this file")
    parser.add_argument("--profile-clock", choices=("cpu", "wall"), default="cpu",
                        help="cProfile timer: thread CPU time (default) or wall clock")
    roles = parser.add_subparsers(dest="role")
    p = roles.add_parser("rx-worker", help="the iii_rx worker under test (a subprocess)")
    p.add_argument("--url", required=True)
    p.add_argument("--function", action="append", required=True)
    p.add_argument("--handler", choices=("sync", "async"), default="async")
    p.add_argument("--name", default=f"bench-rx-worker-{uuid.uuid4().hex[:6]}")
    p.add_argument("--profilable", action="store_true", help="accept profile commands")
    p.add_argument("--max-workers", type=int, help="threads for sync handlers (client default)")
    args = parser.parse_args(argv)
    if args.role == "rx-worker":
        with contextlib.suppress(KeyboardInterrupt):
            run_rx_worker(args)
        return 0
    args.handlers = [h.strip() for h in args.handlers.split(",") if h.strip()]
    if args.profile:
        return run_profile(args)
    started = time.monotonic()
    code = run_bench(args)
    print(f"({time.monotonic() - started:.0f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
