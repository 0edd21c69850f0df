"""A custom stream (IStream + create_stream): the engine forwards stream::get/set/delete/list/
list_groups on that stream name to the worker's implementation; stream::update stays in the
engine. The models of iii_helpers.stream build and read the payloads."""

from __future__ import annotations

import os
import sys
import time
import warnings

# --- iii imports ---
from iii import IStream, InitOptions, register_worker
from iii.helpers import create_stream
from iii_helpers.stream import (
    StreamDeleteInput,
    StreamDeleteResult,
    StreamGetInput,
    StreamListGroupsInput,
    StreamListInput,
    StreamSetInput,
    StreamSetResult,
    StreamUpdateInput,
    StreamUpdateResult,
)
# --- end iii imports ---

warnings.simplefilter("ignore", FutureWarning)
STREAM = f"todo-{os.getpid()}"


class Todos(IStream[dict]):
    def __init__(self) -> None:
        self.groups: dict[str, dict[str, dict]] = {}

    async def get(self, input: StreamGetInput) -> dict | None:
        return self.groups.get(input.group_id, {}).get(input.item_id)

    async def set(self, input: StreamSetInput) -> StreamSetResult[dict] | None:
        items = self.groups.setdefault(input.group_id, {})
        old = items.get(input.item_id)
        items[input.item_id] = input.data
        return StreamSetResult[dict](old_value=old, new_value=input.data)

    async def delete(self, input: StreamDeleteInput) -> StreamDeleteResult:
        return StreamDeleteResult(old_value=self.groups.get(input.group_id, {}).pop(input.item_id, None))

    async def list(self, input: StreamListInput) -> list[dict]:
        return list(self.groups.get(input.group_id, {}).values())

    async def list_groups(self, input: StreamListGroupsInput) -> list[str]:
        return sorted(self.groups)

    async def update(self, input: StreamUpdateInput) -> StreamUpdateResult[dict] | None:
        return None


url = os.environ["III_URL"]
owner = register_worker(url, InitOptions(worker_name="compat-stream-owner"))
user = register_worker(url, InitOptions(worker_name="compat-stream-user"))


def call(function_id: str, payload):
    return user.trigger({"function_id": function_id, "payload": payload})


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = user.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


try:
    todos = Todos()
    create_stream(owner, STREAM, todos)
    for op in ("get", "set", "delete", "list", "list_groups"):
        wait_for_function(f"stream::{op}({STREAM})")
    key = {"stream_name": STREAM, "group_id": "inbox", "item_id": "t1"}
    print("set:", call("stream::set", StreamSetInput(**key, data={"title": "write"})))
    print("set again:", call("stream::set", {**key, "data": {"title": "ship"}}))
    print("held by the worker:", todos.groups)
    print("get:", call("stream::get", StreamGetInput(**key)))
    print("list:", call("stream::list", {"stream_name": STREAM, "group_id": "inbox"}))
    print("groups:", call("stream::list_groups", {"stream_name": STREAM}))
    print("delete:", call("stream::delete", key))
    print("delete absent:", call("stream::delete", key))
    print("list after:", call("stream::list", {"stream_name": STREAM, "group_id": "inbox"}))
    info = user.trigger({"function_id": "engine::functions::info",
                         "payload": {"function_id": f"stream::list_groups({STREAM})"}})
    print("list_groups response_schema:", info.get("response_schema"))
finally:
    user.shutdown()
    owner.shutdown()
