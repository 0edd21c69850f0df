"""A guarded connection's session decides, whatever fixed its namespace (docs/engine-config.md).

A session scoped by ``namespaces`` may register only in those namespaces: when the worker never
sends ``engine::workers::register`` (or declares a namespace it may not), the grace period fixes
its namespace to ``default`` and its registrations are refused there instead of landing in a
namespace the auth function did not grant. Every guarded connection is run bound to the
session it authenticated with (a ``SessionGuard``), so no call or registration of it is
judged without one.
"""

from __future__ import annotations

from raw_engine_client import RawWorker, wait_until
from rbac_support import guarded_engine, raw, rbac

from iii_rx.engine import Engine
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.listeners import Listener
from iii_rx.engine.rbac import SessionGuard

_REFUSED = "namespace 'default' not allowed for this session (permitted: orders)"


def _listener() -> Listener:
    return Listener(port=0, rbac=rbac())


async def test_the_grace_fallback_does_not_register_a_scoped_session_in_default() -> None:
    async with guarded_engine(_listener()) as (engine, _):
        worker = await raw(engine, "orders-admin")
        await worker.register_function("svc::late")
        await worker.send({"type": "registertriggertype", "id": "t-late", "description": "d"})
        await worker.send({"type": "registertrigger", "id": "trig-1", "trigger_type": "t-ok",
                           "function_id": "svc::late", "config": {}})
        # nothing is applied before the grace period (300 ms) has fixed the namespace
        function = await worker.recv("error", where=lambda f: f.get("id") == "svc::late")
        assert function["error"] == {
            "code": "FORBIDDEN", "message": f"registration of function svc::late refused: "
                                            f"{_REFUSED}"}
        trigger_type = await worker.recv("error", where=lambda f: f.get("id") == "t-late")
        assert trigger_type["error"]["code"] == "FORBIDDEN"
        assert _REFUSED in trigger_type["error"]["message"]
        trigger = await worker.recv("triggerregistrationresult")
        assert trigger["error"]["code"] == "FORBIDDEN"
        assert _REFUSED in trigger["error"]["message"]
        conn = _connection(engine, worker)
        assert conn.namespace == "default"
        assert ("default", "svc::late") not in engine.registry.functions
        assert ("default", "t-late") not in engine.triggers.types
        assert not conn.functions


async def test_a_refused_namespace_declaration_does_not_fall_back_to_default() -> None:
    async with guarded_engine(_listener()) as (engine, _):
        worker = await raw(engine, "orders")
        refused = await worker.call("engine::workers::register", {"namespace": "other"})
        assert refused["error"]["code"] == "FORBIDDEN"
        await worker.register_function("svc::after-refusal")
        frame = await worker.recv("error")
        assert frame["id"] == "svc::after-refusal"
        assert frame["error"]["message"].endswith(_REFUSED)
        assert ("default", "svc::after-refusal") not in engine.registry.functions


async def test_a_scoped_session_registers_in_the_namespace_it_declared() -> None:
    async with guarded_engine(_listener()) as (engine, _):
        worker = await raw(engine, "orders")
        await worker.register_function("svc::early")  # buffered until the namespace is known
        await worker.register(name="orders-raw", namespace="orders")
        await wait_until(lambda: ("orders", "svc::early") in engine.registry.functions)
        await worker.nothing("error")


async def test_an_unscoped_session_still_falls_back_to_default() -> None:
    async with guarded_engine(_listener()) as (engine, _):
        worker = await raw(engine, "plain")
        await worker.register_function("plain::fn")
        await wait_until(lambda: ("default", "plain::fn") in engine.registry.functions)
        await worker.nothing("error")


async def test_each_guarded_connection_is_bound_to_its_own_session() -> None:
    async with guarded_engine(_listener()) as (engine, _):
        orders = await raw(engine, "orders")
        plain = await raw(engine, "plain")
        guards = engine.dispatcher._guards
        await wait_until(lambda: {_connection(engine, orders), _connection(engine, plain)}
                         <= guards.keys())
        for worker, user in ((orders, "orders"), (plain, "plain")):
            guard = guards[_connection(engine, worker)]
            assert isinstance(guard, SessionGuard)
            assert guard.session.context == {"user": user}
        # the same call is judged by each caller's session
        assert (await orders.call("svc::x"))["error"]["code"] == "FORBIDDEN"
        assert (await plain.call("pub::echo", 1))["result"] == {"echo": 1}
        assert (await orders.call("pub::echo", 2))["result"] == {"echo": 2}


def _connection(engine: Engine, worker: RawWorker) -> WorkerConnection:
    return engine.registry.workers[worker.worker_id]
