"""``Engine(...)`` spells out every knob of ``EngineConfig`` as a keyword (for editors and the
docs); the two lists of defaults must not drift apart."""

from __future__ import annotations

import dataclasses
import inspect

from iii_rx.engine import Engine
from iii_rx.engine.config import EngineConfig


def test_every_config_field_is_an_engine_keyword_with_the_same_default() -> None:
    keywords = inspect.signature(Engine).parameters
    for field in dataclasses.fields(EngineConfig):
        assert field.name in keywords, f"Engine() does not take {field.name}"
        default = keywords[field.name].default
        assert default == field.default, (
            f"{field.name}: Engine() defaults to {default!r}, EngineConfig to {field.default!r}")


def test_an_engine_with_no_arguments_has_the_default_config() -> None:
    assert Engine().config == EngineConfig()
