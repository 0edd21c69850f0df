"""Issue 12 item 14: a standby worker shows its conflict and takes over when the owner leaves.

A second worker registering a function id another worker owns gets
``FUNCTION_NAMESPACE_CONFLICT``: its handle says so (``state``, ``error``, ``states``), and when
the owner leaves it registers the function again and serves it. The watch behind that (a
private function bound to the engine's discovery triggers) exists only while a conflict does.
Real engine, real sockets; in one test the owner is a separate process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from typing import Any

from client_helpers import unique_name

import iii_rx
from iii_rx.engine import Engine
from iii_rx.functions import FunctionHandle, FunctionState
from iii_rx.registrations import STANDBY_PREFIX


class States:
    """The states a handle emits, and a way to wait for one."""

    def __init__(self, handle: FunctionHandle) -> None:
        self.seen: list[FunctionState] = []
        self._changed = asyncio.Event()
        handle.states.subscribe(self._on_next)

    def _on_next(self, state: FunctionState) -> None:
        self.seen.append(state)
        self._changed.set()

    async def reach(self, state: FunctionState, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while not self.seen or self.seen[-1] is not state:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


async def _standby_rows(client: Any) -> list[dict[str, Any]]:
    """The engine's rows of standby functions, and the bindings to them."""
    functions = await client.trigger("engine::functions::list", {"include_internal": True})
    bindings = await client.trigger("engine::registered-triggers::list",
                                    {"include_internal": True})
    return ([f for f in functions["functions"] if f["function_id"].startswith(STANDBY_PREFIX)]
            + [b for b in bindings["registered_triggers"]
               if b["function_id"].startswith(STANDBY_PREFIX)])


async def test_conflict_is_shown_and_the_standby_takes_over(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=unique_name("standby")) as standby:
        owner = await iii_rx.connect(engine.url, name=name)
        try:
            owner.register_function("sb::who", lambda data: "owner")
            await standby.wait_for_function("sb::who", 5)
            assert await standby.trigger("sb::who") == "owner"
            assert await _standby_rows(standby) == []  # no conflict, no watch

            handle = standby.register_function("sb::who", lambda data: "standby")
            states = States(handle)
            await states.reach(FunctionState.CONFLICT)
            assert handle.state is FunctionState.CONFLICT and not handle.registered
            assert handle.error is not None
            assert handle.error.code == "FUNCTION_NAMESPACE_CONFLICT"
            assert handle.error.owner_worker_id == owner.worker_id
            assert await standby.trigger("sb::who") == "owner"  # the incumbent keeps it
            rows = await _standby_rows(standby)
            assert {r.get("trigger_type") for r in rows} == {
                None, "engine::workers-available", "engine::functions-available"}
        finally:
            await owner.close()

        await states.reach(FunctionState.REGISTERED)
        assert handle.registered and handle.error is None
        assert await standby.trigger("sb::who") == "standby"
        assert await _standby_rows(standby) == []  # the watch left with the conflict
        handle.unregister()
        await states.reach(FunctionState.UNREGISTERED)
        assert states.seen == [FunctionState.REGISTERED, FunctionState.CONFLICT,
                               FunctionState.REGISTERED, FunctionState.UNREGISTERED]


async def test_unregistering_a_conflicted_function_ends_the_watch(engine: Engine,
                                                                   name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as owner, \
            iii_rx.connect(engine.url, name=unique_name("standby")) as standby:
        owner.register_function("sb::kept", lambda data: "owner")
        await owner.trigger("sb::kept")  # registered before the standby asks
        handle = standby.register_function("sb::kept", lambda data: "standby")
        states = States(handle)
        await states.reach(FunctionState.CONFLICT)
        assert await _standby_rows(standby) != []
        handle.unregister()
        await states.reach(FunctionState.UNREGISTERED)
        assert handle.state is FunctionState.UNREGISTERED and handle.error is None
        assert await _standby_rows(standby) == []


_OWNER = textwrap.dedent("""
    import sys, threading
    import iii_rx

    iii = iii_rx.connect_sync(sys.argv[1], name=sys.argv[2])
    iii.register_function("sb::proc", lambda data: "owner process")
    iii.trigger("sb::proc").result(10)   # registered
    print("ready", flush=True)
    threading.Event().wait()
""")


async def test_standby_takes_over_from_a_killed_owner_process(engine: Engine,
                                                              name: str) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OWNER, engine.url, name, stdout=subprocess.PIPE,
        env=dict(os.environ, OTEL_ENABLED="false"))
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 20) == b"ready\n"
        async with iii_rx.connect(engine.url, name=unique_name("standby")) as standby:
            handle = standby.register_function("sb::proc", lambda data: "standby")
            states = States(handle)
            await states.reach(FunctionState.CONFLICT)
            assert await standby.trigger("sb::proc") == "owner process"
            child.kill()  # no goodbye: the engine sees the socket close
            await child.wait()
            await states.reach(FunctionState.REGISTERED)
            assert await standby.trigger("sb::proc") == "standby"
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_a_standby_on_an_rbac_listener_says_why_it_cannot_take_over(
        name: str, caplog: Any) -> None:
    """RBAC refuses the standby's watch (a binding to a function the session may not call):
    the only trace was a "trigger ... was refused: FORBIDDEN" line naming a private function,
    and the standby stayed in conflict for ever without a word on why."""
    from iii_rx.engine import FunctionFilter, Listener, RbacConfig

    guarded = Listener(port=0, rbac=RbacConfig(expose_functions=[FunctionFilter.match("api::*")]))
    async with Engine(port=0, namespace_grace_ms=300, listeners=[guarded]) as engine:
        url = engine.listener_urls[1]
        async with iii_rx.connect(url, name=name) as owner, \
                iii_rx.connect(url, name=unique_name("standby")) as standby:
            owner.register_function("api::f", lambda data: "owner")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while ("default", "api::f") not in engine.registry.functions:  # RBAC: no listing
                assert loop.time() < deadline
                await asyncio.sleep(0.02)
            caplog.set_level("WARNING", logger="iii_rx.registrations")
            handle = standby.register_function("api::f", lambda data: "standby")
            await States(handle).reach(FunctionState.CONFLICT)
            deadline = loop.time() + 5
            while "standby take-over is off" not in caplog.text:  # no event for a log line
                assert loop.time() < deadline, caplog.text
                await asyncio.sleep(0.02)
            assert f"{STANDBY_PREFIX}* and engine::functions::list" in caplog.text
