"""Registration hooks, registration flags and the function prefix of an RBAC session."""

from __future__ import annotations

import asyncio
from typing import Any

from raw_engine_client import wait_until
from rbac_support import guarded_engine, raw, rbac

from iii_rx.engine.listeners import Listener


def _deny_prefixed(prefix: str, mapping: dict[str, Any] | None = None) -> Any:
    def decide(data: dict[str, Any]) -> Any:
        for value in data.values():
            if isinstance(value, str) and value.startswith(prefix):
                raise ValueError("denied by the test hook")
        return mapping or {}
    return decide


HOOKS = {
    "t::on-fn": _deny_prefixed("denied::"),
    "t::on-trigger": _deny_prefixed("denied::"),
    "t::on-type": _deny_prefixed("denied-tt::"),
}


def _hooked() -> Listener:
    return Listener(port=0, rbac=rbac(on_function_registration_function_id="t::on-fn",
                                      on_trigger_registration_function_id="t::on-trigger",
                                      on_trigger_type_registration_function_id="t::on-type"))


async def test_function_hook_sees_the_registration_and_may_deny_it() -> None:
    async with guarded_engine(_hooked(), hooks=HOOKS) as (engine, trusted):
        worker = await raw(engine, "plain")
        await worker.register(name="fn-hooked")
        await worker.register_function("denied::one", description="d", metadata={"k": 1})
        await worker.register_function("pub::mine", description="mine")
        await wait_until(lambda: ("default", "pub::mine") in engine.registry.functions)
        assert ("default", "denied::one") not in engine.registry.functions
        refusal = await worker.recv("error")
        assert (refusal["error"]["code"], refusal["frame_type"], refusal["id"]) == (
            "FORBIDDEN", "registerfunction", "denied::one")
        assert "denied by the test hook" in refusal["error"]["message"]
        inputs = {i["function_id"]: i for i in trusted.hook_inputs["t::on-fn"]}
        assert inputs["denied::one"] == {"function_id": "denied::one", "description": "d",
                                         "metadata": {"k": 1}, "namespace": "default",
                                         "context": {"user": "plain"}}


async def test_function_hook_may_rename_and_describe() -> None:
    hooks = {"t::on-fn": lambda data: {"function_id": "pub::renamed", "description": "new",
                                        "metadata": {"public": True}}}
    listener = Listener(port=0, rbac=rbac(on_function_registration_function_id="t::on-fn"))
    async with guarded_engine(listener, hooks=hooks) as (engine, _):
        worker = await raw(engine, "plain")
        await worker.register(name="renamed")
        await worker.register_function("pub::original")
        await wait_until(lambda: ("default", "pub::renamed") in engine.registry.functions)
        entry = engine.registry.functions[("default", "pub::renamed")]
        assert (entry.description, entry.metadata) == ("new", {"public": True})
        assert ("default", "pub::original") not in engine.registry.functions


async def test_trigger_type_registration_needs_the_flag_and_the_hook() -> None:
    async with guarded_engine(_hooked(), hooks=HOOKS) as (engine, trusted):
        plain = await raw(engine, "plain")  # allow_trigger_type_registration: false
        await plain.register(name="tt-plain")
        await plain.send({"type": "registertriggertype", "id": "tt-plain", "description": "x"})
        admin = await raw(engine, "admin")
        await admin.register(name="tt-admin")
        await admin.send({"type": "registertriggertype", "id": "denied-tt::a",
                          "description": "no"})
        await admin.send({"type": "registertriggertype", "id": "tt-ok", "description": "yes"})
        await wait_until(lambda: ("default", "tt-ok") in engine.triggers.types)
        assert ("default", "tt-plain") not in engine.triggers.types
        refusal = await plain.recv("error")
        assert (refusal["error"]["code"], refusal["id"]) == ("FORBIDDEN", "tt-plain")
        assert "may not register trigger types" in refusal["error"]["message"]
        assert ("default", "denied-tt::a") not in engine.triggers.types
        seen = [(i["trigger_type_id"], i["context"]["user"])
                for i in trusted.hook_inputs["t::on-type"]]
        assert seen == [("denied-tt::a", "admin"), ("tt-ok", "admin")]  # plain never asked


async def test_a_denied_trigger_is_answered_forbidden() -> None:
    async with guarded_engine(_hooked(), hooks=HOOKS) as (engine, trusted):
        worker = await raw(engine, "plain")
        await worker.register(name="trig")
        await worker.send({"type": "registertrigger", "id": "t1", "trigger_type": "cron",
                           "function_id": "denied::fn", "config": {"expression": "* * * * * *"}})
        answer = await worker.recv("triggerregistrationresult")
        assert answer["id"] == "t1"
        assert answer["error"]["code"] == "FORBIDDEN"
        [seen] = trusted.hook_inputs["t::on-trigger"]
        assert (seen["trigger_type"], seen["function_id"], seen["config"]) == (
            "cron", "denied::fn", {"expression": "* * * * * *"})
        # the hook allows it, but the session may not call the target: FORBIDDEN as well
        await worker.send({"type": "registertrigger", "id": "t2", "trigger_type": "cron",
                           "function_id": "priv::echo", "config": {"expression": "* * * * * *"}})
        answer = await worker.recv("triggerregistrationresult")
        assert (answer["id"], answer["error"]["code"]) == ("t2", "FORBIDDEN")
        assert "t1" not in engine.triggers.bindings and "t2" not in engine.triggers.bindings


