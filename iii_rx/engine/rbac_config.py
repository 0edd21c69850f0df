"""What an RBAC listener is configured with, and the function filters of ``expose_functions``.

The Rust engine's ``rbac`` block of an ``iii-worker-manager`` entry (docs/engine-config.md):
``auth_function_id``, ``expose_functions`` and the three registration hooks. A filter is either
``match("pattern")`` (``*`` matches any run of characters, anchored at both ends) or
``{metadata: {key: value, ...}}`` (every key must match; a value may itself be
``match("...")``); a function is exposed when **any** filter matches. A filter answers in the
namespace it names (``namespace:``) or in ``default`` when it names none (docs/protocol.md §4.6).

The parsers raise :class:`~iii_rx.engine.config_file.ConfigValueError` naming the key, so a bad
file fails at start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from iii_rx.engine.config import DEFAULT_NAMESPACE

__all__ = [
    "INFRASTRUCTURE_FUNCTIONS",
    "ConfigValueError",
    "FunctionFilter",
    "RbacConfig",
    "Wildcard",
    "parse_match",
    "parse_rbac",
    "wildcard_matches",
]

INFRASTRUCTURE_FUNCTIONS = frozenset({
    "engine::channels::create",
    "engine::workers::register",
    "engine::log::info",
    "engine::log::warn",
    "engine::log::error",
    "engine::log::debug",
    "engine::log::trace",
    "engine::baggage::get",
    "engine::baggage::set",
    "engine::baggage::get_all",
})
"""Always allowed on an RBAC listener, whatever ``expose_functions`` says (connection setup,
logging and context propagation); only ``forbidden_functions`` can deny them."""

_MATCH = re.compile(r"""^\s*match\((?:"(.*)"|'(.*)')\)\s*$""", re.S)


class ConfigValueError(ValueError):
    """A bad value at ``key`` (relative to the file); ``expected`` says what would do."""

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(f"{key}: {expected}")
        self.key = key
        self.expected = expected


def wildcard_matches(pattern: str, value: str) -> bool:
    """``*`` matches any run of characters (none included); the rest must match exactly.

    The first and last pieces anchor the ends and each piece between is taken at its leftmost
    place after the one before: time linear in ``value`` per piece, whatever the pattern. (A
    regular expression backtracks: ``*::a::*::b::*`` against a long id a peer sends could hold
    the engine's loop for hours.)"""
    if "*" not in pattern:
        return pattern == value
    first, *middle, last = pattern.split("*")
    end = len(value) - len(last)
    if end < len(first) or not value.startswith(first) or not value.endswith(last):
        return False
    at = len(first)
    for piece in middle:
        found = value.find(piece, at, end)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def parse_match(text: str) -> str | None:
    """The pattern of ``match("...")`` (or ``match('...')``), else ``None``."""
    found = _MATCH.match(text)
    if found is None:
        return None
    return found.group(1) if found.group(1) is not None else found.group(2)


@dataclass(frozen=True)
class Wildcard:
    """A metadata value written ``match("...")``: matches strings by :func:`wildcard_matches`."""

    pattern: str

    def matches(self, value: Any) -> bool:
        return isinstance(value, str) and wildcard_matches(self.pattern, value)


@dataclass(frozen=True)
class FunctionFilter:
    """One ``expose_functions`` entry: an id pattern, or metadata every key of which must match."""

    pattern: str | None = None
    metadata: Mapping[str, Any] | None = None
    namespace: str | None = None

    @classmethod
    def match(cls, pattern: str, namespace: str | None = None) -> FunctionFilter:
        """``match("pattern")``: the function id against a ``*`` wildcard."""
        return cls(pattern=pattern, namespace=namespace)

    @classmethod
    def meta(cls, namespace: str | None = None, **expected: Any) -> FunctionFilter:
        """``metadata: {...}``: each value exact, or a :class:`Wildcard` for strings."""
        return cls(metadata=dict(expected), namespace=namespace)

    def matches(self, function_id: str, namespace: str, metadata: Any) -> bool:
        if (self.namespace or DEFAULT_NAMESPACE) != namespace:
            return False
        if self.pattern is not None:
            return wildcard_matches(self.pattern, function_id)
        if not isinstance(metadata, dict) or self.metadata is None:
            return False
        for key, want in self.metadata.items():
            if key not in metadata:
                return False
            got = metadata[key]
            if isinstance(want, Wildcard):
                if not want.matches(got):
                    return False
            elif not _same_json(got, want):
                return False
        return True


def _same_json(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1`` (Python's ``==`` says it is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


@dataclass(frozen=True)
class RbacConfig:
    """The ``rbac`` block of one listener."""

    auth_function_id: str | None = None
    expose_functions: tuple[FunctionFilter, ...] = field(default_factory=tuple)
    on_function_registration_function_id: str | None = None
    on_trigger_registration_function_id: str | None = None
    on_trigger_type_registration_function_id: str | None = None

    def exposes(self, function_id: str, namespace: str, metadata: Any) -> bool:
        """Whether any filter matches (an empty list exposes nothing)."""
        return any(f.matches(function_id, namespace, metadata) for f in self.expose_functions)


_RBAC_KEYS = ("auth_function_id", "expose_functions", "on_function_registration_function_id",
              "on_trigger_registration_function_id", "on_trigger_type_registration_function_id")


def parse_rbac(value: Any, key: str) -> RbacConfig:
    """An ``rbac`` mapping from the config file."""
    if not isinstance(value, dict):
        raise ConfigValueError(key, "expected a mapping (auth_function_id, expose_functions, "
                               "on_*_registration_function_id)")
    for name in value:
        if name not in _RBAC_KEYS:
            raise ConfigValueError(f"{key}.{name}", "unknown key (expected one of "
                                   + ", ".join(_RBAC_KEYS) + ")")
    ids: dict[str, str | None] = {}
    for name in _RBAC_KEYS[:1] + _RBAC_KEYS[2:]:
        ids[name] = optional_function_id(value.get(name), f"{key}.{name}")
    raw_filters = value.get("expose_functions")
    if raw_filters is None:
        raw_filters = []
    if not isinstance(raw_filters, list):
        raise ConfigValueError(f"{key}.expose_functions", "expected a list of filters")
    filters = tuple(parse_filter(item, f"{key}.expose_functions[{i}]")
                    for i, item in enumerate(raw_filters))
    return RbacConfig(
        auth_function_id=ids["auth_function_id"], expose_functions=filters,
        on_function_registration_function_id=ids["on_function_registration_function_id"],
        on_trigger_registration_function_id=ids["on_trigger_registration_function_id"],
        on_trigger_type_registration_function_id=ids[
            "on_trigger_type_registration_function_id"])


def optional_function_id(value: Any, key: str) -> str | None:
    """A function id or nothing."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigValueError(key, f"expected a function id (a non-empty string), got "
                               f"{value!r}")
    return value


def parse_filter(value: Any, key: str) -> FunctionFilter:
    """``match("...")``, or a mapping with ``metadata`` (or ``match``) and ``namespace``."""
    if isinstance(value, str):
        pattern = parse_match(value)
        if pattern is None:
            raise ConfigValueError(key, f'expected match("pattern"), got {value!r}')
        return FunctionFilter(pattern=pattern)
    if not isinstance(value, dict):
        raise ConfigValueError(key, 'expected match("pattern") or a mapping with metadata')
    namespace = value.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace.strip()):
        raise ConfigValueError(f"{key}.namespace", "expected a non-blank namespace")
    extra = set(value) - {"metadata", "match", "namespace"}
    if extra or ("metadata" in value) == ("match" in value):
        raise ConfigValueError(key, "expected exactly one of metadata or match (and optionally "
                               "namespace)")
    if "match" in value:
        pattern = value["match"]
        if not isinstance(pattern, str):
            raise ConfigValueError(f"{key}.match", "expected a pattern string")
        return FunctionFilter(pattern=parse_match(pattern) or pattern, namespace=namespace)
    metadata = value["metadata"]
    if not isinstance(metadata, dict) or not metadata:
        raise ConfigValueError(f"{key}.metadata", "expected a non-empty mapping of metadata "
                               "keys to values")
    expected: dict[str, Any] = {}
    for name, want in metadata.items():
        pattern = parse_match(want) if isinstance(want, str) else None
        expected[str(name)] = Wildcard(pattern) if pattern is not None else want
    return FunctionFilter(metadata=expected, namespace=namespace)
