"""Channel throughput: MB/s from a writer to a reader through the iii_rx engine.

Writer, reader and engine each run in a process of their own. Scenarios (all in one run):

  rx-64k   iii_rx ChannelWriter -> iii_rx engine -> iii_rx ChannelReader, 64 KiB writes
  sdk-64k  official iii-sdk ChannelWriter/ChannelReader through the same engine, 64 KiB writes
  rx-1k    as rx-64k with 1 KiB writes
  rxbuf-1k as rx-1k through ``writer.buffered()`` (small writes gathered into 64 KiB frames)
  sdk-1k   as sdk-64k with 1 KiB writes
  bare-64k bare websockets writer -> bare relay -> bare websockets reader, 64 KiB writes:
           the ceiling (two hops, no queue, no checks)
  bare-1k  the same with 1 KiB writes

The relay speaks the engine's channel URLs, so every peer runs unchanged against either. A
measurement creates a channel, lets the reader connect, then times from the writer's connection
to the reader's end of stream. Rounds are interleaved across scenarios (in a rotating order) so
that load from other processes spreads over all of them; figures are the median of the rounds
with the range beside. Targets: rx-64k >= 0.6x bare-64k and not slower than sdk-64k;
issue 4 asks rx-64k >= 1.5x sdk-64k.

    python benchmarks/channel_throughput.py [--rounds 3] [--mb-64k 96] [--mb-1k 8]
        [--scenarios rx-64k,sdk-64k,bare-64k]

With ``--rust`` (and the Rust engine built at ``III_BIN``, default ``~/.cache/iii-engine/iii``),
rx-64k and sdk-64k also run through the Rust iii engine for reference.

``ends`` measures each end alone: the bare relay sends 64 KiB frames to a reader (or drops
what a writer sends), and the figure is the CPU per MB of the reader or writer process, for
iii_rx, the official SDK and bare websockets: what the ends cost apart from any engine.

    python benchmarks/channel_throughput.py ends [--rounds 5] [--mb-64k 48]

Roles (internal): ``relay --port P``, ``reader --impl I``, ``writer --impl I``; the peers take
one JSON command per stdin line.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from _common import (  # noqa: E402
    RUST_BINARY,
    Peer,
    free_port,
    per_call_us,
    rust_available,
    spread,
    start_engine,
    start_peer,
)

MB = 1_000_000
PEER_TIMEOUT = 600.0  # seconds for one figure: generous, a measurement must never hang


# --------------------------------------------------------------------------- peers


async def _raw_connect(url: str) -> Any:
    from websockets.asyncio.client import connect

    return await connect(url, compression=None, max_size=2**24, ping_interval=None)


async def read_channel(impl: str, url: str, ref: dict[str, str]) -> dict[str, Any]:
    """Read a channel to its end; returns byte count and end time."""
    total = 0
    if impl in ("rx", "rx-buffered"):
        from iii_rx.channels import ChannelReader

        reader = ChannelReader(url, ref)
        async for chunk in reader:
            total += len(chunk)
        await reader.close()
    elif impl == "sdk":
        from iii.channels import ChannelReader as SdkReader
        from iii.iii_types import StreamChannelRef

        sdk_reader = SdkReader(url, StreamChannelRef(**ref))
        async for chunk in sdk_reader:
            total += len(chunk)
    else:
        from iii_rx.channels import build_channel_url

        ws = await _raw_connect(build_channel_url(url, ref["channel_id"], ref["access_key"],
                                                  "read"))
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in ws:
                total += len(message)
        except ConnectionClosed:
            pass
    return {"bytes": total, "t_end": time.monotonic()}


async def write_channel(impl: str, url: str, ref: dict[str, str], size: int,
                        total: int) -> dict[str, Any]:
    """Write ``total`` bytes in writes of ``size``; returns the start time."""
    block = os.urandom(size)
    count = total // size
    if impl in ("rx", "rx-buffered"):
        from iii_rx.channels import ChannelWriter

        start = time.monotonic()  # every writer's time includes its connection
        writer = ChannelWriter(url, ref)
        out = writer.buffered() if impl == "rx-buffered" else writer
        for _ in range(count):
            await out.write(block)
        await out.close()
    elif impl == "sdk":
        from iii.channels import ChannelWriter as SdkWriter
        from iii.iii_types import StreamChannelRef

        start = time.monotonic()
        sdk_writer = SdkWriter(url, StreamChannelRef(**ref))
        for _ in range(count):
            await sdk_writer.write(block)
        await sdk_writer.close_async()
    else:
        from iii_rx.channels import build_channel_url

        start = time.monotonic()
        ws = await _raw_connect(build_channel_url(url, ref["channel_id"], ref["access_key"],
                                                  "write"))
        for _ in range(count):
            await ws.send(block)
        await ws.close()
    return {"t_start": start}


def run_peer(role: str, impl: str) -> None:
    """A long-lived reader or writer: one JSON command per stdin line, one result line each."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        url = cmd["url"]
        if role == "reader":
            print(json.dumps({"connected": True}), flush=True)
            result = asyncio.run(read_channel(impl, url, cmd["ref"]))
        else:
            result = asyncio.run(write_channel(impl, url, cmd["ref"], cmd["size"], cmd["total"]))
        print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- bare relay


