"""Transport: paths, bad input, message sizes, fragments, pings, the command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys

import pytest
from raw_engine_client import RawWorker, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from iii_rx.engine import Engine


async def _echo_pair(engine: Engine) -> tuple[RawWorker, RawWorker]:
    worker = await RawWorker.connect(engine.url)
    await worker.register_function("echo::it")
    await worker.register("echo")
    caller = await RawWorker.connect(engine.url)
    await caller.register("caller")
    await wait_until(lambda: ("default", "echo::it") in engine.registry.functions)
    return worker, caller


async def _round_trip(worker: RawWorker, caller: RawWorker, data: object) -> object:
    call = asyncio.ensure_future(caller.call("echo::it", data, timeout=20))
    await worker.serve_once(timeout=20)
    answer = await call
    assert "error" not in answer, answer
    return answer["result"]


async def test_garbage_is_dropped_and_the_worker_keeps_working(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    worker, caller = await _echo_pair(engine)
    garbage: list[str | bytes] = [
        "this is not json",
        "[1, 2, 3]",
        '"a string"',
        "{}",
        '{"type": 42}',
        '{"type": "nosuchframe", "x": 1}',
        '{"type": "registerfunction"}',            # fails validation: no id
        '{"type": "invokefunction", "data": 1}',   # fails validation: no function_id
        '{"type": "invocationresult", "result": 1}',
        '{"type": "registertrigger", "id": "t"}',
        b"\xff\xfe not utf-8",
        b"OTLP{\"resourceSpans\": []}",            # telemetry on the main socket: ignored
        '{"type": "workerregistered", "worker_id": "x"}',
        '{"type": "observe", "id": "o"}',
    ]
    with caplog.at_level(logging.WARNING, logger="iii_rx.engine"):
        for item in garbage:
            await caller.ws.send(item)
        assert await _round_trip(worker, caller, {"still": "works"}) == {
            "still": "works", "_caller_worker_id": caller.worker_id}
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) >= 10
    assert all(caller.worker_id in message for message in dropped)
    assert caller.worker_id in engine.registry.workers


async def test_oversize_message_closes_only_that_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    async with Engine(port=0, max_message_bytes=1024 * 1024) as engine:
        worker, caller = await _echo_pair(engine)
        offender = await RawWorker.connect(engine.url)
        with caplog.at_level(logging.INFO, logger="iii_rx.engine"):
            await offender.send(json.dumps({"type": "ping", "pad": "x" * (2 * 1024 * 1024)}))
            with pytest.raises(ConnectionClosed) as closed:
                await offender.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            await wait_until(lambda: offender.worker_id not in engine.registry.workers)
        assert any(offender.worker_id in r.getMessage() and "1009" in r.getMessage()
                   for r in caplog.records)
        assert await _round_trip(worker, caller, [1]) == [1]


async def test_large_and_fragmented_messages(engine: Engine) -> None:
    worker, caller = await _echo_pair(engine)
    big = "y" * (17 * 1024 * 1024)  # above 16 MiB: the official SDK fragments these
    invocation_id = "frag-1"
    text = json.dumps({"type": "invokefunction", "function_id": "echo::it", "data": big,
                       "invocation_id": invocation_id})
    await caller.ws.send(text[i:i + 1024 * 1024] for i in range(0, len(text), 1024 * 1024))
    seen = await worker.serve_once(timeout=30)
    assert seen["data"] == big
    answer = await caller.recv("invocationresult", timeout=30)
    assert answer["invocation_id"] == invocation_id and answer["result"] == big


async def test_otel_path_is_drained(engine: Engine) -> None:
    async with connect(engine.url + "/otel", compression=None) as otel:
        await otel.send(b'OTLP{"resourceSpans":[]}')
        await otel.send("text is ignored")
        await otel.ping()
    assert not engine.registry.workers


@pytest.mark.parametrize(("path", "status"), [
    ("/nope", 404),
    ("/ws/channels/abc", 400),
    ("/ws/channels/abc?key=k", 400),
    ("/ws/channels/abc?key=k&dir=sideways", 400),
    ("/ws/channels/abc?key=k&dir=read", 404),
])
async def test_other_paths_are_refused(engine: Engine, path: str, status: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(engine.url + path, compression=None)
    assert refused.value.response.status_code == status


async def test_no_features_are_advertised(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    assert set(worker.hello) == {"type", "worker_id", "reattach_token"}


async def test_websocket_pings_are_answered(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    pong = await worker.ws.ping()
    await asyncio.wait_for(pong, 5)


async def test_stopping_closes_worker_sockets_with_an_error_code_old_sdks_reconnect_after(
        engine: Engine) -> None:
    """Official Python SDKs up to 0.24.0 read frames with ``async for`` and reconnect only when
    it raises; a 1000/1001 close ends it quietly, and such a worker stayed disconnected for
    good (still saying "connected") after every engine restart."""
    worker = await RawWorker.connect(engine.url)
    stopping = asyncio.ensure_future(engine.stop())
    with pytest.raises(ConnectionClosedError) as closed:
        async for _ in worker.ws:
            pass
    await stopping
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012  # service restart


def test_start_in_thread() -> None:
    with Engine.start_in_thread(namespace_grace_ms=50) as handle:
        assert handle.url == f"ws://127.0.0.1:{handle.port}"
        listed = handle.call("engine::functions::list", {"include_internal": True})
        assert any(f["function_id"] == "engine::workers::list" for f in listed["functions"])

        async def hello() -> str:
            worker = await RawWorker.connect(handle.url)
            await worker.close()
            return worker.worker_id

        assert asyncio.run(hello())
    handle.stop()  # idempotent


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "iii_rx.engine"],
    [sys.executable, "-c", "import sys; from iii_rx.cli import main; sys.exit(main())", "engine"],
])
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_command_line_runs_and_stops_cleanly(command: list[str], stop: signal.Signals) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([*command, "--port", "0", "--rest-port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("iii engine listening on ws://127.0.0.1:"), line
        url = line.split()[-1]

        async def visit() -> None:
            worker = await RawWorker.connect(url)
            await worker.register("cli-visitor")
            await worker.call("engine::workers::list", {})
            await worker.close()

        asyncio.run(visit())
        process.send_signal(stop)
        _, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        connects = [line for line in err.splitlines() if "worker connected" in line]
        disconnects = [line for line in err.splitlines() if "worker disconnected" in line]
        assert len(connects) == 1 and len(disconnects) == 1, err
        assert "Traceback" not in err
        assert "listening on ws:" not in err  # printed on stdout, not logged a second time
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_command_line_reads_the_namespace_grace_from_the_environment() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "III_NAMESPACE_GRACE_MS": "50"}
    with subprocess.Popen([sys.executable, "-m", "iii_rx.engine", "--port", "0",
                           "--rest-port", "0"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split()[-1]

            async def visit() -> list[str]:
                worker = await RawWorker.connect(url)
                try:
                    await worker.register_function("graceful::f")  # no workers::register
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + 2  # well inside the default grace of 5 s
                    while loop.time() < deadline:
                        listed = await worker.result_of("engine::functions::list", {})
                        ids = [f["function_id"] for f in listed["functions"]]
                        if "graceful::f" in ids:
                            return ids
                        await asyncio.sleep(0.02)
                    return []
                finally:
                    await worker.close()

            assert "graceful::f" in asyncio.run(visit())
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
