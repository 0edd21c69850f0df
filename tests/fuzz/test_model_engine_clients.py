"""Model-based test of the embedded engine and iii_rx clients together (hypothesis stateful).

One engine per example, up to three sync clients (two namespaces), and a reference model of
what each registered. Rules connect and close clients (a closed name may come back), cut a
connection without a close handshake, register and unregister functions (handlers or function
streams, answering, failing or too slow), bindings (pub/sub, state, a custom type), the custom
type's provider and trigger streams; they call functions, publish and set state. Registrations
may be left unsettled for the next rule. What must hold:

- once settled, ``engine::functions::list``, ``engine::workers::list``,
  ``engine::registered-triggers::list`` and every client's topology snapshot equal the model;
  a function several workers registered is listed once, owned by one of them;
- a call is answered by a handler of the model's owner, or fails with the exact error
  (``function_not_found``, ``invocation_failed`` with the handler's message, ``TIMEOUT``,
  ``invocation_stopped`` when the connection of its handler goes), never hangs;
- after a cut the client reconnects, and its functions, bindings and types are back;
- a publish or a state change reaches each bound function once, each trigger stream once;
- the provider's ``on_register``/``on_unregister`` leave it with the model's bindings;
- closing every client leaves the engine's registries, pending calls and channels empty,
  and no traceback is logged.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fuzz_strategies import fuzz_settings
from fuzz_support import LogWatch
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

import iii_rx
from iii_rx import IIIInvocationError, ReconnectConfig
from iii_rx.engine import Engine

TIMERS: dict[str, Any] = {"namespace_grace_ms": 300, "functions_available_poll_ms": 50,
                          "provider_ack_timeout_ms": 500}
FAST = ReconnectConfig(initial_delay_ms=10, max_delay_ms=50, jitter_factor=0.0)
SLOTS = 3
FIDS = ["m::a", "m::b", "m::c"]
NAMESPACES = ["default", "ns1"]
VALUES = ["v1", "v2"]
CALL_TIMEOUT_MS = 400
_names = itertools.count(1)


def wait(predicate: Callable[[], Any], what: Callable[[], str] | str,
         timeout: float = 5.0) -> None:
    """Poll a condition that has no event (the engine's lists, another client's view)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what() if callable(what) else what}")
        time.sleep(0.005)


def cut(client: Any) -> None:
    """Drop the client's socket without a close handshake, and wait until it is back."""
    old = client.worker_id
    ws = client._transport._ws
    assert ws is not None, "a connected client without a socket"
    client.loop.call_soon_threadsafe(ws.transport.abort)
    wait(lambda: client.worker_id != old and client.connection_state.name == "CONNECTED",
         "the client reconnects after a cut")


