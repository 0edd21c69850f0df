"""Engine throughput: invocations per second through the iii_rx engine, against its ceiling.

Caller, worker and engine each run in a process of their own. Scenarios (all in one run):

  (a) raw-frame caller -> iii_rx engine -> raw-frame echo worker
  (b) the same raw peers through a bare relay that only routes (the ceiling of any engine)
  (c) official iii-sdk caller -> iii_rx engine -> official iii-sdk worker (context)
  (d) raw peers through the real Rust iii engine, when ~/.cache/iii-engine/iii is built
  (e) many peers: 100 raw-frame workers (hosted by 4 processes) and 8 caller processes with 64
      calls each in flight (512 in all) on random functions, through the iii_rx engine and,
      on the same load, the Rust engine

Each scenario is measured sequentially (one call in flight) and with a window of calls in
flight (64 by default); the rounds are interleaved across scenarios so that load from other
processes on the machine spreads over all of them. Figures are the median of the rounds with
the range beside it. The target is a/b >= 0.7.

    python benchmarks/engine_throughput.py [--duration 1.0] [--rounds 3] [--scenarios a,b,c,d,e]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The ``X as X`` imports are re-exports: other benchmarks import them from here; their home
# is _common.
from _common import CLOCK_TICKS as CLOCK_TICKS
from _common import (
    RUST_BINARY,
    RUST_LAUNCHER,
    Peer,
    median,
    rawpeer_argv,
    rust_available,
    spread,
    start_engine,
    start_peer,
)
from _common import engine_argv as engine_argv
from _common import free_port as free_port
from _common import wait_for_port as wait_for_port

FUNCTION = "bench::echo"
ROLES = ("engine", "worker", "caller")
LOADPEERS = str(Path(__file__).resolve().parent / "loadpeers.py")


@dataclass
class Scenario:
    key: str
    label: str
    engine: str  # "iii_rx" | "relay" | "rust"
    peers: str  # "raw" | "sdk"
    results: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    caller: Peer | None = None
    procs: dict[str, Peer] = field(default_factory=dict)  # "engine", "worker", "caller"
    failure: str | None = None


SCENARIOS = [
    Scenario("a", "raw -> iii_rx engine -> raw", "iii_rx", "raw"),
    Scenario("b", "raw -> bare relay -> raw (ceiling)", "relay", "raw"),
    Scenario("c", "iii-sdk -> iii_rx engine -> iii-sdk", "iii_rx", "sdk"),
    Scenario("d", "raw -> Rust iii engine -> raw", "rust", "raw"),
]


def start(
    sc: Scenario, args: argparse.Namespace, log_dir: str, stack: contextlib.ExitStack
) -> None:
    """Engine, then worker, then a caller in control mode that answers one command a figure."""
    engine, port = start_engine(sc.engine, log_dir, stack, name=f"{sc.key}-engine-{sc.engine}")
    url = f"ws://127.0.0.1:{port}"
    raw = sc.peers == "raw"
    worker_role, caller_role = ("worker", "caller") if raw else ("sdk-worker", "sdk-caller")
    worker_argv = rawpeer_argv(worker_role, url, FUNCTION, "--name", f"bench-{sc.key}-worker")
    if sc.peers == "sdk":
        worker_argv += ["--handler", args.sdk_handler]
    worker = start_peer(f"{sc.key}-{worker_role}", worker_argv, log_dir, stack)
    caller_argv = rawpeer_argv(caller_role, url, FUNCTION, "--name", f"bench-{sc.key}-caller",
                               "--payload-bytes", str(args.payload_bytes))
    caller = start_peer(f"{sc.key}-{caller_role}", caller_argv, log_dir, stack)
    sc.caller = caller
    sc.procs = {"engine": engine, "worker": worker, "caller": caller}


def measure(sc: Scenario, window: int, args: argparse.Namespace) -> None:
    """One figure: a warm-up run, then the measured run with the CPU each process spent."""
    assert sc.caller is not None
    if args.warmup > 0:
        sc.caller.send({"window": window, "duration": args.warmup})
        sc.caller.read_json(timeout=args.warmup + 60)
    before = {role: peer.cpu_seconds() for role, peer in sc.procs.items()}
    sc.caller.send({"window": window, "duration": args.duration})
    result = sc.caller.read_json(timeout=args.duration + 60)
    for role, peer in sc.procs.items():
        start, end = before[role], peer.cpu_seconds()
        if start is not None and end is not None and result["calls"]:
            result[f"cpu_us_{role}"] = (end - start) / result["calls"] * 1e6
    sc.results.setdefault(window, []).append(result)


# --------------------------------------------------------------------------- (e) many peers


@dataclass
class ManyPeers:
    """Scenario (e) on one engine: worker hosts, callers, and each round's figures."""

    engine_kind: str  # "iii_rx" | "rust"
    engine: Peer | None = None
    callers: list[Peer] = field(default_factory=list)
    results: list[dict[str, float]] = field(default_factory=list)
    failure: str | None = None