async def test_allowed_trigger_types_and_function_registration_flag() -> None:
    async with guarded_engine(Listener(port=0, rbac=rbac())) as (engine, _):
        worker = await raw(engine, "readonly")
        await worker.register(name="readonly")
        await worker.register_function("pub::mine")
        await worker.send({"type": "registertrigger", "id": "t3", "trigger_type": "cron",
                           "function_id": "pub::echo", "config": {"expression": "* * * * * *"}})
        answer = await worker.recv("triggerregistrationresult")
        assert answer["error"]["code"] == "FORBIDDEN"
        assert "cron" in answer["error"]["message"]
        assert ("default", "pub::mine") not in engine.registry.functions
        refusal = await worker.recv("error")
        assert (refusal["error"]["code"], refusal["id"]) == ("FORBIDDEN", "pub::mine")


async def test_function_registration_prefix_is_invisible_to_the_worker() -> None:
    async with guarded_engine(Listener(port=0, rbac=rbac())) as (engine, trusted):
        worker = await raw(engine, "prefix")
        await worker.register(name="prefixed")
        await worker.register_function("echo")
        await wait_until(lambda: ("default", "tenant-a::echo") in engine.registry.functions)
        assert ("default", "echo") not in engine.registry.functions
        async def call_it() -> Any:
            return await trusted.client.trigger("tenant-a::echo", {"q": 1})

        call = asyncio.create_task(call_it())
        frame = await worker.serve_once()
        assert frame["function_id"] == "echo"  # the worker sees its own id
        assert (await call)["q"] == 1
        # unregistering by its own id removes the prefixed function
        await worker.send({"type": "unregisterfunction", "id": "echo"})
        await wait_until(lambda: ("default", "tenant-a::echo") not in engine.registry.functions)


async def test_a_trigger_may_not_have_the_engine_call_what_the_session_may_not() -> None:
    """A binding on a function the session may call, whose condition or http middleware is
    one it may not: refused (the engine called it on every fire, with the engine's authority
    and, through http, the attacker's request body)."""
    async with guarded_engine(Listener(port=0, rbac=rbac())) as (engine, _):
        worker = await raw(engine, "plain")
        await worker.register(name="sneaky")
        sneaky = [
            ("cron", {"expression": "* * * * * *", "condition_function_id": "priv::echo"}),
            ("http", {"api_path": "/c", "http_method": "POST",
                      "condition_function_id": "priv::echo"}),
            ("http", {"api_path": "/m", "http_method": "POST",
                      "middleware_function_ids": ["pub::echo", "priv::echo"]}),
            ("durable:subscriber", {"topic": "t", "condition_function_id": "priv::echo"}),
        ]
        for n, (trigger_type, config) in enumerate(sneaky):
            await worker.send({"type": "registertrigger", "id": f"s{n}",
                               "trigger_type": trigger_type, "function_id": "pub::echo",
                               "config": config})
            answer = await worker.recv("triggerregistrationresult")
            assert (answer["id"], answer["error"]["code"]) == (f"s{n}", "FORBIDDEN")
            assert "'priv::echo' (called by the trigger)" in answer["error"]["message"]
        assert not {f"s{n}" for n in range(len(sneaky))} & set(engine.triggers.bindings)
        await worker.send({"type": "registertrigger", "id": "fine", "trigger_type": "cron",
                           "function_id": "pub::echo",
                           "config": {"expression": "* * * * * *",
                                      "condition_function_id": "pub::echo"}})
        await wait_until(lambda: "fine" in engine.triggers.bindings)


async def test_a_session_may_not_register_a_function_that_guards_a_listener() -> None:
    """The auth function (or the middleware) registered by a session while its trusted
    provider is away would judge every later session: refused, unless the auth result names
    it in ``allowed_functions``; other ids register as before."""
    listener = Listener(port=0, middleware_function_id="t::middleware", rbac=rbac())
    async with guarded_engine(listener) as (engine, _):
        worker = await raw(engine, "plain")
        await worker.register(name="sneaky")
        for function_id in ("t::auth", "t::middleware"):
            engine.registry.remove_function(("default", function_id))  # its provider is away
            await worker.register_function(function_id)
            refusal = await worker.recv("error")
            assert (refusal["error"]["code"], refusal["id"]) == ("FORBIDDEN", function_id)
            assert "guards this engine's listeners" in refusal["error"]["message"]
            assert ("default", function_id) not in engine.registry.functions
        await worker.register_function("mine::fine")
        await wait_until(lambda: ("default", "mine::fine") in engine.registry.functions)
