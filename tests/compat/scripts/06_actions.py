"""TriggerAction.Void() and dict actions: fire-and-forget calls return None at once; the handler
still runs (with an invocation context); an enqueue is accepted by the engine's queue (its
target here is never registered, so no delivery can reach a later run's handler)."""

import os
import sys
import threading
import time

# --- iii imports ---
from iii import InitOptions, InvocationError, TriggerAction, register_worker
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-actions"))
received: list = []
done = threading.Event()


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


def notify(data, metadata=None):
    ctx = iii.current_invocation()
    received.append(
        {
            "to": data["to"],
            "metadata": metadata,
            "context function": ctx.function_id if ctx else None,
            "context has id": bool(ctx and ctx.invocation_id),
        }
    )
    if len(received) == 2:
        done.set()
    return "ignored"


try:
    iii.register_function("mail::notify", notify)
    wait_for_function("mail::notify")
    first = iii.trigger(
        {"function_id": "mail::notify", "payload": {"to": "a"}, "action": TriggerAction.Void(), "metadata": {"m": 1}}
    )
    second = iii.trigger({"function_id": "mail::notify", "payload": {"to": "b"}, "action": {"type": "void"}})
    print("void returns:", first, second)
    print("handler ran twice:", done.wait(10))
    for entry in sorted(received, key=lambda e: e["to"]):
        print("received:", entry)
    try:
        iii.trigger(
            {"function_id": "mail::queued", "payload": {"to": "c"}, "action": TriggerAction.Enqueue(queue="mail"),
             "timeout_ms": 3000}
        )
        print("enqueue: accepted")
    except InvocationError as err:
        print("enqueue:", err.code)
    print("enqueue action model:", TriggerAction.Enqueue(queue="mail").model_dump())
    print("void action model:", TriggerAction.Void().model_dump())
finally:
    iii.shutdown()
