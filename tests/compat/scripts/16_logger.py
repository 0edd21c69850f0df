"""Logger from iii_helpers.observability: with OpenTelemetry disabled it falls back to the
standard `iii.logger` logging logger, inside and outside handlers."""

import logging
import os
import sys
import time

# --- iii imports ---
from iii import InitOptions, register_worker
from iii_helpers.observability import Logger
# --- end iii imports ---


class PrintHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(f"log {record.levelname} {record.getMessage()} data={getattr(record, 'data', None)}")


log = logging.getLogger("iii.logger")
log.addHandler(PrintHandler())
log.setLevel(logging.DEBUG)

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-logger"))
logger = Logger(service_name="orders")


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


def process(data):
    Logger().info("processing order", {"order_id": data["order_id"]})
    if data["amount"] > 1000:
        logger.warn("large order", {"amount": data["amount"]})
    return {"ok": True}


async def audit(data):
    logger.debug("audit", data.get("note"))
    return None


try:
    logger.info("worker ready")
    logger.info("config", {"retries": 3, "region": "eu"})
    iii.register_function("orders::process", process)
    iii.register_function("orders::audit", audit)
    wait_for_function("orders::process")
    wait_for_function("orders::audit")
    print("result:", iii.trigger({"function_id": "orders::process", "payload": {"order_id": "o-1", "amount": 5000}}))
    print("result:", iii.trigger({"function_id": "orders::audit", "payload": {"note": "checked"}}))
    logger.error("shutting down", {"reason": "done"})
finally:
    iii.shutdown()