def start_many(many: ManyPeers, args: argparse.Namespace, log_dir: str,
               stack: contextlib.ExitStack) -> None:
    """The engine, ``--many-workers`` workers in 4 host processes, then the callers."""
    engine, port = start_engine(many.engine_kind, log_dir, stack,
                                name=f"e-engine-{many.engine_kind}")
    url = f"ws://127.0.0.1:{port}"
    layout = ["--workers", str(args.many_workers), "--functions", str(args.many_functions)]
    if many.engine_kind == "rust":  # it does not answer engine::workers::register
        layout.append("--void-register")
    hosts, per = 4, -(-args.many_workers // 4)
    for h in range(hosts):
        count = min(per, args.many_workers - h * per)
        if count > 0:
            start_peer(f"e-{many.engine_kind}-workers-{h}", [
                sys.executable, LOADPEERS, "workers", "--url", url, "--count", str(count),
                "--first", str(h * per), "--functions", str(args.many_functions),
                *layout[4:]],
                log_dir, stack, timeout=300)
    many.engine = engine
    many.callers = [start_peer(f"e-{many.engine_kind}-caller-{c}",
                               [sys.executable, LOADPEERS, "caller", "--url", url, *layout],
                               log_dir, stack, timeout=120)
                    for c in range(args.many_callers)]


def measure_many(many: ManyPeers, args: argparse.Namespace) -> None:
    """One round: every caller makes ``--many-calls`` / callers calls, 64 in flight each."""
    assert many.engine is not None
    share = max(1, args.many_calls // len(many.callers))
    for caller in many.callers:  # warm-up
        caller.send({"calls": max(1, share // 10), "window": args.window})
    for caller in many.callers:
        caller.read_json(timeout=300)
    before = many.engine.cpu_seconds()
    began = time.perf_counter()
    for caller in many.callers:
        caller.send({"calls": share, "window": args.window})
    runs = [caller.read_json(timeout=600) for caller in many.callers]
    wall = time.perf_counter() - began
    after = many.engine.cpu_seconds()
    calls = sum(r["calls"] for r in runs)
    many.results.append({
        "rate": calls / wall, "p99_ms": max(r["p99_ms"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs), "lost": sum(r["lost"] for r in runs),
        "cpu_us_engine": ((after - before) / calls * 1e6
                          if before is not None and after is not None and calls else
                          float("nan"))})


def report_many(manies: list[ManyPeers], args: argparse.Namespace) -> None:
    print()
    print(f"(e) many peers: {args.many_workers} raw-frame workers x {args.many_functions} "
          f"functions (4 host processes), {args.many_callers} caller processes x "
          f"{args.window} in flight ({args.many_callers * args.window} in all), "
          f"{args.many_calls:,} calls a round on random functions; p50 = median of the "
          "callers', p99 = worst caller's")
    print(f"{'engine':<12}{'inv/s':>28}{'p50 ms':>10}{'p99 ms':>10}{'engine CPU us/call':>28}")
    for many in manies:
        if many.failure or not many.results:
            print(f"{many.engine_kind:<12}  not measured: {many.failure}")
            continue
        rs = many.results
        errors, lost = sum(r["errors"] for r in rs), sum(r["lost"] for r in rs)
        note = f"  ({errors:.0f} calls failed, {lost:.0f} never answered)" if errors or lost \
            else ""
        print(f"{many.engine_kind:<12}{spread([r['rate'] for r in rs], ',.0f'):>28}"
              f"{median([r['p50_ms'] for r in rs]):>10.1f}"
              f"{median([r['p99_ms'] for r in rs]):>10.1f}"
              f"{spread([r['cpu_us_engine'] for r in rs], '.1f'):>28}{note}")
    ours = next((m for m in manies if m.engine_kind == "iii_rx" and m.results), None)
    rust = next((m for m in manies if m.engine_kind == "rust" and m.results), None)
    if ours and rust:
        pairs = list(zip(ours.results, rust.results, strict=False))
        print(f"ratio iii_rx/Rust (per round): throughput "
              f"{spread([o['rate'] / r['rate'] for o, r in pairs], '.2f')}, engine CPU per call "
              f"{spread([o['cpu_us_engine'] / r['cpu_us_engine'] for o, r in pairs], '.2f')}")


# --------------------------------------------------------------------------- report


def row(sc: Scenario, window: int) -> str:
    runs = sc.results.get(window, [])
    rate = spread([r["rate"] for r in runs], ",.0f")
    p50 = median([r["p50_ms"] for r in runs])
    p99 = median([r["p99_ms"] for r in runs])
    return f"{rate:>26}  {p50:6.2f} / {p99:6.2f}"


def ratios(top: Scenario, bottom: Scenario, window: int) -> list[float]:
    """Per-round ratios (rounds are interleaved, so each pair saw the same load)."""
    a, b = top.results.get(window, []), bottom.results.get(window, [])
    return [x["rate"] / y["rate"] for x, y in zip(a, b, strict=False) if y["rate"] > 0]


def report(scenarios: list[Scenario], args: argparse.Namespace, load: list[float]) -> None:
    by_key = {sc.key: sc for sc in scenarios}
    windows = (1, args.window)
    print()
    print(
        f"engine throughput: sync calls of {FUNCTION} (JSON echo, ~{args.payload_bytes} B payload),"
        f" {args.duration:g} s per figure after {args.warmup:g} s warm-up, {args.rounds} rounds"
        f" interleaved; median [min-max] of rounds; latency in ms = median of rounds' p50 / p99"
    )
    print(f"official SDK worker handler: {args.sdk_handler}; {os.cpu_count()} cores")
    head = f"{'scenario':<44}"
    for w in windows:
        title = "sequential" if w == 1 else f"{w} in flight"
        head += f"{title + ' inv/s':>26}  {'p50 / p99 ms':>15}"
    print(head)
    for sc in scenarios:
        line = f"({sc.key}) {sc.label:<40}"
        if sc.failure:
            print(line + f"  not measured: {sc.failure}")
            continue
        for w in windows:
            line += row(sc, w)
        runs = [r for w in windows for r in sc.results.get(w, [])]
        errors, lost = sum(r["errors"] for r in runs), sum(r.get("lost", 0) for r in runs)
        if errors or lost:
            line += f"  ({errors} calls failed, {lost} results never came back)"
        print(line)
    print()
    w = args.window
    print(f"CPU per call at {w} in flight, microseconds (median of rounds; what limits the rate)")
    print(f"{'scenario':<44}" + "".join(f"{role:>10}" for role in ROLES))
    for sc in scenarios:
        runs = sc.results.get(w, [])
        if sc.failure or not runs:
            continue
        cells = []
        for role in ROLES:
            values = [r[f"cpu_us_{role}"] for r in runs if f"cpu_us_{role}" in r]
            cells.append(f"{statistics.median(values):10.1f}" if values else f"{'-':>10}")
        print(f"({sc.key}) {sc.label:<40}" + "".join(cells))
    print()
    pairs = [("a", "b", "engine / ceiling, target >= 0.7"), ("c", "a", "official SDK peers / raw")]
    pairs.append(("a", "d", "iii_rx engine / Rust engine"))
    for top, bottom, meaning in pairs:
        if top not in by_key or bottom not in by_key:
            continue
        t, b = by_key[top], by_key[bottom]
        if t.failure or b.failure:
            continue
        parts = [
            f"{'sequential' if w == 1 else f'{w} in flight'} {spread(ratios(t, b, w), '.2f')}"
            for w in windows
        ]
        print(f"ratio {top}/{bottom} ({meaning}): " + ", ".join(parts))
    a, b = by_key.get("a"), by_key.get("b")
    if a and b and not (a.failure or b.failure):
        costs = [
            y["cpu_us_engine"] / x["cpu_us_engine"]
            for x, y in zip(a.results.get(w, []), b.results.get(w, []), strict=False)
            if x.get("cpu_us_engine") and y.get("cpu_us_engine")
        ]
        print(
            f"engine CPU per call, relay/iii_rx at {w} in flight: {spread(costs, '.2f')}"
            " (the a/b ratio the engine would reach if it, not the peers, set the pace)"
        )
    d = by_key.get("d")
    if a and d and not (a.failure or d.failure):
        costs = [
            x["cpu_us_engine"] / y["cpu_us_engine"]
            for x, y in zip(a.results.get(w, []), d.results.get(w, []), strict=False)
            if x.get("cpu_us_engine") and y.get("cpu_us_engine")
        ]
        print(f"engine CPU per call, iii_rx/Rust at {w} in flight: {spread(costs, '.2f')}"
              " (per round; <= 1 means ours costs no more than the Rust engine)")
    print(
        f"load average (1 min) before {load[0]:.2f}, after {load[1]:.2f}: the machine is shared;"
        " ranges show the noise"
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per figure")
    parser.add_argument("--warmup", type=float, default=0.3, help="seconds before each figure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=64, help="calls in flight")
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--scenarios", default="a,b,c,d,e", help="comma-separated subset")
    parser.add_argument("--many-workers", type=int, default=100, help="(e): workers")
    parser.add_argument("--many-functions", type=int, default=10, help="(e): per worker")
    parser.add_argument("--many-callers", type=int, default=8, help="(e): caller processes")
    parser.add_argument("--many-calls", type=int, default=20_000, help="(e): calls a round")
    parser.add_argument("--sdk-handler", choices=("sync", "async"), default="sync")
    return parser.parse_args(argv)


def selected(args: argparse.Namespace) -> Iterator[Scenario]:
    wanted = {k.strip() for k in args.scenarios.split(",")}
    for sc in SCENARIOS:
        if sc.key not in wanted:
            continue
        if sc.engine == "rust" and not rust_available():
            sc.failure = f"Rust engine absent ({RUST_BINARY} or {RUST_LAUNCHER} missing)"
        yield sc


def many_setups(args: argparse.Namespace) -> list[ManyPeers]:
    """Scenario (e), when selected: our engine, then the Rust one (or why it is absent)."""
    if "e" not in {k.strip() for k in args.scenarios.split(",")}:
        return []
    rust = ManyPeers("rust")
    if not rust_available():
        rust.failure = f"Rust engine absent ({RUST_BINARY} or {RUST_LAUNCHER} missing)"
    return [ManyPeers("iii_rx"), rust]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = list(selected(args))
    load = [os.getloadavg()[0]]
    with (
        tempfile.TemporaryDirectory(prefix="iii-bench-") as log_dir,
        contextlib.ExitStack() as stack,
    ):
        for sc in scenarios:
            if sc.failure:
                continue
            try:
                start(sc, args, log_dir, stack)
            except (RuntimeError, TimeoutError) as exc:
                sc.failure = f"could not start: {exc}"
            print(f"({sc.key}) {'ready' if not sc.failure else sc.failure}", flush=True)
        manies = many_setups(args)
        for many in manies:
            if many.failure:
                continue
            try:
                start_many(many, args, log_dir, stack)
            except (RuntimeError, TimeoutError) as exc:
                many.failure = f"could not start: {exc}"
            print(f"(e) {many.engine_kind}: {'ready' if not many.failure else many.failure}",
                  flush=True)
        live = [sc for sc in scenarios if not sc.failure]
        for round_no in range(args.rounds):
            for many in manies[round_no % 2:] + manies[:round_no % 2]:
                if many.failure:
                    continue
                try:
                    measure_many(many, args)
                except (RuntimeError, TimeoutError) as exc:
                    many.failure = f"failed in round {round_no + 1}: {exc}"
            shift = round_no % max(1, len(live))
            for sc in live[shift:] + live[:shift]:
                if sc.failure:
                    continue
                try:
                    for window in (1, args.window):
                        measure(sc, window, args)
                except (RuntimeError, TimeoutError) as exc:
                    sc.failure = f"failed in round {round_no + 1}: {exc}"
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)
        load.append(os.getloadavg()[0])
    report(scenarios, args, load)
    if manies:
        report_many(manies, args)
    failed = any(sc.failure and sc.engine != "rust" for sc in scenarios)
    return 1 if failed or any(m.failure and m.engine_kind != "rust" for m in manies) else 0


if __name__ == "__main__":
    sys.exit(main())
