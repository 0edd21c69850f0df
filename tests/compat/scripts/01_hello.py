"""Register a sync function and call it: dict request, TriggerRequest model, address from III_URL."""

import os
import sys
import time

# --- iii imports ---
from iii import InitOptions, register_worker
from iii.iii_types import TriggerRequest
# --- end iii imports ---

iii = register_worker(options=InitOptions(worker_name="compat-hello"))


def wait_for_function(function_id: str) -> None:
    """The engine applies registrations asynchronously: poll discovery until it lists the id."""
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


def greet(data):
    return {"message": f"Hello, {data['name']}!"}


try:
    ref = iii.register_function("hello::greet", greet, description="Greets someone")
    wait_for_function("hello::greet")
    print("ref id:", ref.id)
    print("dict request:", iii.trigger({"function_id": "hello::greet", "payload": {"name": "world"}}))
    request = TriggerRequest(function_id="hello::greet", payload={"name": "model"})
    print("model request:", iii.trigger(request))
    print("state:", iii.get_connection_state())
    print("address is III_URL:", iii.get_address() == os.environ["III_URL"])
finally:
    iii.shutdown()
print("state after shutdown:", iii.get_connection_state())
