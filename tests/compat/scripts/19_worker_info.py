"""Worker name and description as the engine reports them, and III_WORKER_NAME overriding the
option."""

import os
import sys
import time

# --- iii imports ---
from iii import InitOptions, register_worker
# --- end iii imports ---

url = os.environ["III_URL"]
iii = register_worker(
    url, InitOptions(worker_name="compat-inventory", worker_description="Keeps stock levels for the demo shop")
)


def worker_row(name: str, functions: int):
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::workers::list", "payload": {}})
        rows = [w for w in listed["workers"] if w["name"] == name]
        if rows and rows[0]["function_count"] == functions:
            return rows[0]
        time.sleep(0.01)
    sys.exit(f"worker {name} never listed with {functions} functions")


try:
    iii.register_function("stock::get", lambda data: {"sku": data["sku"], "qty": 3})
    iii.register_function("stock::set", lambda data: None, description="Set a stock level")
    row = worker_row("compat-inventory", 2)
    for key in ("name", "description", "namespace", "runtime", "status", "function_count", "isolation"):
        print(f"{key}: {row[key]}")
    print("worker_id matches:", row["id"] == iii.worker_id)

    os.environ["III_WORKER_NAME"] = "compat-from-env"
    second = register_worker(url, InitOptions(worker_name="compat-ignored"))
    try:
        env_row = worker_row("compat-from-env", 0)
        print("env override:", env_row["name"], env_row["description"])
    finally:
        second.shutdown()
finally:
    iii.shutdown()
