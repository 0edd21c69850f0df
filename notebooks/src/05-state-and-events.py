# %% [markdown]
# # State, pub/sub and queues as streams
#
# The engine's built-in workers keep state, carry pub/sub messages and run queues. iii_rx shows
# each as calls that return a `Single` and as streams:
#
# | | calls | stream |
# |---|---|---|
# | state | `iii.kv.get/set/update/delete/values` | `iii.kv.scope(name)`, `iii.kv.changes(scope, key)`: `StateChange`s |
# | pub/sub | `iii.publish(topic, data)` | `iii.subscribe(topic)`: the messages |
# | queues | `trigger(..., action=TriggerAction.enqueue(queue))`, `iii::durable::publish` | a function's invocations, `TriggerStream(iii, "durable:subscriber", ...)` |
#
# A stream binds its trigger while someone subscribes (a private function and its binding)
# and removes both when the last one leaves. Every stream is also an async iterator, the easy
# way to wait for what comes in a notebook cell.

# %%
import asyncio

from reactivex import operators as ops

import iii_rx
from iii_rx import TriggerAction
from iii_rx.kv import Op
from iii_rx.trigger_stream import TriggerStream

iii = iii_rx.connect_sync(name="state-and-events")


async def take(iterator, n, timeout=10):
    """The next n values of an async iterator (bounded wait)."""
    return [await asyncio.wait_for(anext(iterator), timeout) for _ in range(n)]


# %% [markdown]
# ## Key-value state: `iii.kv`
#
# Values live under `(scope, key)`. `set` answers the old and the new value; `update` applies
# operations atomically on the engine (`Op.set`, `Op.increment`, `Op.append`, `Op.merge`, ...).

# %%
await iii.kv.set("orders", "o1", {"status": "new", "items": ["apple"], "total": 3})

# %%
await iii.kv.update("orders", "o1", Op.set("status", "paid"), Op.increment("total", 4),
                    Op.append("pear", path="items"))

# %%
print(iii.kv.get("orders", "o1").result(timeout=5))
print(iii.kv.scopes().result(timeout=5))

# %% [markdown]
# A scope is an observable of its changes, with the same calls bound to it. Here the changes are
# read with an async iterator (subscribed when made), while the cell writes.

# %%
orders = iii.kv.scope("orders")

async with orders.iterate() as changes:
    await orders.set("o2", {"status": "new", "total": 10})
    await orders.update("o2", Op.set("status", "shipped"))
    await orders.delete("o1")
    for change in await take(changes, 3):
        print(f"{change.kind:8} {change.key}: {change.old_value} -> {change.new_value}")

# %% [markdown]
# The same stream in Rx style: the running total of all orders, from each change's old and new
# value. The subscriber keeps each figure (it runs on the client's loop thread); an iterator
# opened after it tells the cell when the engine has fired all seven changes.

# %%
totals = []


def delta(change):
    before = (change.old_value or {}).get("total", 0)
    after = (change.new_value or {}).get("total", 0)
    return after - before


total_subscription = orders.pipe(
    ops.map(delta),
    ops.scan(lambda acc, d: acc + d, 0),
).subscribe(totals.append)

async with orders.iterate() as seen:
    for n in range(3, 8):
        await orders.set(f"o{n}", {"status": "new", "total": n * 10})
    await orders.update("o3", Op.increment("total", 5))
    await orders.delete("o4")
    await take(seen, 7)
total_subscription.dispose()
totals

# %% [markdown]
# ## Pub/sub: `iii.publish` and `iii.subscribe`
#
# Fire and forget: every subscriber of a topic gets each message once, exactly as published; a
# message published while nobody subscribes is gone.

# %%
news = iii.subscribe("news")
alerts = []
alert_subscription = news.pipe(
    ops.filter(lambda m: m["level"] == "alert"),
    ops.map(lambda m: m["text"].upper()),
).subscribe(alerts.append)

async with news.iterate() as everything:
    await iii.publish("news", {"level": "info", "text": "deploy started"})
    await iii.publish("news", {"level": "alert", "text": "disk almost full"})
    await iii.publish("news", {"level": "info", "text": "deploy done"})
    print("all:   ", [m["text"] for m in await take(everything, 3)])
alert_subscription.dispose()
print("alerts:", alerts)

