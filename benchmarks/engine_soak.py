"""Engine soak: a steady call rate for a long time, memory over time, then the same with faults.

Issue 12, "Load and soak". Two phases, each on a fresh iii_rx engine with its default bounds:

- ``steady``: raw-frame echo workers and paced callers (``--rate`` calls/s in all, open loop);
- ``faults``: the same, plus misbehaving peers beside it: a worker that stops reading its
  calls (fed 50 calls/s of 16 KiB), a caller that stops reading its results (it makes 50
  calls/s of 16 KiB), a channel writer with no reader, and slow-loris sockets (handshakes and
  frames dribbled a byte a second, pings never answered). Each comes back once the engine
  drops it.

Every ``--interval`` seconds it samples the RSS of the engine, callers and workers, the
engine's own accounting (calls in flight, bytes queued toward workers, channels, peers
dropped) and the callers' p50/p99 of that interval. The report gives each phase's samples,
the memory slope (MB/min, least squares over the samples after the first), and the normal
callers' p99 with and without the faults.

    python benchmarks/engine_soak.py [--duration 600] [--rate 400] [--phases steady,faults]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Peer, cpu_seconds, start_peer
from engine_load import peer_argv, start_engine, stats
from loadpeers import rss_mb


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute (NaN under 3 points)."""
    if len(points) < 3:
        return float("nan")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def run_phase(name: str, args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    layout = ["--prefix", "soak::w", "--workers", str(args.workers),
              "--functions", str(args.functions)]
    samples: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        engine, url = start_engine(log_dir, stack)
        workers = start_peer(f"{name}-workers", peer_argv(
            "workers", "--url", url, "--prefix", "soak::w", "--count", str(args.workers),
            "--functions", str(args.functions)), log_dir, stack, timeout=300)
        callers = [start_peer(f"{name}-caller-{c}", peer_argv("paced", "--url", url, *layout),
                              log_dir, stack, timeout=120) for c in range(args.callers)]
        adversaries: dict[str, Peer] = {}
        if name == "faults":
            adversaries["stuck"] = start_peer(f"{name}-stuck", peer_argv(
                "stuck", "--url", url, "--target", "soak::w0::f0"), log_dir, stack, timeout=120)
            adversaries["loris"] = start_peer(f"{name}-loris", peer_argv(
                "loris", "--url", url, "--sockets", str(args.loris_sockets)), log_dir, stack,
                timeout=120)
        began = last = time.monotonic()
        cpu = cpu_seconds(engine.proc.pid)
        for caller in callers:
            caller.send({"rate": args.rate / args.callers, "duration": args.duration,
                         "interval": args.interval})
        finals: dict[int, dict[str, Any]] = {}
        while len(finals) < len(callers):
            lines = []
            for index, caller in enumerate(callers):
                if index in finals:
                    continue
                line = caller.read_json(timeout=args.interval + 60)
                if line.get("final"):
                    finals[index] = line
                else:
                    lines.append(line)
            if not lines:
                break
            now, cpu_now = time.monotonic(), cpu_seconds(engine.proc.pid)
            busy = float("nan")  # the engine's CPU use over the interval, in cores
            if cpu is not None and cpu_now is not None:
                busy = (cpu_now - cpu) / (now - last)
            last, cpu = now, cpu_now
            sample: dict[str, Any] = {
                "t": now - began, "engine": stats(engine), "engine_cpu": busy,
                "caller_rss": max(line["rss_mb"] for line in lines),
                "worker_rss": rss_mb(workers.proc.pid),
                "calls": sum(line["calls"] for line in lines),
                "errors": sum(line["errors"] for line in lines),
                "skipped": sum(line["skipped"] for line in lines),
                "p50_ms": max(line["p50_ms"] for line in lines),
                "p99_ms": max(line["p99_ms"] for line in lines)}
            for key, peer in adversaries.items():
                peer.send({"cmd": "stats"})
                sample[key] = peer.read_json(timeout=30)
            samples.append(sample)
            print(f"  [{name}] {format_sample(sample)}", file=sys.stderr, flush=True)
        end_stats = stats(engine)
    return {"name": name, "samples": samples, "finals": list(finals.values()),
            "end": end_stats}


def format_sample(s: dict[str, Any]) -> str:
    e = s["engine"]
    text = (f"t={s['t']:5.0f}s engine {e['rss_mb']:6.1f} MB cpu {s['engine_cpu']:4.0%}"
            f"  callers {s['caller_rss']:5.1f} MB"
            f"  workers {s['worker_rss']:5.1f} MB  calls {s['calls']:6d} err {s['errors']:3d}"
            f"  p50 {s['p50_ms']:6.1f} p99 {s['p99_ms']:7.1f} ms  in-flight {e['pending']:4d}"
            f"  queued {e['queued_bytes'] / 2**20:5.1f} MB  peak "
            f"{e['peak_queued_bytes'] / 2**20:5.1f} MB  channels {e['channels']}  dropped "
            f"{e['dropped']}  loop lag max {e['max_lag_ms']:.0f} ms")
    if "stuck" in s:
        st, lo = s["stuck"], s["loris"]
        text += (f"\n{'':14}stuck: worker x{st['worker_incarnations']} caller "
                 f"x{st['caller_incarnations']} channel x{st.get('channel_incarnations', 0)}"
                 f" fed {st['fed']} queue_full {st.get('stuck_queue_full', 0)} "
                 f"stopped {st.get('stuck_invocation_stopped', 0)}; loris: open {lo['open']} "
                 f"handshakes closed {lo['handshake_closed']} frames closed "
                 f"{lo['frame_closed']}")
    return text


def summarize(phase: dict[str, Any]) -> dict[str, float]:
    samples = phase["samples"]
    later = samples[1:] if len(samples) > 3 else samples
    finals = phase["finals"]
    return {
        "engine_first": samples[0]["engine"]["rss_mb"] if samples else float("nan"),
        "engine_last": samples[-1]["engine"]["rss_mb"] if samples else float("nan"),
        "engine_max": max((s["engine"]["rss_mb"] for s in samples), default=float("nan")),
        "engine_slope": slope([(s["t"], s["engine"]["rss_mb"]) for s in later]),
        "caller_slope": slope([(s["t"], s["caller_rss"]) for s in later]),
        "caller_last": samples[-1]["caller_rss"] if samples else float("nan"),
        "p50": statistics.median(f["p50_ms"] for f in finals),
        "p99": max(f["p99_ms"] for f in finals),
        "p99_median_interval": statistics.median(s["p99_ms"] for s in samples)
        if samples else float("nan"),
        "sent": sum(f["sent"] for f in finals), "answered": sum(f["answered"] for f in finals),
        "lost": sum(f["lost"] for f in finals), "skipped": sum(f["skipped"] for f in finals),
        "errors": sum(s["errors"] for s in samples),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds per phase")
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between samples (default: duration / 12, 5 to 60)")
    parser.add_argument("--rate", type=float, default=400.0, help="calls per second, in all")
    parser.add_argument("--callers", type=int, default=2, help="paced caller processes")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--functions", type=int, default=10, help="per worker")
    parser.add_argument("--loris-sockets", type=int, default=40)
    parser.add_argument("--phases", default="steady,faults")
    args = parser.parse_args(argv)
    if args.interval is None:
        args.interval = min(60.0, max(5.0, args.duration / 12))

    phases = []
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="iii-soak-") as log_dir:
        for name in args.phases.split(","):
            print(f"phase {name}: {args.duration:.0f} s", file=sys.stderr, flush=True)
            phases.append(run_phase(name, args, log_dir))

    print(f"\nengine soak: {args.rate:.0f} calls/s (open loop) from {args.callers} caller "
          f"processes to {args.workers} x {args.functions} echo functions, "
          f"{args.duration:.0f} s per phase, a sample every {args.interval:.0f} s; "
          "engine with default bounds")
    for phase in phases:
        print(f"\nphase {phase['name']}:")
        for sample in phase["samples"]:
            print("  " + format_sample(sample))
    print()
    figures = {phase["name"]: summarize(phase) for phase in phases}
    header = (f"{'phase':8} {'engine RSS first/last/max MB':>29} {'slope MB/min':>13} "
              f"{'caller RSS MB':>14} {'slope':>7} {'sent':>8} {'lost':>5} {'errors':>6} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'p99 median of intervals':>24}")
    print(header)
    for name, f in figures.items():
        print(f"{name:8} {f['engine_first']:9.1f} /{f['engine_last']:6.1f} /{f['engine_max']:6.1f}"
              f"      {f['engine_slope']:+9.2f}    {f['caller_last']:11.1f} "
              f"{f['caller_slope']:+7.2f} {f['sent']:8.0f} {f['lost']:5.0f} {f['errors']:6.0f} "
              f"{f['p50']:7.1f} {f['p99']:7.1f} {f['p99_median_interval']:24.1f}")
    print(f"(load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} cores: the machine is shared; p99 moves with it)")
    if "steady" in figures and "faults" in figures:
        s, f = figures["steady"], figures["faults"]
        print(f"\nnormal callers with the faults beside them / without: p50 "
              f"{f['p50'] / s['p50']:.2f}x, p99 {f['p99'] / s['p99']:.2f}x, median interval "
              f"p99 {f['p99_median_interval'] / s['p99_median_interval']:.2f}x")


if __name__ == "__main__":
    main()