async def source_or_sink(ws: Any, channel_id: str, direction: str) -> None:
    """For ``ends``: send ``ends-{size}-{count}-...`` frames to a reader, or drop a writer's."""
    if direction == "read":
        _, size, count, _ = channel_id.split("-", 3)
        block = os.urandom(int(size))
        for _ in range(int(count)):
            await ws.send(block)
        await ws.close()
    else:
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass


def run_relay(port: int) -> None:
    """Pairs the writer and reader sockets of one channel id and forwards frames, nothing else."""
    from websockets.asyncio.server import ServerConnection, serve

    async def main() -> None:
        readers: dict[str, asyncio.Future[ServerConnection]] = {}
        ends: dict[str, asyncio.Event] = {}

        def slot(channel_id: str) -> tuple[asyncio.Future[ServerConnection], asyncio.Event]:
            if channel_id not in readers:
                readers[channel_id] = asyncio.get_running_loop().create_future()
                ends[channel_id] = asyncio.Event()
            return readers[channel_id], ends[channel_id]

        async def handle(ws: ServerConnection) -> None:
            assert ws.request is not None
            parts = urlsplit(ws.request.path)
            channel_id = parts.path.rsplit("/", 1)[-1]
            direction = parse_qs(parts.query)["dir"][0]
            if channel_id.startswith("ends-"):  # one end alone: a source or a sink
                await source_or_sink(ws, channel_id, direction)
                return
            reader, done = slot(channel_id)
            if direction == "read":
                reader.set_result(ws)
                await done.wait()
                await ws.close()
                return
            out = await reader
            async for message in ws:
                await out.send(message)
            done.set()

        async with serve(handle, "127.0.0.1", port, compression=None, max_size=2**24,
                         ping_interval=None, max_queue=64, write_limit=2**20):
            print(json.dumps({"ready": True}), flush=True)
            await asyncio.Future()

    asyncio.run(main())


# --------------------------------------------------------------------------- coordinator


@dataclass
class Scenario:
    key: str
    impl: str  # rx | sdk | raw
    via: str  # engine | relay | rust
    size: int
    mbps: list[float] = field(default_factory=list)
    cpu_per_mb: list[float] = field(default_factory=list)  # engine/relay CPU ms per MB
    writer_cpu: list[float] = field(default_factory=list)  # writer process CPU ms per MB
    reader_cpu: list[float] = field(default_factory=list)  # reader process CPU ms per MB


