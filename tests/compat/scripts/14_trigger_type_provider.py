"""A worker-provided trigger type: the provider learns bindings through its TriggerHandler and fires
them with trigger(), passing the binding's metadata; unbinding reaches the provider."""

import os
import sys
import threading
import time

# --- iii imports ---
from iii import InitOptions, register_worker
from iii.trigger import TriggerConfig, TriggerHandler
# --- end iii imports ---

url = os.environ["III_URL"]
provider = register_worker(url, InitOptions(worker_name="compat-ticker-provider"))
consumer = register_worker(url, InitOptions(worker_name="compat-ticker-consumer"))

bindings: dict[str, TriggerConfig] = {}
bound = threading.Event()
unbound = threading.Event()
unbound_configs: list[TriggerConfig] = []


class TickerHandler(TriggerHandler):
    async def register_trigger(self, config: TriggerConfig) -> None:
        bindings[config.id] = config
        bound.set()

    async def unregister_trigger(self, config: TriggerConfig) -> None:
        bindings.pop(config.id, None)
        unbound_configs.append(config)
        unbound.set()


def on_tick(data, metadata=None):
    return {"tick": data["tick"], "team": (metadata or {}).get("team")}


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = provider.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


try:
    provider.register_trigger_type({"id": "ticker", "description": "Emits numbered ticks"}, TickerHandler())
    consumer.register_function("app::on-tick", on_tick)
    wait_for_function("app::on-tick")
    trigger = consumer.register_trigger(
        {"type": "ticker", "function_id": "app::on-tick", "config": {"every": 2}, "metadata": {"team": "blue"}}
    )
    print("bound:", bound.wait(10))
    (config,) = bindings.values()
    print("config type:", type(config).__name__, isinstance(config, TriggerConfig))
    print("binding:", config.function_id, config.config, config.metadata, config.namespace)
    for tick in range(3):
        print(
            "fired:",
            provider.trigger(
                {"function_id": config.function_id, "payload": {"tick": tick}, "metadata": config.metadata}
            ),
        )
    trigger.unregister()
    print("unbound:", unbound.wait(10))
    print("unbound same id:", unbound_configs[0].id == config.id, "remaining:", len(bindings))
    provider.unregister_trigger_type({"id": "ticker", "description": "Emits numbered ticks"})
finally:
    consumer.shutdown()
    provider.shutdown()
