"""Bind a function to the engine's own `engine::workers-available` trigger with the
RegisterTriggerInput model; another worker connecting and leaving fires it."""

import os
import sys
import threading
import time

# --- iii imports ---
from iii import InitOptions, register_worker
from iii.iii_types import RegisterTriggerInput
# --- end iii imports ---

url = os.environ["III_URL"]
watcher = register_worker(url, InitOptions(worker_name="compat-watcher"))
events: list[tuple[str, str, dict]] = []
lock = threading.Lock()
changed = threading.Condition(lock)


def on_workers(data, metadata=None):
    with changed:
        events.append((data["event"], data["worker_id"], metadata))
        changed.notify_all()
    return None


def wait_for(predicate, what: str) -> None:
    with changed:
        if not changed.wait_for(predicate, timeout=10):
            sys.exit(f"timed out waiting for {what}: {events}")


def binding_active() -> bool:
    result = watcher.trigger({"function_id": "engine::registered-triggers::list", "payload": {}})
    return any(t["function_id"] == "watch::workers" for t in result["registered_triggers"])


try:
    watcher.register_function("watch::workers", on_workers)
    trigger = watcher.register_trigger(
        RegisterTriggerInput(
            type="engine::workers-available", function_id="watch::workers", config={}, metadata={"via": "compat"}
        )
    )
    for _ in range(1000):
        if binding_active():
            break
        time.sleep(0.01)
    else:
        sys.exit("binding never became active")

    guest = register_worker(url, InitOptions(worker_name="compat-guest"))
    for _ in range(1000):
        if guest.worker_id is not None:
            break
        time.sleep(0.01)
    guest_id = guest.worker_id
    if guest_id is None:
        sys.exit("the guest never learned its worker id")

    def guest_events() -> set[str]:
        return {event for event, worker_id, _ in events if worker_id == guest_id}

    wait_for(lambda: {"worker_connected", "worker_metadata_updated"} <= guest_events(), "connect events")
    guest.shutdown()
    wait_for(lambda: "worker_disconnected" in guest_events(), "disconnect event")
    print("guest events:", sorted(guest_events()))
    print("binding metadata:", {str(m) for _, w, m in events if w == guest_id})
    trigger.unregister()
finally:
    watcher.shutdown()
