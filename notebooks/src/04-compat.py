# %% [markdown]
# # The conventional API next to the reactive one
#
# `iii_rx.compat` is the official `iii-sdk` surface (`register_worker`, `trigger`,
# `trigger_async`, ...) as a thin layer over the reactive client: a script written for the
# official SDK switches by changing its imports. This notebook runs both side by side on one
# engine, each calling the other.
#
# The official SDK always connects to an address, so this notebook starts a standalone
# embedded engine first (as `iii-rx engine` does in a shell).

# %%
import asyncio

from reactivex import operators as ops

import iii_rx
from iii_rx.compat import InitOptions, InvocationError, TriggerAction, register_worker
from iii_rx.engine import Engine

engine = Engine.start_in_thread(port=0)          # ephemeral port, its own thread
engine.url

# %%
worker = register_worker(engine.url, InitOptions(worker_name="conventional"))
iii = iii_rx.connect_sync(engine.url, name="reactive")
worker.get_connection_state(), iii.connection_state.value

# %% [markdown]
# ## Registering a function
#
# | conventional | reactive |
# |---|---|
# | `worker.register_function(id, handler)` returns a `FunctionRef` (`.unregister()`) | `iii.register_function(id, handler)` returns a `FunctionHandle`, or `iii.function(id)` is a stream of invocations |

# %%
def greet(data):
    return {"message": f"Hello, {data['name']}!"}


greet_ref = worker.register_function("hello::greet", greet, description="greets someone")

shout = iii.function("text::shout").pipe(
    ops.filter(lambda inv: isinstance(inv.data, str)),
).subscribe(lambda inv: inv.reply(inv.data.upper()))

for function_id in ("hello::greet", "text::shout"):      # both callable now
    print(iii.wait_for_function_sync(function_id, timeout=10))

# %% [markdown]
# ## Calling
#
# | conventional | reactive |
# |---|---|
# | `worker.trigger({"function_id": ..., "payload": ...})` blocks and returns the result | `iii.trigger(id, payload)` is a lazy `Single`: `.result()` blocks... |
# | `await worker.trigger_async({...})` | ...and `await` awaits, from any loop |
#
# Each side calls the other's function:

# %%
print("conventional -> reactive:", worker.trigger({"function_id": "text::shout",
                                                    "payload": "hi there"}))
print("reactive -> conventional:", iii.trigger("hello::greet", {"name": "Ada"}).result())

# %%
both = await asyncio.gather(
    worker.trigger_async({"function_id": "hello::greet", "payload": {"name": "async"}}),
    iii.trigger("hello::greet", {"name": "await"}),
)
both

# %% [markdown]
# Only the reactive `Single` composes with operators; a `retry` re-invokes, since every
# subscription is a new call.

# %%
await iii.trigger("hello::greet", {"name": "Grace"}).pipe(
    ops.map(lambda answer: answer["message"].split(", ")[1]),
)

# %% [markdown]
# ## Actions and errors
#
# `TriggerAction` is the same object in both APIs. `Void()` fires and forgets; `Enqueue()`
# hands the call to a queue and returns a receipt. Errors: compat raises the official name
# `InvocationError`, which is the reactive client's `iii_rx.IIIInvocationError`: one class,
# with `code`, `message` and `stacktrace`.

# %%
print(worker.trigger({"function_id": "hello::greet", "payload": {"name": "void"},
                      "action": TriggerAction.Void()}))
print(iii.trigger("hello::greet", {"name": "q"},
                  action=TriggerAction.Enqueue(queue="greetings")).result())

try:
    worker.trigger({"function_id": "hello::greet", "payload": {}})     # KeyError in handler
except InvocationError as e:
    print("compat:  ", type(e).__name__, e.code)
try:
    iii.trigger("hello::greet", {}).result()
except iii_rx.IIIInvocationError as e:
    print("reactive:", type(e).__name__, e.code)
print(InvocationError is iii_rx.IIIInvocationError)

# %% [markdown]
# ## Connection state
#
# | conventional | reactive |
# |---|---|
# | `worker.get_connection_state()`, `worker.add_connection_state_listener(cb)` | `iii.connection_state`, `iii.state` (an observable that replays the current state) |

# %%
conventional_states, reactive_states = [], []
stop_listening = worker.add_connection_state_listener(conventional_states.append)
reactive_subscription = iii.state.subscribe(lambda s: reactive_states.append(s.value))
# Both get the current state now and every change later (shown after the shutdown below).

# %% [markdown]
# ## The reactive client under the conventional one
#
# `worker.client` is the `iii_rx.Client` underneath: the conventional worker gets streams too.
# Here its invocation stream counts what it serves.

# %%
served = []
counting = worker.client.invocations.subscribe(lambda inv: served.append(inv.function_id))
for name in ["a", "b", "c"]:
    iii.trigger("hello::greet", {"name": name}).result()
counting.dispose()
served

# %% [markdown]
# ## Shutting down
#
# `worker.shutdown()` and `iii.close()` each end their connection; the engine, started by this
# notebook, is stopped last.

# %%
greet_ref.unregister()
shout.dispose()
worker.shutdown()
iii.close()
engine.stop()
stop_listening()
print("conventional:", worker.get_connection_state(), conventional_states)
print("reactive:    ", iii.connection_state.value, reactive_states)
