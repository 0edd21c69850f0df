# %% [markdown]
# # iii_rx quickstart
#
# This notebook connects a worker to an iii engine, registers functions two ways, calls them
# with `await` and with a blocking call, and watches the connection.
#
# No engine to install: `connect_sync()` without an address (and without `III_URL`) starts the
# **embedded engine** in this process, on ephemeral ports, owned by the client. Pass
# `"ws://host:49134"` to use a real iii engine instead; nothing else changes.
#
# In a notebook use `connect_sync()`: the client runs on its own loop thread, so a cell can
# both `await` a call (on the kernel's loop) and block on it with `.result()`.

# %%
import asyncio

from reactivex import operators as ops

import iii_rx

iii = iii_rx.connect_sync(name="quickstart")
print("connected to", iii.url, "as", iii.name, "-", iii.connection_state)

# %% [markdown]
# ## Watching the connection
#
# `iii.state` is an observable of `ConnectionState` that replays the current state to each new
# subscriber. Subscribers run on the client's loop thread; here they only append to a list.

# %%
states = []
state_subscription = iii.state.subscribe(states.append)
[s.value for s in states]

# %% [markdown]
# ## A function with a handler
#
# A sync handler runs in the client's thread pool; an async one runs as a task on the client's
# loop. The return value is the result; a raise fails the call.

# %%
def add(data):
    return data["a"] + data["b"]


async def slow_square(data):
    await asyncio.sleep(0.01)
    return data * data


add_handle = iii.register_function("math::add", add, description="adds two numbers")
iii.register_function("math::square", slow_square)
add_handle

# %% [markdown]
# ## Calling: `await` or block
#
# `iii.trigger(...)` returns a **`Single`**, a lazy observable of one value: nothing is sent
# until it is awaited, blocked on or subscribed, and every use calls again.

# %%
await iii.trigger("math::add", {"a": 2, "b": 40})

# %%
iii.trigger("math::square", 12).result(timeout=5)

# %%
call = iii.trigger("math::add", {"a": 1, "b": 1})
call        # nothing sent yet: the repr says so

# %%
[await call, await call]  # two awaits, two calls

# %% [markdown]
# Many calls at once: the client multiplexes them over one connection.

# %%
squares = await asyncio.gather(*(iii.trigger("math::square", n) for n in range(20)))
squares[:10]

# %% [markdown]
# Failures arrive as typed errors; `e.code` says what happened.

# %%
try:
    await iii.trigger("math::nope", {})
except iii_rx.IIIInvocationError as e:
    print(type(e).__name__, e.code, "-", e.message)

try:
    await iii.trigger("math::add", {"a": 1})          # the handler raises KeyError
except iii_rx.IIIInvocationError as e:
    print(type(e).__name__, e.code, "-", e.message)

# %% [markdown]
# A `Single` composes with Rx operators, and stays a `Single` (awaitable, blockable).

# %%
await iii.trigger("math::square", 9).pipe(ops.map(lambda v: {"square": v, "even": v % 2 == 0}))

# %% [markdown]
# ## A function as a subscription
#
# `iii.function(id)` is the stream of that function's invocations. The first subscription
# registers the function with the engine, disposing the last one unregisters it. Each
# subscriber answers with `reply()` (or `fail()`); Rx operators shape the stream.

# %%
shout = iii.function("text::shout", description="upper-cases text").pipe(
    ops.filter(lambda inv: isinstance(inv.data, str)),
).subscribe(lambda inv: inv.reply(inv.data.upper() + "!"))

await iii.trigger("text::shout", "hello")

# %% [markdown]
# `iii.invocations` shows every invocation this worker receives, before its function sees it:
# count them per function while we call a few.

# %%
seen = {}
counting = iii.invocations.subscribe(
    lambda inv: seen.__setitem__(inv.function_id, seen.get(inv.function_id, 0) + 1))
await asyncio.gather(*(iii.trigger("text::shout", w) for w in ["a", "b", "c"]),
                     iii.trigger("math::add", {"a": 1, "b": 2}))
counting.dispose()
seen

# %% [markdown]
# The engine lists what this worker registered (`engine::functions::list` is a built-in
# function, called like any other).

# %%
listing = iii.trigger("engine::functions::list", {}).result(timeout=5)
sorted(f["function_id"] for f in listing["functions"] if f["worker_name"] == iii.name)

# %% [markdown]
# ## Unregistering and closing
#
# Disposing the subscription unregisters `text::shout`; `add_handle.unregister()` removes
# `math::add`. Closing the client stops its embedded engine and its loop thread; the state
# stream ends with `disconnected`.

# %%
shout.dispose()
add_handle.unregister()
print(iii.function_ids)
iii.close()
print([s.value for s in states])
