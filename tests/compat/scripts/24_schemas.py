"""Request and response schemas derived from a handler's type hints (pydantic models, scalars,
lists, optionals) as register_function sends them; engine::functions::info shows them
(request_schema / response_schema)."""

import json
import os
import sys
import time
from typing import Optional

from pydantic import BaseModel, Field

# --- iii imports ---
from iii import InitOptions, register_worker
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-schemas"))


class Order(BaseModel):
    id: str
    quantity: int = Field(ge=1, description="How many")
    note: Optional[str] = None


class Receipt(BaseModel):
    order_id: str
    accepted: bool


async def place(order: Order) -> Receipt:
    return Receipt(order_id=order["id"], accepted=True)


def count(words: list[str]) -> int:
    return len(words)


def maybe(value: Optional[float]) -> dict[str, bool]:
    return {"given": value is not None}


def untyped(data):
    return data


def explicit(data: Order) -> Receipt:
    return data


HANDLERS = {
    "schemas::place": (place, {}),
    "schemas::count": (count, {}),
    "schemas::maybe": (maybe, {}),
    "schemas::untyped": (untyped, {}),
    "schemas::explicit": (explicit, {"request_format": {"type": "object", "title": "given"}}),
}

try:
    for function_id, (handler, options) in HANDLERS.items():
        iii.register_function(function_id, handler, **options)
    for function_id in HANDLERS:
        for _ in range(1000):
            listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
            if any(f["function_id"] == function_id for f in listed["functions"]):
                break
            time.sleep(0.01)
        else:
            sys.exit(f"{function_id} never showed up")
        info = iii.trigger({"function_id": "engine::functions::info", "payload": {"function_id": function_id}})
        print(function_id)
        print("  request:", json.dumps(info.get("request_schema"), sort_keys=True))
        print("  response:", json.dumps(info.get("response_schema"), sort_keys=True))
    print("call:", iii.trigger({"function_id": "schemas::place", "payload": {"id": "o1", "quantity": 2}}))
finally:
    iii.shutdown()
