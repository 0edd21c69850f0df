"""The route table of the REST API: ``http`` trigger bindings as ``(METHOD, api_path)`` routes.

Rules of docs/protocol.md §6.5.1: ``api_path`` segments starting with ``:`` are parameters
(``/users/:id``); the leading ``/`` is optional; methods compare case-insensitively. A second
binding with the same method and path *replaces* the first; a binding with the same *shape* but
other parameter names (``/a/:x`` against ``/a/:y``) is refused. Unbinding removes a route only while
that binding still owns it. Matching prefers static segments over parameters, left to right
(``/users/me`` wins over ``/users/:id``). Empty segments are ignored, so a trailing ``/`` does
not matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HTTP_METHODS", "Route", "RouteError", "RouteTable", "route_from_config"]

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


class RouteError(ValueError):
    """A binding the table refuses (bad config or a shape conflict)."""


@dataclass(eq=False, slots=True)
class Route:
    """One ``http`` binding: where a request goes and with which sidecar fields."""

    trigger_id: str
    method: str
    path: str
    """The pattern as registered (sent to handlers as ``path``)."""
    function_id: str
    namespace: str = "default"
    metadata: Any = None
    condition_function_id: str | None = None
    middleware_function_ids: tuple[str, ...] = ()
    owner: Any = None
    """Whoever made the binding (compared by identity on unbind)."""
    segments: tuple[str, ...] = field(init=False)
    params: tuple[tuple[int, str], ...] = field(init=False)

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self.segments = _split(self.path)
        self.params = tuple((i, s[1:]) for i, s in enumerate(self.segments) if s.startswith(":"))

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return (self.method, self.segments)

    @property
    def shape(self) -> tuple[str, tuple[str, ...]]:
        return (self.method, tuple(":" if s.startswith(":") else s for s in self.segments))

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def _split(path: str) -> tuple[str, ...]:
    """The segments after the leading ``/``, empty ones kept (as the Rust engine matches:
    ``/items/42/`` is not ``/items/:id``, nor ``//items/42``)."""
    return tuple(path[1:].split("/") if path.startswith("/") else path.split("/"))


def route_from_config(
    trigger_id: str,
    function_id: str,
    config: Any,
    *,
    namespace: str = "default",
    metadata: Any = None,
    owner: Any = None,
) -> Route:
    """Build a :class:`Route` from an ``http`` binding's ``config`` (docs/protocol.md §6.4)."""
    if not isinstance(config, Mapping):
        raise RouteError("api_path is required for http triggers")
    api_path = config.get("api_path")
    if not isinstance(api_path, str) or not api_path.strip():
        raise RouteError("api_path is required for http triggers")
    method = config.get("http_method") or "GET"
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise RouteError(f"unsupported http_method {method!r} (one of "
                         f"{', '.join(sorted(HTTP_METHODS))})")
    condition = config.get("condition_function_id")
    middleware = config.get("middleware_function_ids") or ()
    if not isinstance(middleware, (list, tuple)):
        middleware = ()
    route = Route(
        trigger_id=trigger_id,
        method=method,
        path=api_path,
        function_id=function_id,
        namespace=namespace,
        metadata=metadata,
        condition_function_id=condition if isinstance(condition, str) and condition else None,
        middleware_function_ids=tuple(m for m in middleware if isinstance(m, str) and m),
        owner=owner,
    )
    names = [name for _, name in route.params]
    if any(not name for name in names) or len(set(names)) != len(names):
        raise RouteError(f"invalid path parameters in {api_path!r}")
    return route


class RouteTable:
    """All routes of one REST API; plain data, used on the engine's loop only."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, tuple[str, ...]], Route] = {}
        self._by_shape: dict[tuple[str, tuple[str, ...]], Route] = {}
        # Lookup: static routes by exact key, parameter routes by (method, length).
        self._static: dict[tuple[str, tuple[str, ...]], Route] = {}
        self._dynamic: dict[tuple[str, int], list[Route]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Any:
        return iter(list(self._by_key.values()))

    def add(self, route: Route) -> Route | None:
        """Insert ``route``; returns the route it replaced. Raises :class:`RouteError`."""
        holder = self._by_shape.get(route.shape)
        if holder is not None and holder.key != route.key:
            raise RouteError(
                f"Route '{route.label}' conflicts with already-registered route "
                f"'{holder.label}': routes with identical structure but different "
                "path-parameter names are not supported")
        replaced = self._by_key.get(route.key)
        if replaced is not None:
            self._unindex(replaced)
        self._by_key[route.key] = route
        self._by_shape[route.shape] = route
        if route.params:
            bucket = self._dynamic.setdefault((route.method, len(route.segments)), [])
            bucket.append(route)
            # Most specific first: static segments beat parameters, left to right.
            bucket.sort(key=lambda r: tuple(s.startswith(":") for s in r.segments))
        else:
            self._static[route.key] = route
        return replaced

    def remove(self, trigger_id: str, method: str, path: str, owner: Any = None) -> bool:
        """Remove the route at ``(method, path)`` if binding ``trigger_id`` still owns it."""
        key = (method.upper(), _split(path))
        route = self._by_key.get(key)
        if route is None or route.trigger_id != trigger_id or route.owner is not owner:
            return False
        del self._by_key[key]
        self._by_shape.pop(route.shape, None)
        self._unindex(route)
        return True

    def remove_trigger(self, trigger_id: str) -> Route | None:
        """Remove whichever route binding ``trigger_id`` owns."""
        for route in self._by_key.values():
            if route.trigger_id == trigger_id:
                self.remove(trigger_id, route.method, route.path, route.owner)
                return route
        return None

    def _unindex(self, route: Route) -> None:
        if route.params:
            bucket = self._dynamic.get((route.method, len(route.segments)), [])
            if route in bucket:
                bucket.remove(route)
        elif self._static.get(route.key) is route:
            del self._static[route.key]

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for a request and its path parameters; ``HEAD`` falls back to ``GET``.

        ``raw_path`` is the path as sent (percent-encoded, no query). Segments and parameters
        are matched and passed as sent, not decoded, as the Rust engine does (``%20`` stays
        ``%20``; decode a parameter with ``urllib.parse.unquote`` where you want it).
        """
        segments = _split(raw_path)
        found = self._match(method, segments)
        if found is None and method == "HEAD":
            found = self._match("GET", segments)
        return found

    def _match(self, method: str,
               segments: tuple[str, ...]) -> tuple[Route, dict[str, str]] | None:
        route = self._static.get((method, segments))
        if route is not None:
            return route, {}
        for candidate in self._dynamic.get((method, len(segments)), ()):
            # A parameter takes a non-empty segment (as the Rust engine: /items/ is not
            # /items/:id); a static one must be equal, empty ones too.
            if all((got != "") if want.startswith(":") else want == got
                   for want, got in zip(candidate.segments, segments, strict=True)):
                return candidate, {name: segments[i] for i, name in candidate.params}
        return None
