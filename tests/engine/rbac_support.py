"""Helpers of the RBAC, middleware and listener tests: an engine with a guarded listener and a
trusted worker (an iii_rx client on the main port) that provides the auth function, the
middleware, the hooks and the functions the guarded workers call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from raw_engine_client import RawWorker, wait_until

from iii_rx import Client, connect
from iii_rx.engine import Engine
from iii_rx.engine.listeners import Listener
from iii_rx.engine.rbac_config import FunctionFilter, RbacConfig, Wildcard

TOKENS: dict[str, dict[str, Any]] = {
    "plain": {"context": {"user": "plain"}},
    "allow": {"allowed_functions": ["priv::echo"], "context": {"user": "allow"}},
    "deny": {"forbidden_functions": ["pub::echo", "engine::log::info"],
             "context": {"user": "deny"}},
    "admin": {"allow_trigger_type_registration": True, "context": {"user": "admin"},
              "allowed_functions": ["w::on-type", "w::on-trigger"]},  # it may serve these hooks
    "prefix": {"function_registration_prefix": "tenant-a", "context": {"user": "prefix"}},
    "readonly": {"allow_function_registration": False, "allowed_trigger_types": ["t-ok"],
                 "context": {"user": "readonly"}},
    "orders": {"namespaces": {"orders": ["svc::*"]}, "context": {"user": "orders"}},
    "orders-admin": {"namespaces": {"orders": ["svc::*"]},
                     "allow_trigger_type_registration": True, "context": {"user": "orders"}},
}
"""What the test auth function grants per ``x-token`` header (no header: refused)."""

EXPOSE = (
    FunctionFilter.match("pub::*"),
    FunctionFilter.match("engine::functions::list"),
    FunctionFilter.match("engine::functions::info"),
    FunctionFilter.meta(public=True),
    FunctionFilter.meta(tier="free", name=Wildcard("*public*")),
)


@dataclass
class Trusted:
    """The trusted worker: what its auth function and hooks saw."""

    client: Client
    auth_inputs: list[dict[str, Any]] = field(default_factory=list)
    middleware_inputs: list[dict[str, Any]] = field(default_factory=list)
    hook_inputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def rbac(**hooks: str) -> RbacConfig:
    return RbacConfig(auth_function_id="t::auth", expose_functions=EXPOSE, **hooks)


@asynccontextmanager
async def guarded_engine(*listeners: Listener,
                         hooks: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
                         ) -> AsyncIterator[tuple[Engine, Trusted]]:
    """An engine with ``listeners`` and the trusted worker connected to its main port."""
    async with Engine(port=0, namespace_grace_ms=300, listeners=listeners) as engine, \
            connect(engine.url, name="trusted") as client:
        trusted = Trusted(client)

        def auth(data: dict[str, Any]) -> dict[str, Any]:
            trusted.auth_inputs.append(data)
            token = data["headers"].get("x-token")
            if token not in TOKENS:
                raise ValueError(f"bad token {token!r}")
            return TOKENS[token]

        async def middleware(data: dict[str, Any]) -> Any:
            trusted.middleware_inputs.append(data)
            if data["payload"].get("short") is True:
                return {"short_circuited": True}
            payload = {**data["payload"], "_via_middleware": data["context"].get("user", "none")}
            return await client.trigger(data["function_id"], payload,
                                        namespace=data["namespace"])

        def hook(name: str, decide: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
            def run(data: dict[str, Any]) -> Any:
                trusted.hook_inputs.setdefault(name, []).append(data)
                return decide(data)
            return run

        client.register_function("t::auth", auth)
        client.register_function("t::middleware", middleware)
        for name, decide in (hooks or {}).items():
            client.register_function(name, hook(name, decide))
        client.register_function("pub::echo", lambda data: {"echo": data})
        client.register_function("priv::echo", lambda data: {"private": data})
        client.register_function("meta::public", lambda data: "meta-public",
                                 metadata={"public": True})
        client.register_function("meta::both", lambda data: "both",
                                 metadata={"tier": "free", "name": "a-public-one"})
        client.register_function("meta::tier-only", lambda data: "tier-only",
                                 metadata={"tier": "free", "name": "private"})
        wanted = {"t::auth", "t::middleware", "pub::echo", "priv::echo", "meta::public",
                  "meta::both", "meta::tier-only", *(hooks or {})}
        await wait_until(lambda: wanted <= {fid for _, fid in engine.registry.functions})
        yield engine, trusted


def port_url(engine: Engine, index: int = 1, query: str = "") -> str:
    """``ws://`` URL of listener ``index`` (0 = the main port)."""
    return engine.listener_urls[index] + ("/?" + query if query else "")


async def raw(engine: Engine, token: str | None, index: int = 1, query: str = "",
              **kwargs: Any) -> RawWorker:
    """A raw worker on listener ``index`` presenting ``token`` (``x-token``)."""
    headers = {"x-token": token} if token is not None else {}
    return await RawWorker.connect(port_url(engine, index, query), additional_headers=headers,
                                   **kwargs)