# %% [markdown]
# ## Queues
#
# ### A named queue, consumed as a stream of invocations
#
# `TriggerAction.enqueue("resize")` hands a call to the engine's queue: the caller gets a
# receipt at once, and the engine delivers the call to the function, retrying it (with
# backoff) when it fails. Here the function is a stream the notebook **pulls** from: each
# invocation is answered with `reply()`, or `fail()` to have the queue deliver it again.

# %%
jobs = iii.function("jobs::resize")

async with jobs.iterate() as deliveries:
    receipts = [await iii.trigger("jobs::resize", {"image": n},
                                  action=TriggerAction.enqueue("resize"))
                for n in range(4)]
    print("receipts:", [r["messageReceiptId"][:8] for r in receipts])
    attempts = {}
    while len([n for n, a in attempts.items() if a[-1] == "done"]) < 4:
        invocation = await asyncio.wait_for(anext(deliveries), 10)
        n = invocation.data["image"]
        if n == 2 and n not in attempts:
            invocation.fail(RuntimeError("thumbnailer busy"))   # retried after a backoff
            attempts[n] = ["failed"]
        else:
            invocation.reply({"image": n, "size": [320, 200]})
            attempts.setdefault(n, []).append("done")
attempts

# %% [markdown]
# ### Durable topics: `iii::durable::publish` and `durable:subscriber`
#
# A durable topic queues each message for every function bound to it with a
# `durable:subscriber` trigger. `TriggerStream` makes any trigger an observable; the messages it
# receives are acknowledged as they are emitted.

# %%
audit = TriggerStream(iii, "durable:subscriber", {"topic": "audit"})

async with audit.iterate() as entries:
    for action in ("login", "export", "logout"):
        await iii.trigger("iii::durable::publish",
                          {"topic": "audit", "data": {"user": "ada", "action": action}})
    print([entry["action"] for entry in await take(entries, 3)])

# %% [markdown]
# A subscriber that keeps failing ends in the **dead-letter queue**: after its retries the
# message is kept aside, listed by `engine::queue::dlq_messages` and put back by
# `iii::queue::redrive`. The binding's `queue_config` sets fast retries for this demo.

# %%
strict_calls = []


def ledger_rules(data):
    strict_calls.append(data)
    if data.get("amount", 0) < 0:
        raise ValueError(f"negative amount: {data['amount']}")
    return None


# The handler looks the rules up at each call, so a later cell can change them.
iii.register_function("ledger::post", lambda data: ledger_rules(data))
iii.register_trigger({"type": "durable:subscriber", "function_id": "ledger::post",
                      "config": {"topic": "ledger",
                                 "queue_config": {"maxRetries": 1, "backoffDelayMs": 50}}})
await iii.trigger("iii::durable::publish", {"topic": "ledger", "data": {"amount": -5}})

dead = []
for _ in range(100):      # the retry is 50 ms away: look a few times
    dead = await iii.trigger("engine::queue::dlq_messages", {"topic": "ledger"})
    if dead:
        break
    await asyncio.sleep(0.05)
[(m["function_id"], m["payload"], m["retries"], m["error"]) for m in dead]

# %% [markdown]
# Fix the subscriber (a negative amount is a refund) by redefining its rules, then redrive the
# dead letters. (Registering `ledger::post` again from this cell would raise `ValueError`: only
# a re-run of the cell that registered it replaces the handler; see `docs/client.md`, Jupyter.)

# %%
def ledger_rules(data):
    strict_calls.append(data)
    return {"refund": -data["amount"]} if data["amount"] < 0 else None


print(await iii.trigger("iii::queue::redrive", {"queue": "ledger"}))
for _ in range(100):
    if len(strict_calls) == 3:       # two failed deliveries, then this one
        break
    await asyncio.sleep(0.05)
strict_calls, await iii.trigger("engine::queue::dlq_messages", {"topic": "ledger"})

# %% [markdown]
# ## What is bound now
#
# Streams nobody subscribes to hold nothing on the engine: only `ledger::post` and its
# binding are left (registered explicitly above).

# %%
listing = await iii.trigger("engine::registered-triggers::list", {})
print([(t["trigger_type"], t["function_id"]) for t in listing["registered_triggers"]])
iii.close()
print("closed")