@contextlib.contextmanager
def create_channel_refs(url: str) -> Iterator[dict[str, Any]]:
    """``engine::channels::create`` over a bare socket: the refs of a new channel.

    The socket stays open while the refs are in use: the engine frees the channels of a
    connection that leaves before both of their ends attached.
    """
    from websockets.sync.client import connect

    with connect(url, compression=None) as ws:
        invocation_id = str(uuid.uuid4())
        ws.send(json.dumps({"type": "invokefunction", "function_id": "engine::channels::create",
                            "data": {"buffer_size": None}, "invocation_id": invocation_id}))
        while True:
            frame = json.loads(ws.recv())
            if frame.get("type") == "invocationresult" and frame["invocation_id"] == invocation_id:
                result: dict[str, Any] = frame["result"]
                break
        yield result


def relay_refs() -> dict[str, Any]:
    ref = {"channel_id": str(uuid.uuid4()), "access_key": "k"}
    return {"writer": {**ref, "direction": "write"}, "reader": {**ref, "direction": "read"}}


def measure(scenario: Scenario, url: str, hub: Peer, peers: dict[tuple[str, str], Peer],
            total: int) -> None:
    reader, writer = peers[("reader", scenario.impl)], peers[("writer", scenario.impl)]
    with (contextlib.nullcontext(relay_refs()) if scenario.via == "relay"
          else create_channel_refs(url)) as refs:
        before = [p.cpu_seconds() for p in (writer, hub, reader)]
        reader.send({"url": url, "ref": refs["reader"]})
        reader.read_json(timeout=60)  # about to connect
        writer.send({"url": url, "ref": refs["writer"], "size": scenario.size, "total": total})
        started = writer.read_json(timeout=PEER_TIMEOUT)["t_start"]
        result = reader.read_json(timeout=PEER_TIMEOUT)
    if result["bytes"] != total // scenario.size * scenario.size:
        raise RuntimeError(f"{scenario.key}: read {result['bytes']} bytes of {total}")
    elapsed = result["t_end"] - started
    megabytes = result["bytes"] / MB
    scenario.mbps.append(megabytes / elapsed)
    # per_call_us over megabytes is microseconds per MB; the table shows milliseconds per MB
    writer_cpu, hub_cpu, reader_cpu = (
        per_call_us(b, p.cpu_seconds(), 1) / 1000 / megabytes
        for b, p in zip(before, (writer, hub, reader), strict=True)
    )
    scenario.writer_cpu.append(writer_cpu)
    scenario.cpu_per_mb.append(hub_cpu)
    scenario.reader_cpu.append(reader_cpu)


def cpu_note() -> str:
    return ("CPU ms per MB: CPU time of each process during the measurement over the megabytes "
            "moved (engine column: the relay for bare-*); steadier than MB/s on a busy machine")


def ratio(a: Scenario, b: Scenario) -> str:
    return spread([x / y for x, y in zip(a.mbps, b.mbps, strict=True)], ".2f")


def start_hubs(rust: bool, log_dir: str,
               stack: contextlib.ExitStack) -> tuple[dict[str, Peer], dict[str, str]]:
    """The engine, the bare relay and (when asked and built) the Rust engine; peers and URLs."""
    hubs: dict[str, Peer] = {}
    urls: dict[str, str] = {}
    hubs["engine"], port = start_engine("iii_rx", log_dir, stack)
    urls["engine"] = f"ws://127.0.0.1:{port}"
    port = free_port()
    hubs["relay"] = start_peer("relay", [sys.executable, str(HERE), "relay", "--port", str(port)],
                               log_dir, stack)
    urls["relay"] = f"ws://127.0.0.1:{port}"
    if rust:
        hubs["rust"], port = start_engine("rust", log_dir, stack)
        urls["rust"] = f"ws://127.0.0.1:{port}"
    return hubs, urls


