"""The official SDK's stream/state names in ``iii_rx.compat`` and the schemas derived from type
hints: the same names, fields and JSON as the installed official ``iii-sdk`` 0.25 gives.

(The scripts that use them against an engine, official SDK and compat side by side, are
``tests/compat/scripts/22_custom_stream.py``, ``23_state_models.py`` and ``24_schemas.py``.)
"""

from __future__ import annotations

import importlib
from typing import Any, Optional, Union

import pytest
from pydantic import BaseModel, Field

from iii_rx import compat
from iii_rx.compat import formats


@pytest.mark.parametrize("module", ["iii.state", "iii_helpers.stream"])
def test_every_state_and_stream_name_is_exported(module: str) -> None:
    official = importlib.import_module(module)
    names = getattr(official, "__all__", None) or [
        n for n in dir(official) if not n.startswith("_") and n[0].isupper()
        and n != "TData" and getattr(getattr(official, n), "__module__", "") == module]
    missing = sorted(set(names) - set(compat.__all__))
    assert not missing, missing
    for name in ("IStream", "create_stream"):
        assert name in compat.__all__


@pytest.mark.parametrize("module", ["iii.state", "iii_helpers.stream"])
def test_the_models_have_the_official_fields(module: str) -> None:
    official = importlib.import_module(module)
    for name in dir(official):
        value = getattr(official, name)
        if isinstance(value, type) and issubclass(value, BaseModel) and name in compat.__all__:
            ours = getattr(compat, name)
            assert list(ours.model_fields) == list(value.model_fields), name
            for field, info in value.model_fields.items():
                assert ours.model_fields[field].is_required() == info.is_required(), (name, field)


def test_update_operations_dump_as_the_official_ones() -> None:
    from iii_helpers import stream as official

    cases: list[tuple[str, dict[str, Any]]] = [
        ("UpdateSet", {"path": "a", "value": 1}), ("UpdateIncrement", {"path": "n", "by": 2}),
        ("UpdateDecrement", {"path": "n", "by": 1.5}), ("UpdateRemove", {"path": "x"}),
        ("UpdateAppend", {"value": "s"}), ("UpdateAppend", {"path": ["a", "b"], "value": 1}),
        ("UpdateMerge", {"value": {"k": 1}}), ("UpdateMerge", {"path": "m", "value": {}}),
    ]
    for name, fields in cases:
        theirs = getattr(official, name)(**fields)
        ours = getattr(compat, name)(**fields)
        assert ours.model_dump() == theirs.model_dump(), name
        assert ours.model_dump_json() == theirs.model_dump_json(), name


class Order(BaseModel):
    id: str
    quantity: int = Field(ge=1)
    note: Optional[str] = None  # noqa: UP045 (the official SDK's users write both spellings)


async def typed(order: Order) -> list[Order]:
    return []


def scalars(x: int) -> Optional[bool]:  # noqa: UP045
    return None


def mapping(x: dict[str, list[float]]) -> None:
    pass


def unions(x: Union[int, str]) -> Any:  # noqa: UP007
    return x


def modern(x: str | None) -> dict:  # type: ignore[type-arg]
    return {}


def nothing():  # type: ignore[no-untyped-def]
    pass


def forward(x: NotDefinedAnywhere) -> int:  # type: ignore[name-defined]  # noqa: F821
    return 0


class CallableObject:
    def __call__(self, data: Order) -> int:
        return 0


@pytest.mark.parametrize("handler", [typed, scalars, mapping, unions, modern, nothing, forward,
                                     CallableObject(), lambda data: data])
def test_derived_schemas_equal_the_official_sdk(handler: Any) -> None:
    from iii.format_utils import extract_request_format, extract_response_format

    assert formats.request_schema(handler) == extract_request_format(handler)
    assert formats.response_schema(handler) == extract_response_format(handler)


def test_what_the_schemas_say() -> None:
    request = formats.request_schema(typed)
    assert request is not None and request["title"] == "Order"
    assert request["$schema"] == formats.DRAFT
    assert formats.response_schema(typed) == {
        "type": "array", "items": Order.model_json_schema(), "$schema": formats.DRAFT}
    assert formats.request_schema(scalars) == {"type": "integer", "$schema": formats.DRAFT}
    assert formats.response_schema(scalars) == {"type": ["boolean", "null"],
                                                "$schema": formats.DRAFT}
    assert formats.request_schema(nothing) is None
    assert formats.resolve_format(Order)["title"] == "Order"
    assert formats.resolve_format({"type": "object"}) == {"type": "object"}
