"""Engine calls made for a worker that leaves are withdrawn (docs/guarantees.md).

A read of a custom stream (``stream::get`` and the lists) is answered by the worker providing
the stream; the engine waits for it on behalf of the caller. When the caller leaves, nobody
waits any more: the engine's calls to the provider are withdrawn as the caller's own calls
are. They were kept (one task and one pending entry each) until the provider left or an
hour passed: 20,000 reads of a provider that never answers held ~84 MB.
"""

from __future__ import annotations

import json

from raw_engine_client import RawWorker, wait_until
from websockets.asyncio.client import connect

from iii_rx.engine import Engine

READS = 50


async def test_reads_of_a_custom_stream_are_withdrawn_when_their_caller_leaves() -> None:
    async with Engine(port=0, namespace_grace_ms=100) as engine:
        provider = await RawWorker.connect(engine.url)
        await provider.register(name="provider")
        await provider.register_function("stream::get(slow)")
        await wait_until(lambda: any(f == "stream::get(slow)"
                                     for _, f in engine.registry.functions))
        caller = await RawWorker.connect(engine.url)
        await caller.register(name="caller")
        for n in range(READS):
            await caller.invoke("stream::get", {"stream_name": "slow", "group_id": "g",
                                                "item_id": f"i{n}"})
        for _ in range(READS):  # the provider reads them and never answers
            await provider.recv("invokefunction")
        assert engine.router.pending_count() == READS
        await caller.close()
        await wait_until(lambda: engine.router.pending_count() == 0)
        # A late answer finds nothing and is dropped; the provider stays connected.
        await provider.send({"type": "invocationresult", "invocation_id": "late",
                             "function_id": "stream::get(slow)", "result": None})
        assert await provider.result_of("engine::workers::list", {}) is not None
        await provider.close()


async def test_a_stream_socket_join_is_given_up_when_its_client_leaves() -> None:
    """A join reads the group from the stream's provider; the connection's task waited for it
    inline, so a client that left meanwhile kept its task and the read until the provider
    answered (never) or an hour passed."""
    async with Engine(port=0, stream_port=0, namespace_grace_ms=100) as engine:
        streams = engine.workers.streams.socket
        assert streams is not None
        provider = await RawWorker.connect(engine.url)
        await provider.register(name="provider")
        await provider.register_function("stream::list(slow)")
        await wait_until(lambda: any(f == "stream::list(slow)"
                                     for _, f in engine.registry.functions))
        client = await connect(f"ws://127.0.0.1:{streams.port}", compression=None)
        await client.send(json.dumps({"type": "join", "data": {
            "subscriptionId": "s", "streamName": "slow", "groupId": "g"}}))
        await provider.recv("invokefunction")  # the read, never answered
        assert engine.router.pending_count() == 1
        await client.close()
        await wait_until(lambda: engine.router.pending_count() == 0 and not streams.clients)
        await provider.close()