def coordinate(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    rust = args.rust and rust_available()
    scenarios = [
        Scenario("rx-64k", "rx", "engine", 65536),
        Scenario("sdk-64k", "sdk", "engine", 65536),
        Scenario("bare-64k", "raw", "relay", 65536),
        Scenario("rx-1k", "rx", "engine", 1024),
        Scenario("rxbuf-1k", "rx-buffered", "engine", 1024),
        Scenario("sdk-1k", "sdk", "engine", 1024),
        Scenario("bare-1k", "raw", "relay", 1024),
    ]
    if rust:
        scenarios += [Scenario("rx-64k-rust", "rx", "rust", 65536),
                      Scenario("sdk-64k-rust", "sdk", "rust", 65536)]
    if args.scenarios:
        keep = set(args.scenarios.split(","))
        scenarios = [s for s in scenarios if s.key in keep]
    with tempfile.TemporaryDirectory(prefix="iii-bench-channels-") as log_dir, \
            contextlib.ExitStack() as stack:
        hubs, urls = start_hubs(rust, log_dir, stack)
        peers = {
            (role, impl): start_peer(f"{role}-{impl}",
                                     [sys.executable, str(HERE), role, "--impl", impl],
                                     log_dir, stack)
            for role in ("reader", "writer") for impl in ("rx", "rx-buffered", "sdk", "raw")
        }
        for scenario in scenarios:  # warm-up: connections, imports, caches
            measure(scenario, urls[scenario.via], hubs[scenario.via], peers, 4 * MB)
            for figures in (scenario.mbps, scenario.cpu_per_mb, scenario.writer_cpu,
                            scenario.reader_cpu):
                figures.clear()
        for round_index in range(args.rounds):
            # rotate the order each round so that no scenario always follows the same one
            shift = round_index % len(scenarios)
            for scenario in scenarios[shift:] + scenarios[:shift]:
                total = (args.mb_64k if scenario.size >= 65536 else args.mb_1k) * MB
                measure(scenario, urls[scenario.via], hubs[scenario.via], peers, total)
    by_key = {s.key: s for s in scenarios}
    print(f"channel throughput, {args.rounds} rounds, {args.mb_64k} MB per 64 KiB figure, "
          f"{args.mb_1k} MB per 1 KiB figure; median [min-max]")
    print(f"{'scenario':<10} {'MB/s':>26}   CPU ms per MB: {'writer':>9} {'engine':>9} "
          f"{'reader':>9}")
    for scenario in scenarios:
        cpu = [statistics.median(v) for v in (scenario.writer_cpu, scenario.cpu_per_mb,
                                               scenario.reader_cpu)]
        print(f"{scenario.key:<10} {spread(scenario.mbps, '8.1f'):>26}   {'':>14} "
              + " ".join(f"{v:9.2f}" for v in cpu))
    print(cpu_note())
    for a, b, note in (("rx-64k", "sdk-64k", "(target >= 1.0; issue 15 asks 1.5)"),
                       ("rx-64k", "bare-64k", "(target >= 0.6; issue 15 asks 0.9)"),
                       ("rx-1k", "sdk-1k", ""), ("rx-1k", "bare-1k", ""),
                       ("rxbuf-1k", "sdk-1k", "(writer.buffered())")):
        if a in by_key and b in by_key:
            print(f"{a + ' / ' + b:<19} {note:<28}: {ratio(by_key[a], by_key[b])}")
    if "rx-64k-rust" in by_key:
        print(f"rx-64k / rx-64k-rust (our engine / Rust engine): "
              f"{ratio(by_key['rx-64k'], by_key['rx-64k-rust'])}")
    elif args.rust:
        print(f"(Rust engine not found at {RUST_BINARY}: its scenarios were skipped)")
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs; figures on a shared machine are noisy)")


