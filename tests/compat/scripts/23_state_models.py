"""The iii.state models and the iii_helpers.stream update operations against the engine's
state worker: inputs built as models, results read back into models, a state trigger's event
parsed as StateEventData."""

import os
import queue
import sys
import time

# --- iii imports ---
from iii import InitOptions, register_worker
from iii.state import (
    StateDeleteInput,
    StateDeleteResult,
    StateEventData,
    StateEventType,
    StateGetInput,
    StateListInput,
    StateSetInput,
    StateSetResult,
    StateUpdateInput,
    StateUpdateResult,
)
from iii_helpers.stream import UpdateAppend, UpdateIncrement, UpdateMerge, UpdateRemove, UpdateSet
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-state-models"))
scope = f"carts-{os.getpid()}"
events: "queue.Queue[dict]" = queue.Queue()


def call(function_id: str, payload):
    return iii.trigger({"function_id": function_id, "payload": payload})


def on_change(data):
    events.put(data)
    return None


try:
    iii.register_function("carts::changed", on_change)
    trigger = iii.register_trigger({"type": "state", "function_id": "carts::changed", "config": {"scope": scope}})
    for _ in range(1000):
        listed = call("engine::registered-triggers::list", {})
        if any(t["function_id"] == "carts::changed" for t in listed["registered_triggers"]):
            break
        time.sleep(0.01)
    else:
        sys.exit("the state trigger never became active")

    result = StateSetResult[dict].model_validate(
        call("state::set", StateSetInput(scope=scope, key="c1", value={"items": [], "total": 0})))
    print("set:", result)
    ops = [
        UpdateAppend(path="items", value="apple"),
        UpdateIncrement(path="total", by=3),
        UpdateMerge(value={"owner": "ana"}),
        UpdateSet(path="status", value="open"),
        UpdateRemove(path="owner"),
    ]
    print("ops on the wire:", [op.model_dump() for op in ops])
    updated = StateUpdateResult[dict].model_validate(
        call("state::update", StateUpdateInput(scope=scope, key="c1", ops=ops)))
    print("update:", updated.new_value)
    print("get:", call("state::get", StateGetInput(scope=scope, key="c1")))
    print("list:", call("state::list", StateListInput(scope=scope)))
    deleted = call("state::delete", StateDeleteInput(scope=scope, key="c1"))
    print("delete:", StateDeleteResult(old_value=deleted))
    seen = []
    for _ in range(3):
        event = StateEventData[dict].model_validate(events.get(timeout=10))
        seen.append((event.event_type, event.key, event.old_value, event.new_value))
    for row in seen:
        print("event:", row)
    print("types:", [t.value for t in StateEventType])
    trigger.unregister()
finally:
    iii.shutdown()
