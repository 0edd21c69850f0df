"""A namespaced worker: its calls and functions live in its namespace unless a call names
another; engine::* calls still reach the engine; a blank namespace is refused locally."""

import os
import sys
import time

# --- iii imports ---
from iii import InitOptions, InvocationError, register_worker
# --- end iii imports ---

url = os.environ["III_URL"]
orders = register_worker(url, InitOptions(worker_name="compat-ns-orders", namespace="orders"))
plain = register_worker(url, InitOptions(worker_name="compat-ns-plain"))


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = orders.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


def create(data):
    return {"created": data["item"]}


try:
    orders.register_function("orders::create", create)
    wait_for_function("orders::create")
    listed = orders.trigger({"function_id": "engine::functions::list", "payload": {"prefix": "orders::"}})
    print("listed:", [(f["function_id"], f["namespace"]) for f in listed["functions"]])
    print("same namespace:", orders.trigger({"function_id": "orders::create", "payload": {"item": "a"}}))
    print(
        "explicit namespace:",
        plain.trigger({"function_id": "orders::create", "payload": {"item": "b"}, "namespace": "orders"}),
    )
    for label, client, request in (
        ("default from namespaced worker", orders, {"namespace": "default"}),
        ("no namespace from plain worker", plain, {}),
    ):
        try:
            client.trigger({"function_id": "orders::create", "payload": {"item": "c"}, **request})
        except InvocationError as err:
            print(f"{label}: {err.code}: {err.message}")
    try:
        orders.trigger({"function_id": "orders::create", "payload": {}, "namespace": "  "})
    except ValueError as err:
        print("blank namespace:", type(err).__name__)
finally:
    plain.shutdown()
    orders.shutdown()