def coordinate_ends(args: argparse.Namespace) -> None:
    """Each end alone against the bare relay as a source or sink: CPU of the end per MB."""
    load_before = os.getloadavg()
    impls = ("rx", "sdk", "raw")
    size = 65536
    count = args.mb_64k * MB // size
    cpu: dict[tuple[str, str], list[float]] = {}
    rate: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="iii-bench-ends-") as log_dir, \
            contextlib.ExitStack() as stack:
        port = free_port()
        start_peer("relay", [sys.executable, str(HERE), "relay", "--port", str(port)],
                   log_dir, stack)
        url = f"ws://127.0.0.1:{port}"
        peers = {(role, impl): start_peer(f"{role}-{impl}",
                                          [sys.executable, str(HERE), role, "--impl", impl],
                                          log_dir, stack)
                 for role in ("reader", "writer") for impl in impls}
        jobs = [(role, impl) for role in ("reader", "writer") for impl in impls]
        for round_index in range(args.rounds + 1):  # round 0 warms up
            shift = round_index % len(jobs)
            for role, impl in jobs[shift:] + jobs[:shift]:
                peer = peers[(role, impl)]
                ref = {"channel_id": f"ends-{size}-{count}-{uuid.uuid4().hex}",
                       "access_key": "k", "direction": "read" if role == "reader" else "write"}
                before = peer.cpu_seconds()
                started = time.monotonic()
                if role == "reader":
                    peer.send({"url": url, "ref": ref})
                    peer.read_json(timeout=60)
                    ended = peer.read_json(timeout=PEER_TIMEOUT)["t_end"]
                else:
                    peer.send({"url": url, "ref": ref, "size": size, "total": count * size})
                    peer.read_json(timeout=PEER_TIMEOUT)
                    ended = time.monotonic()
                megabytes = count * size / MB
                if round_index:
                    cpu.setdefault((role, impl), []).append(
                        per_call_us(before, peer.cpu_seconds(), 1) / 1000 / megabytes)
                    rate.setdefault((role, impl), []).append(megabytes / (ended - started))
    print(f"channel ends alone (64 KiB frames, {args.mb_64k} MB, {args.rounds} rounds; the bare "
          "relay sources or sinks the frames): CPU ms per MB of the end, median [min-max]")
    for role, impl in jobs:
        print(f"  {role:<7} {impl:<4} CPU {spread(cpu[(role, impl)], '6.3f'):>24} ms/MB   "
              f"{spread(rate[(role, impl)], '7.1f'):>26} MB/s")
    for role in ("reader", "writer"):
        for impl in ("rx", "sdk"):
            ratios = [a / b for a, b in zip(cpu[(role, impl)], cpu[(role, "raw")], strict=True)]
            print(f"  {role} CPU {impl}/bare websockets: {spread(ratios, '.2f')}")
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    bench = sub.add_parser("run", help="run the benchmark (the default)")
    ends = sub.add_parser("ends", help="each channel end alone: its CPU per MB")
    for p in (parser, bench, ends):
        p.add_argument("--rounds", type=int, default=3)
        p.add_argument("--mb-64k", type=int, default=96, help="MB per 64 KiB measurement")
        p.add_argument("--mb-1k", type=int, default=8, help="MB per 1 KiB measurement")
        p.add_argument("--scenarios", default="",
                       help="comma-separated scenario keys to run (default: all)")
        p.add_argument("--rust", action="store_true",
                       help="add rx-64k and sdk-64k through the Rust engine (if it is built)")
    relay = sub.add_parser("relay")
    relay.add_argument("--port", type=int, required=True)
    for role in ("reader", "writer"):
        peer = sub.add_parser(role)
        peer.add_argument("--impl", choices=("rx", "rx-buffered", "sdk", "raw"), required=True)
    args = parser.parse_args()
    if args.role == "relay":
        run_relay(args.port)
    elif args.role in ("reader", "writer"):
        run_peer(args.role, args.impl)
    elif args.role == "ends":
        coordinate_ends(args)
    else:
        coordinate(args)


if __name__ == "__main__":
    main()