@dataclass
class Slot:
    client: Any
    name: str
    namespace: str
    functions: dict[str, Any] = field(default_factory=dict)  # id -> handle (unregister())
    modes: dict[str, str] = field(default_factory=dict)  # id -> ok / fail / slow
    bindings: dict[str, tuple[Any, str, str, str]] = field(default_factory=dict)
    """key -> (handle, trigger type, function id, config value)."""
    streams: dict[str, tuple[Any, list[Any]]] = field(default_factory=dict)
    provided: Any = None  # the handle of the "m::tick" type, when this slot provides it
    provider_active: set[str] = field(default_factory=set)
    deliveries: list[str] = field(default_factory=list)  # ids of functions a trigger fired
    topology: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class EngineAndClients(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()  # "slow" handlers wait on it (set at close)
        self.logs = LogWatch().__enter__()
        self.handle = Engine.start_in_thread(port=0, **TIMERS)
        self.slots: dict[int, Slot] = {}
        self.claims: dict[tuple[str, str], list[int]] = {}  # (namespace, id) -> slots, in order
        self.tick_provider: tuple[int, str] | None = None  # (slot, its namespace)
        self.closed_names: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ helpers

    def on_engine(self, fn: Callable[[Engine], Any]) -> Any:
        async def run() -> Any:
            return fn(self.handle.engine)
        return asyncio.run_coroutine_threadsafe(run(), self.handle.loop).result(10)

    def claimants(self, namespace: str, function_id: str) -> list[int]:
        return self.claims.get((namespace, function_id), [])

    def handler(self, slot: Slot, function_id: str) -> Callable[[Any], Any]:
        def handle(data: Any) -> Any:
            if isinstance(data, dict) and "probe" in data:
                mode = slot.modes.get(function_id, "ok")
                if mode == "fail":
                    raise ValueError(f"boom-{function_id}")
                if mode == "slow":
                    self.release.wait(3)
                return {"by": slot.name, "fid": function_id, "x": data["probe"]}
            with slot.lock:
                slot.deliveries.append(function_id)
            return None
        return handle

    def functions_listed(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.handle.call(
            "engine::functions::list", {"prefix": "m::"})["functions"]
        return rows

    def settle(self, what: str) -> None:
        wait(lambda: self.mismatch() is None, lambda: f"{what}: {self.mismatch()}")

    def mismatch(self) -> str | None:
        """What differs between the engine (and the clients' views) and the model."""
        listed = sorted((r["namespace"], r["function_id"], r["worker_name"])
                        for r in self.functions_listed())
        want = {key: {self.slots[c].name for c in slots}
                for key, slots in self.claims.items() if slots}
        keys = [(ns, fid) for ns, fid, _ in listed]
        if sorted(keys) != sorted(want):
            return f"functions listed {listed}, model {want}"
        for ns, fid, owner in listed:
            if owner not in want[(ns, fid)]:
                return f"{fid} in {ns} owned by {owner}, model {want[(ns, fid)]}"
        workers = sorted(w["name"] for w in self.handle.call("engine::workers::list", {})
                         ["workers"] if str(w["name"]).startswith("mw-"))
        if workers != sorted(s.name for s in self.slots.values()):
            return f"workers listed {workers}"
        rows = self.handle.call("engine::registered-triggers::list", {})["registered_triggers"]
        bound = sorted(r["id"] for r in rows if r["function_id"].startswith("m::"))
        model = sorted(h.id for s in self.slots.values() for h, kind, _f, _v in s.bindings.values()
                       if kind != "m::tick" or self.serves(s))
        if bound != model:
            return f"bindings listed {bound}, model {model}"
        for s in self.slots.values():
            seen = None if s.topology is None else sorted(
                (f.namespace, f.function_id, f.worker_name) for f in s.topology.functions
                if f.function_id.startswith("m::"))
            if seen != listed:
                return f"topology of {s.name}: {seen}"
        if self.tick_provider is not None:
            provider = self.slots[self.tick_provider[0]]
            ticks = {h.id for s in self.slots.values() for h, kind, _f, _v in s.bindings.values()
                     if kind == "m::tick" and self.serves(s)}
            with provider.lock:
                active = set(provider.provider_active)
            if active != ticks or set(provider.provided.bindings) != ticks:
                return f"provider holds {active} ({set(provider.provided.bindings)}), model {ticks}"
        return None

    def serves(self, binder: Slot) -> bool:
        """Whether the tick provider gets ``binder``'s bindings (its namespace, else default)."""
        return self.tick_provider is not None and \
            self.tick_provider[1] in (binder.namespace, "default")

    def pick(self, data: Any, slots: Any = None) -> int:
        return int(data.draw(st.sampled_from(sorted(self.slots if slots is None else slots))))

    def maybe_settle(self, data: Any, what: str) -> None:
        if data.draw(st.booleans(), label="settle now"):
            self.settle(what)

    # ------------------------------------------------------------------ clients

    @initialize(spaces=st.lists(st.sampled_from(NAMESPACES), min_size=2, max_size=2))
    def start(self, spaces: list[str]) -> None:
        for number, namespace in enumerate(spaces):
            self.connect_slot(number, namespace)

    @precondition(lambda self: len(self.slots) < SLOTS)
    @rule(data=st.data(), namespace=st.sampled_from(NAMESPACES), reuse=st.booleans())
    def connect(self, data: Any, namespace: str, reuse: bool) -> None:
        number = self.pick(data, [n for n in range(SLOTS) if n not in self.slots])
        name = None
        if reuse and self.closed_names:  # a closed worker's name is free again
            name, namespace = data.draw(st.sampled_from(self.closed_names))
            self.closed_names.remove((name, namespace))
        self.connect_slot(number, namespace, name)

    def connect_slot(self, number: int, namespace: str, name: str | None = None) -> None:
        name = name or f"mw-{os.getpid()}-{next(_names)}"
        client = iii_rx.connect_sync(self.handle.url, name=name, namespace=namespace,
                                     reconnect=FAST, timeout_ms=CALL_TIMEOUT_MS)
        slot = self.slots[number] = Slot(client, name, namespace)
        client.topology.subscribe(lambda snapshot: setattr(slot, "topology", snapshot))
        self.settle("after connect")

    def forget(self, number: int) -> None:
        slot = self.slots.pop(number)
        self.closed_names.append((slot.name, slot.namespace))
        for claimants in self.claims.values():
            if number in claimants:
                claimants.remove(number)
        if self.tick_provider is not None and self.tick_provider[0] == number:
            self.tick_provider = None

    @precondition(lambda self: len(self.slots) == SLOTS)
    @rule(data=st.data())
    def close(self, data: Any) -> None:
        number = self.pick(data)
        self.slots[number].client.close()
        self.forget(number)
        self.settle("after close")

    @rule(data=st.data())
    def cut_connection(self, data: Any) -> None:
        cut(self.slots[self.pick(data)].client)
        self.maybe_settle(data, "after a cut")

    # ------------------------------------------------------------------ functions

    @rule(data=st.data(), fid=st.sampled_from(FIDS),
          mode=st.sampled_from(["ok", "ok", "fail", "slow"]), as_stream=st.booleans())
    def register_function(self, data: Any, fid: str, mode: str, as_stream: bool) -> None:
        number = self.pick(data)
        slot = self.slots[number]
        if fid in slot.functions:
            return
        slot.modes[fid] = mode
        handler = self.handler(slot, fid)
        if as_stream:  # iii.function(id): registered while subscribed
            def on_next(invocation: Any) -> None:
                def answer() -> None:
                    try:
                        invocation.reply(handler(invocation.data))
                    except ValueError as exc:
                        invocation.fail(exc)
                if mode == "slow":
                    threading.Thread(target=answer, daemon=True).start()
                else:
                    answer()
            subscription = slot.client.function(fid).subscribe(on_next=on_next)
            slot.functions[fid] = _Unregister(subscription.dispose)
        else:
            slot.functions[fid] = slot.client.register_function(fid, handler)
        self.claims.setdefault((slot.namespace, fid), []).append(number)
        self.maybe_settle(data, "after register_function")

    @precondition(lambda self: any(s.functions for s in self.slots.values()))
    @rule(data=st.data())
    def unregister_function(self, data: Any) -> None:
        number = self.pick(data, [n for n, s in self.slots.items() if s.functions])
        slot = self.slots[number]
        fid = data.draw(st.sampled_from(sorted(slot.functions)))
        slot.functions.pop(fid).unregister()
        self.claims[(slot.namespace, fid)].remove(number)
        self.maybe_settle(data, "after unregister_function")

    def check_failure(self, exc: IIIInvocationError, claimants: list[int], fid: str,
                      also: set[str]) -> None:
        modes = {self.slots[c].modes[fid] for c in claimants}
        allowed = set(also) | ({"function_not_found"} if not claimants else set())
        if "fail" in modes:
            allowed.add("invocation_failed")
        if "slow" in modes:
            allowed.add("TIMEOUT")
        assert exc.code in allowed, f"{exc.code}: {exc.message} (owners {claimants}, {modes})"
        if exc.code == "invocation_failed":
            assert f"boom-{fid}" in exc.message, exc.message

    @rule(data=st.data(), fid=st.sampled_from(FIDS), namespace=st.sampled_from(NAMESPACES))
    def call(self, data: Any, fid: str, namespace: str) -> None:
        self.settle("before a call")
        caller = self.slots[self.pick(data)]
        probe = next(_names)
        claimants = self.claimants(namespace, fid)
        try:
            result = caller.client.trigger(fid, {"probe": probe}, namespace=namespace).result(5)
        except IIIInvocationError as exc:
            self.check_failure(exc, claimants, fid, set())
            return
        owners = {self.slots[c].name: self.slots[c].modes[fid] for c in claimants}
        assert owners.get(result["by"]) == "ok", (result, owners)
        assert result == {"by": result["by"], "fid": fid, "x": probe}

    @rule(data=st.data(), fid=st.sampled_from(FIDS), namespace=st.sampled_from(NAMESPACES),
          cut_owner=st.booleans())
    def cut_then_call(self, data: Any, fid: str, namespace: str, cut_owner: bool) -> None:
        """A call made at once after a cut (of the caller: queued or stopped; of the owner:
        missing for a moment) gets an answer or an allowed error, never a hang."""
        self.settle("before cut_then_call")
        caller = self.slots[self.pick(data)]
        claimants = self.claimants(namespace, fid)
        victim = self.slots[claimants[0]] if cut_owner and claimants else caller
        old = victim.client.worker_id
        ws = victim.client._transport._ws
        victim.client.loop.call_soon_threadsafe(ws.transport.abort)
        try:
            result = caller.client.trigger(fid, {"probe": 1}, namespace=namespace,
                                           timeout_ms=3000).result(5)
        except IIIInvocationError as exc:
            self.check_failure(exc, claimants, fid, {"invocation_stopped", "function_not_found"})
        else:
            assert result["by"] in {self.slots[c].name for c in claimants}, result
        wait(lambda: victim.client.worker_id != old
             and victim.client.connection_state.name == "CONNECTED", "reconnect after a cut")
        self.settle("after cut_then_call")

    def slow_single_owner(self) -> list[tuple[str, str]]:
        return sorted(k for k, c in self.claims.items()
                      if len(c) == 1 and self.slots[c[0]].modes[k[1]] == "slow")

    @precondition(lambda self: len(self.slots) >= 2 and self.slow_single_owner())
    @rule(data=st.data(), how=st.sampled_from(["cut owner", "close owner", "close caller"]))
    def lose_a_side_of_a_call(self, data: Any, how: str) -> None:
        self.settle("before a call in flight")
        namespace, fid = data.draw(st.sampled_from(self.slow_single_owner()))
        owner_number = self.claims[(namespace, fid)][0]
        caller_number = self.pick(data, [n for n in self.slots if n != owner_number])
        owner, caller = self.slots[owner_number], self.slots[caller_number]
        future = caller.client.trigger(fid, {"probe": 0}, namespace=namespace,
                                       timeout_ms=8000).future()
        wait(lambda: self.on_engine(lambda e: e.router.pending_count()) >= 1, "call in flight")
        started = time.monotonic()
        if how == "cut owner":
            cut(owner.client)
        elif how == "close owner":  # its handler may answer first, the close waits for it
            self.release.set()
            owner.client.close()
            self.release.clear()
            self.forget(owner_number)
        else:
            caller.client.close()
            self.forget(caller_number)
        try:
            future.result(5)
        except IIIInvocationError as exc:
            assert exc.code == "invocation_stopped", exc
        except iii_rx.IIIConnectionError:
            assert how == "close caller"
        else:
            assert how == "close owner", "answered after its handler's connection was cut"
        assert time.monotonic() - started < 4, "the call's end took too long"
        self.settle(f"after {how} with a call in flight")

    # ------------------------------------------------------------------ triggers

    @rule(data=st.data(), kind=st.sampled_from(["subscribe", "state", "m::tick"]),
          value=st.sampled_from(VALUES), fid=st.sampled_from(FIDS))
    def register_trigger(self, data: Any, kind: str, value: str, fid: str) -> None:
        slot = self.slots[self.pick(data)]
        key = f"{kind}|{fid}|{value}"
        if key in slot.bindings:
            return
        config = {"subscribe": {"topic": value}, "state": {"scope": value}}.get(kind, {"v": value})
        handle = slot.client.register_trigger({"type": kind, "function_id": fid,
                                               "config": config})
        slot.bindings[key] = (handle, kind, fid, value)
        self.maybe_settle(data, "after register_trigger")

    @precondition(lambda self: any(s.bindings for s in self.slots.values()))
    @rule(data=st.data())
    def unregister_trigger(self, data: Any) -> None:
        slot = self.slots[self.pick(data, [n for n, s in self.slots.items() if s.bindings])]
        slot.bindings.pop(data.draw(st.sampled_from(sorted(slot.bindings))))[0].unregister()
        self.maybe_settle(data, "after unregister_trigger")

    @precondition(lambda self: self.tick_provider is None)
    @rule(data=st.data())
    def provide_tick(self, data: Any) -> None:
        number = self.pick(data)
        slot = self.slots[number]

        def on_register(config: Any) -> None:
            with slot.lock:
                slot.provider_active.add(config.id)

        def on_unregister(config: Any) -> None:
            with slot.lock:
                slot.provider_active.discard(config.id)

        slot.provided = slot.client.register_trigger_type("m::tick", "ticks", on_register,
                                                          on_unregister)
        self.tick_provider = (number, slot.namespace)
        self.settle("after provide_tick")

    @precondition(lambda self: self.tick_provider is not None)
    @rule()
    def unprovide_tick(self) -> None:
        assert self.tick_provider is not None
        slot = self.slots[self.tick_provider[0]]
        provided, slot.provided, self.tick_provider = slot.provided, None, None
        provided.unregister()
        wait(lambda: not slot.provider_active and not provided.bindings,
             lambda: f"the bindings of a type no longer provided: {slot.provider_active}")
        self.settle("after unprovide_tick")

    @rule(data=st.data(), topic=st.sampled_from(VALUES))
    def toggle_trigger_stream(self, data: Any, topic: str) -> None:
        slot = self.slots[self.pick(data)]
        if topic in slot.streams:
            slot.streams.pop(topic)[0].dispose()
            return
        got: list[Any] = []
        slot.streams[topic] = (slot.client.subscribe(topic).subscribe(on_next=got.append), got)

        def bound() -> bool:  # another worker's publish may race the binding on its way
            rows = self.handle.call("engine::registered-triggers::list",
                                    {"include_internal": True})["registered_triggers"]
            return any(r["config"] == {"topic": topic} and r["worker_name"] == slot.name
                       and not r["function_id"].startswith("m::") for r in rows)
        wait(bound, "the trigger stream's binding")

    @rule(data=st.data(), value=st.sampled_from(VALUES), publish=st.booleans())
    def fire(self, data: Any, value: str, publish: bool) -> None:
        self.settle("before firing")
        client = self.slots[self.pick(data)].client
        kind = "subscribe" if publish else "state"
        want: dict[str, int] = {}
        for s in self.slots.values():
            for _h, bound_kind, fid, bound_value in s.bindings.values():
                if bound_kind == kind and bound_value == value and \
                        self.claimants(s.namespace, fid):
                    key = f"{s.namespace}|{fid}"
                    want[key] = want.get(key, 0) + 1
        streams = [(s.name, t, got) for s in self.slots.values()
                   for t, (_d, got) in s.streams.items()] if publish else []
        for s in self.slots.values():
            with s.lock:
                s.deliveries.clear()
        for _n, _t, got in streams:
            got.clear()
        if publish:
            client.publish(value, {"n": 1}).result(5)
        else:
            client.trigger("state::set", {"scope": value, "key": "k", "value": next(_names)},
                           namespace="default").result(5)
        wait(lambda: self.delivered() == want and all(
            len(got) == (t == value) for _n, t, got in streams),
            lambda: f"{kind} {value}: delivered {self.delivered()}, want {want}; streams "
                    f"{[(n, t, len(g)) for n, t, g in streams]}")

    def delivered(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.slots.values():
            with s.lock:
                for fid in s.deliveries:
                    counts[f"{s.namespace}|{fid}"] = counts.get(f"{s.namespace}|{fid}", 0) + 1
        return counts

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        self.release.set()
        try:
            for slot in self.slots.values():
                slot.client.close()
            self.slots.clear()

            def leaks(engine: Engine) -> str | None:
                if not engine.registry.is_empty():
                    return f"registry: workers {list(engine.registry.workers)}, leases " \
                           f"{list(engine.registry.leases)}"
                if not engine.triggers.is_empty():
                    return "worker-owned bindings or types left"
                if engine.router.pending_count() or len(engine.hub):
                    return f"{engine.router.pending_count()} calls, {len(engine.hub)} channels"
                return None
            wait(lambda: self.on_engine(leaks) is None, lambda: f"leak: {self.on_engine(leaks)}")
        finally:
            self.handle.stop()
            self.logs.__exit__()
        self.logs.assert_no_tracebacks("by the engine or a client",
                                       known=lambda r: "boom-" in r.getMessage())


class _Unregister:
    def __init__(self, unregister: Callable[[], None]) -> None:
        self.unregister = unregister


TestEngineAndClients = EngineAndClients.TestCase
TestEngineAndClients.settings = settings(
    fuzz_settings(int(os.environ.get("III_MODEL_EXAMPLES", "30"))), stateful_step_count=25)
