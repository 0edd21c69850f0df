"""One connection's RBAC session: what its ``AuthResult`` granted, and the access rule.

The auth function (``rbac.auth_function_id``) runs once per websocket upgrade with
``AuthInput {headers, query_params, ip_address}`` and returns ``AuthResult``; without an auth
function every connection gets the permissive session below. Access to a function (docs/protocol.md
§4.6), in this order:

1. in ``forbidden_functions`` → denied (also an infrastructure id; that is logged);
2. granted by ``namespaces`` (``{ns: [id or pattern]}``) in that namespace → allowed;
3. in ``allowed_functions`` (namespace ``default`` only) → allowed;
4. one of the infrastructure functions → allowed;
5. any ``expose_functions`` filter matches (a listener without ``rbac``: everything) → allowed;
6. otherwise denied (``FORBIDDEN``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.logsafe import RateLimitedLog, printable
from iii_rx.engine.rbac_config import (
    INFRASTRUCTURE_FUNCTIONS,
    RbacConfig,
    parse_match,
    wildcard_matches,
)

__all__ = ["AuthError", "Session", "auth_input", "forbidden_message", "header_map",
           "session_from_result"]

log = logging.getLogger("iii_rx.engine")


class AuthError(Exception):
    """The auth function refused the connection, failed, or answered something unusable."""


@dataclass
class Session:
    """What one connection may do (``AuthResult`` with its documented defaults)."""

    rbac: RbacConfig | None = None
    allowed_functions: frozenset[str] = frozenset()
    forbidden_functions: frozenset[str] = frozenset()
    namespaces: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allowed_trigger_types: frozenset[str] | None = None
    allow_trigger_type_registration: bool = False
    allow_function_registration: bool = True
    function_registration_prefix: str | None = None
    context: Any = field(default_factory=dict)
    warnings: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log), repr=False,
                                     compare=False)
    """Where a forbidden infrastructure function is warned about: the engine's budget."""

    def allows(self, function_id: str, namespace: str, metadata: Any) -> bool:
        """The access rule of the module docstring."""
        if function_id in self.forbidden_functions:
            if function_id in INFRASTRUCTURE_FUNCTIONS:
                self.warnings.log(logging.WARNING, "rbac_infra", "the auth result forbids the "
                                  "infrastructure function %s: the worker may fail to "
                                  "register, log or propagate context", printable(function_id))
            return False
        grants = self.namespaces.get(namespace)
        if grants and any(_grant_matches(g, function_id) for g in grants):
            return True
        if namespace == DEFAULT_NAMESPACE and function_id in self.allowed_functions:
            return True
        if function_id in INFRASTRUCTURE_FUNCTIONS:
            return True
        if self.rbac is None:
            return True
        return self.rbac.exposes(function_id, namespace, metadata)

    def local_id(self, function_id: str) -> str:
        """The id a registration of ``function_id`` gets (``{prefix}::{id}`` with a prefix)."""
        prefix = self.function_registration_prefix
        return f"{prefix}::{function_id}" if prefix else function_id


def forbidden_message(session: Session, function_id: str) -> str:
    """The ``FORBIDDEN`` message, with the remedy the Rust engine names."""
    remedy = ("remove from rbac.forbidden_functions" if function_id in session.forbidden_functions
              else "add to rbac.expose_functions")
    return f"function '{function_id}' not allowed ({remedy})"


def _grant_matches(grant: str, function_id: str) -> bool:
    raw = parse_match(grant) or grant
    return raw == function_id or ("*" in raw and wildcard_matches(raw, function_id))


def auth_input(path: str, headers: Any, remote: Any) -> dict[str, Any]:
    """``AuthInput``: lower-case header names (repeats joined with ``, ``), every query value
    per key, and the peer's IP address."""
    query = parse_qs(urlsplit(path).query, keep_blank_values=True)
    ip = str(remote[0]) if isinstance(remote, tuple) and remote else ""
    return {"headers": header_map(headers), "query_params": query, "ip_address": ip}


def header_map(headers: Any) -> dict[str, str]:
    """Request headers (``raw_items()``) by lower-case name, a repeated one's values joined
    with ``, `` (as HTTP reads them), so an auth function sees every value."""
    joined: dict[str, str] = {}
    for name, value in headers.raw_items():
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


def session_from_result(result: Any, rbac: RbacConfig | None,
                        warnings: RateLimitedLog | None = None) -> Session:
    """Read an ``AuthResult``; raises :class:`AuthError` for anything else. ``warnings``: the
    engine's budget of peer-caused lines (a session read alone gets its own)."""
    if result is None:
        raise AuthError("auth function returned no result")
    if not isinstance(result, dict):
        raise AuthError(f"auth function returned {type(result).__name__}, not an AuthResult "
                        "object")
    prefix = result.get("function_registration_prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise AuthError("AuthResult.function_registration_prefix must be a string")
    raw_types = result.get("allowed_trigger_types")
    namespaces = result.get("namespaces") or {}
    if not isinstance(namespaces, dict) or not all(
            isinstance(v, list) and all(isinstance(g, str) for g in v)
            for v in namespaces.values()):
        raise AuthError("AuthResult.namespaces must map namespaces to lists of function ids")
    context = result.get("context")
    return Session(
        rbac=rbac,
        allowed_functions=frozenset(_strings(result, "allowed_functions")),
        forbidden_functions=frozenset(_strings(result, "forbidden_functions")),
        namespaces={str(k): tuple(v) for k, v in namespaces.items()},
        allowed_trigger_types=(None if raw_types is None
                               else frozenset(_strings(result, "allowed_trigger_types"))),
        allow_trigger_type_registration=_flag(result, "allow_trigger_type_registration", False),
        allow_function_registration=_flag(result, "allow_function_registration", True),
        function_registration_prefix=prefix or None,
        context=context if context is not None else {},
        warnings=warnings if warnings is not None else RateLimitedLog(log),
    )


def _strings(result: dict[str, Any], key: str) -> list[str]:
    value = result.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuthError(f"AuthResult.{key} must be a list of strings")
    return value


def _flag(result: dict[str, Any], key: str, default: bool) -> bool:
    value = result.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise AuthError(f"AuthResult.{key} must be a boolean")
    return value
