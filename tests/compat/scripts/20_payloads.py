"""JSON payloads and results round-trip unchanged: no payload, scalars, unicode, nesting, large
integers; pydantic models in payloads and results are sent by alias without None fields."""

import os
import sys
import time

from pydantic import BaseModel, Field

# --- iii imports ---
from iii import InitOptions, InvocationError, register_worker
from iii.iii_types import TriggerRequest
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-payloads"))


class Receipt(BaseModel):
    receipt_id: str = Field(alias="receiptId")
    total_cents: int
    note: str | None = None
    lines: list[str] = []


class Order(BaseModel):
    sku: str
    qty: int = 1
    gift: bool | None = None


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


def echo(data):
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "_caller_worker_id"}
    return {"type": type(data).__name__, "value": data}


def receipt(data):
    return Receipt(receiptId=f"r-{data['n']}", total_cents=data["n"] * 100, lines=["a", "b"])


def nothing(data):
    return None


def as_tuple(data):
    return (1, "two", 3.5)


payloads = [
    0,
    -7,
    1.25,
    2**53 + 1,
    True,
    "",
    "héllo wörld ✓ 日本",
    [],
    [1, [2, [3, None]]],
    {},
    {"nested": {"list": [{"k": "v"}], "flag": False, "none": None}},
]

try:
    iii.register_function("echo::value", echo)
    iii.register_function("echo::receipt", receipt)
    iii.register_function("echo::nothing", nothing)
    iii.register_function("echo::tuple", as_tuple)
    for fid in ("echo::value", "echo::receipt", "echo::nothing", "echo::tuple"):
        wait_for_function(fid)
    # Without a payload the official SDK leaves `data` out of the frame; the 0.23 Rust engine
    # drops such a frame (docs/protocol.md §11 row 4), an engine that defaults it to null answers.
    for label, request in (("no payload key", {}), ("payload None", {"payload": None})):
        try:
            print(f"{label}:", iii.trigger({"function_id": "echo::value", "timeout_ms": 3000, **request}))
        except InvocationError as err:
            print(f"{label}: {err.code}")
    for payload in payloads:
        print(repr(payload), "->", iii.trigger({"function_id": "echo::value", "payload": payload}))
    print("model payload:", iii.trigger({"function_id": "echo::value", "payload": Order(sku="x-1")}))
    print("request model:", iii.trigger(TriggerRequest(function_id="echo::value", payload={"a": [1]})))
    print("model result:", iii.trigger({"function_id": "echo::receipt", "payload": {"n": 3}}))
    print("None result:", iii.trigger({"function_id": "echo::nothing", "payload": {}}))
    print("tuple result:", iii.trigger({"function_id": "echo::tuple", "payload": {}}))
finally:
    iii.shutdown()
