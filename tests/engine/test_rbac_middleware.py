"""A listener's middleware_function_id over real sockets: input, decision, bypass of builtins."""

from __future__ import annotations

from rbac_support import guarded_engine, raw, rbac

from iii_rx.engine.listeners import Listener


def _middleware_only() -> Listener:
    return Listener(port=0, middleware_function_id="t::middleware")


async def test_middleware_gets_the_documented_input_and_its_answer_is_the_callers() -> None:
    async with guarded_engine(_middleware_only()) as (engine, trusted):
        worker = await raw(engine, None)
        result = await worker.result_of("priv::echo", {"x": 1}, metadata={"m": 1},
                                        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
        # the target ran with the payload the middleware made of it
        assert result["private"]["x"] == 1
        assert result["private"]["_via_middleware"] == "none"
        [seen] = trusted.middleware_inputs
        assert seen["function_id"] == "priv::echo"
        assert seen["payload"] == {"x": 1}  # as the worker sent it
        assert seen["action"] is None
        assert seen["context"] == {}  # no RBAC: empty context
        assert seen["namespace"] == "default"


async def test_middleware_may_answer_without_calling_the_target() -> None:
    async with guarded_engine(_middleware_only()) as (engine, trusted):
        worker = await raw(engine, None)
        assert await worker.result_of("priv::echo", {"short": True}) == {
            "short_circuited": True}
        assert len(trusted.middleware_inputs) == 1


async def test_middleware_failure_is_the_callers_error() -> None:
    async with guarded_engine(_middleware_only()) as (engine, _):
        worker = await raw(engine, None)
        frame = await worker.call("nobody::here", {"x": 1})
        # the middleware raised (its own call failed): the caller gets its failure, no hang
        assert frame["error"]["code"] == "invocation_failed"
        assert "function_not_found" in frame["error"]["message"]


async def test_engine_functions_bypass_the_middleware() -> None:
    async with guarded_engine(_middleware_only()) as (engine, trusted):
        worker = await raw(engine, None)
        await worker.result_of("engine::functions::list", {})
        await worker.result_of("engine::log::info", {"message": "m"})
        assert trusted.middleware_inputs == []


async def test_middleware_sees_the_session_context_and_the_action() -> None:
    listener = Listener(port=0, middleware_function_id="t::middleware", rbac=rbac())
    async with guarded_engine(listener) as (engine, trusted):
        worker = await raw(engine, "plain")
        result = await worker.result_of("pub::echo", {"y": 2})
        assert result["echo"]["_via_middleware"] == "plain"
        await worker.send({"type": "invokefunction", "function_id": "pub::echo",
                           "data": {"v": 1}, "action": {"type": "void"}})
        await worker.nothing("invocationresult", within=0.3)
        assert [m["context"] for m in trusted.middleware_inputs] == [{"user": "plain"}] * 2
        assert trusted.middleware_inputs[1]["action"] == {"type": "void"}
        # a forbidden call never reaches the middleware
        frame = await worker.call("priv::echo", {})
        assert frame["error"]["code"] == "FORBIDDEN"
        assert len(trusted.middleware_inputs) == 2


async def test_the_main_port_has_no_middleware() -> None:
    async with guarded_engine(_middleware_only()) as (engine, trusted):
        worker = await raw(engine, None, index=0)
        assert "_via_middleware" not in (await worker.result_of("priv::echo", {}))["private"]
        assert trusted.middleware_inputs == []
