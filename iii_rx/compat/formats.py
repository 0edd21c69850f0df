"""Request and response schemas derived from a handler's type hints, as the official SDK does.

``register_function`` without an explicit ``request_format`` / ``response_format`` sends the
JSON schema of the handler's first parameter's annotation and of its return annotation, so
``engine::functions::info`` (and every tool that reads it) shows what the function takes and
gives. The mapping is the official SDK 0.25's, so both clients send the same schema for the
same handler:

* a pydantic model → its ``model_json_schema()``;
* ``str`` / ``int`` / ``float`` / ``bool`` → ``{"type": "string" | "integer" | "number" |
  "boolean"}``; ``None`` → ``{"type": "null"}``;
* ``list[X]`` → ``{"type": "array", "items": X}`` (no ``items`` when ``X`` has no schema);
  ``dict[K, V]`` → ``{"type": "object", "additionalProperties": V}``;
* ``X | None`` → ``X``'s schema with ``"type": [type, "null"]``;
* anything else (no annotation, ``Any``, other unions, unresolvable hints) → no schema.

A derived schema carries ``"$schema"`` (JSON Schema draft 2020-12); an explicit format wins and
is sent as given (a pydantic class as its schema).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

__all__ = ["DRAFT", "annotation_schema", "request_schema", "resolve_format", "response_schema"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _optional_inner(annotation: Any) -> Any:
    """``X`` of ``X | None`` / ``Optional[X]``; ``None`` when ``annotation`` is not one."""
    if typing.get_origin(annotation) not in (types.UnionType, typing.Union):
        return None
    args = typing.get_args(annotation)
    others = [arg for arg in args if arg is not type(None)]
    return others[0] if len(args) == 2 and len(others) == 1 else None


def _schema(annotation: Any) -> dict[str, Any] | None:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None
    inner = _optional_inner(annotation)
    if inner is not None:
        schema = _schema(inner)
        if schema is not None and "type" in schema:
            schema["type"] = [schema["type"], "null"]
        return schema
    if annotation is type(None):
        return {"type": "null"}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is list or origin is list:
        result: dict[str, Any] = {"type": "array"}
        items = _schema(args[0]) if args else None
        if items is not None:
            result["items"] = items
        return result
    if annotation is dict or origin is dict:
        result = {"type": "object"}
        values = _schema(args[1]) if len(args) >= 2 else None
        if values is not None:
            result["additionalProperties"] = values
        return result
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return dict(annotation.model_json_schema())
    return None


def annotation_schema(annotation: Any) -> dict[str, Any] | None:
    """The JSON schema of a type annotation (with ``$schema``), ``None`` if it has none."""
    schema = _schema(annotation)
    if schema is not None:
        schema["$schema"] = DRAFT
    return schema


def _hints(handler: Callable[..., Any]) -> dict[str, Any] | None:
    try:
        return typing.get_type_hints(handler)
    except Exception:  # unresolvable forward references, objects without annotations
        return None


def request_schema(handler: Any) -> dict[str, Any] | None:
    """The schema of ``handler``'s first parameter's annotation, if any."""
    if not callable(handler):
        return None
    hints = _hints(handler)
    if hints is None:
        return None
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return None
    if not params:
        return None
    return annotation_schema(hints.get(params[0].name, inspect.Parameter.empty))


def response_schema(handler: Any) -> dict[str, Any] | None:
    """The schema of ``handler``'s return annotation, if any."""
    if not callable(handler):
        return None
    hints = _hints(handler)
    if hints is None:
        return None
    return annotation_schema(hints.get("return", inspect.Parameter.empty))


def resolve_format(fmt: Any) -> Any:
    """An explicit format as sent: a class (a pydantic model, ``int``...) becomes its schema."""
    if isinstance(fmt, type):
        return annotation_schema(fmt)
    return fmt
