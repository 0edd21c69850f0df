"""Channel refs in a handler's payload become live ends wherever they are (docs/protocol.md
§7.6)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import iii_rx
from iii_rx.channels import ChannelReader, ChannelWriter, resolve_channel_refs
from iii_rx.engine import Engine
from iii_rx.protocol import StreamChannelRef

READ = {"channel_id": "r/1", "access_key": "k 1", "direction": "read"}
WRITE = {"channel_id": "w", "access_key": "k2", "direction": "write"}


def resolve(value: Any) -> Any:
    return resolve_channel_refs(value, engine_url="ws://h:1/", headers={"X": "y"})


def test_refs_at_every_depth_and_in_every_container() -> None:
    data = {"top": READ, "list": [1, "s", None, [WRITE]], "tuple": ("a", READ, 2.5),
            "ordered": OrderedDict(x=WRITE), "model": StreamChannelRef(**READ),
            "after": {"n": 1}}
    out = resolve(data)
    assert isinstance(out["top"], ChannelReader)
    assert out["top"].url == "ws://h:1/ws/channels/r%2F1?key=k%201&dir=read"
    assert isinstance(out["list"][3][0], ChannelWriter) and out["list"][:3] == [1, "s", None]
    assert isinstance(out["tuple"], tuple) and isinstance(out["tuple"][1], ChannelReader)
    assert out["tuple"][0] == "a" and out["tuple"][2] == 2.5
    assert isinstance(out["ordered"]["x"], ChannelWriter)
    assert isinstance(out["model"], ChannelReader)
    assert list(out) == list(data)  # key order kept
    assert out["after"] is data["after"]  # parts without refs are not copied
    assert data["top"] is READ and data["list"][3][0] is WRITE  # the input is not changed
    assert isinstance(resolve([READ])[0], ChannelReader)
    assert isinstance(resolve(READ), ChannelReader)


def test_values_without_refs_come_back_as_they_are() -> None:
    look_alikes: list[Any] = [
        {"channel_id": "c", "access_key": 1, "direction": "read"},
        {"channel_id": "c", "access_key": "k", "direction": "sideways"},
        {"access_key": "k"}, {"channel_id": "c", "direction": "read"},
    ]
    for value in [*look_alikes, {"x": [1, {"y": (2, "z")}]}, [], (), "access_key", 3, None]:
        assert resolve(value) is value


async def test_refs_reach_the_handler_as_live_ends(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        def kinds(data: Any) -> list[str]:
            return [type(data["in"]).__name__, type(data["deep"][0]["out"]).__name__,
                    type(data["plain"]).__name__]

        iii.register_function("refs::kinds", kinds)
        assert await iii.trigger("refs::kinds", {"in": READ, "deep": [{"out": WRITE}],
                                                 "plain": {"access_key": "k"}}) == [
            "ChannelReader", "ChannelWriter", "dict"]
