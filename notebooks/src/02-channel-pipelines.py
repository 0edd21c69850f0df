# %% [markdown]
# # Channel pipelines
#
# Invocation payloads are small JSON; a dataset goes through a **channel**, a one-way,
# backpressured pipe through the engine, and only the channel's *ref* travels in the payload.
# Here a generated sensor dataset is streamed through channels both ways, as a CBOR sequence
# (one CBOR item per record), batched, decoded and aggregated with operators, and plotted.

# %%
import asyncio
import math
import random
from statistics import mean

import matplotlib.pyplot as plt
from reactivex import operators as ops

import iii_rx
from iii_rx.operators import batch, batched, cbor_items, decode_cbor

iii = iii_rx.connect_sync(name="pipelines")

SENSORS = ["north", "south", "east", "west"]


def readings(n, seed=7):
    """n records of four sensors: a slow wave per sensor, plus noise."""
    rng = random.Random(seed)
    for i in range(n):
        k = i % len(SENSORS)
        step = i // len(SENSORS)
        value = 20 + 5 * math.sin(step / 1200 + k) + rng.gauss(0, 0.8)
        yield {"sensor": SENSORS[k], "step": step, "value": round(value, 3)}


next(readings(1))

# %% [markdown]
# ## Into a worker: the pull form
#
# `stats::by_sensor` receives the **reader** end of a channel in its payload (the ref became a
# live `ChannelReader` before the handler ran). It pulls CBOR items in batches of 500 with the
# async-iterator operators `cbor_items` and `batched`: the next chunk is read only when the loop
# asks for it, so a slow consumer slows the writer instead of filling memory.

# %%
async def by_sensor(data):
    stats = {}
    batches = 0
    async with batched(cbor_items(data["rows"]), max_items=500) as rows_in_batches:
        async for rows in rows_in_batches:
            batches += 1
            for row in rows:
                s = stats.setdefault(row["sensor"], {"n": 0, "sum": 0.0, "min": math.inf,
                                                     "max": -math.inf})
                s["n"] += 1
                s["sum"] += row["value"]
                s["min"] = min(s["min"], row["value"])
                s["max"] = max(s["max"], row["value"])
    return {"batches": batches,
            "sensors": {k: {**v, "mean": v["sum"] / v["n"]} for k, v in stats.items()}}


iii.register_function("stats::by_sensor", by_sensor)

# %% [markdown]
# The notebook writes 20,000 records to the writer end while the function reads. `.future()`
# starts the call at once (a `Single` is lazy); `writer.buffered()` gathers the small CBOR
# items into 64 KiB frames.

# %%
channel = await iii.create_channel_async()
summary_call = iii.trigger("stats::by_sensor", {"rows": channel.reader_ref}).future()

writer = channel.writer.buffered()
for row in readings(20_000):
    await writer.write_obj(row)
await writer.close()

summary = await asyncio.wrap_future(summary_call)
print(summary["batches"], "batches")
{k: round(v["mean"], 2) for k, v in summary["sensors"].items()}

# %% [markdown]
# ## Out of a worker: the Rx form
#
# Now the other way round: `data::generate` writes records to the **writer** end it receives,
# and the notebook reads the reader end as an observable. `reader.chunks` emits byte chunks;
# `decode_cbor()` turns them into records, `batch(max_items=400)` into groups of 100 steps of
# the four sensors, and `map` into one mean per sensor and group.

# %%
async def generate(data):
    async with data["out"] as out:                  # closes the stream when done
        buffered = out.buffered()
        for row in readings(data["n"], seed=data["seed"]):
            await buffered.write_obj(row)
        await buffered.flush()
    return {"written": data["n"]}


iii.register_function("data::generate", generate)


def group_means(rows):
    return {"step": rows[0]["step"],
            **{s: mean(r["value"] for r in rows if r["sensor"] == s) for s in SENSORS}}


channel = iii.create_channel()
groups = channel.reader.chunks.pipe(
    decode_cbor(),
    batch(max_items=400),
    ops.map(group_means),
    ops.to_list(),
)
# An observable made into a Single: awaitable from the notebook like a call.
grouped, written = await asyncio.gather(
    iii_rx.Single(iii.bridge, source=groups),
    iii.trigger("data::generate", {"out": channel.writer_ref, "n": 40_000, "seed": 11}),
)
print(written, len(grouped), "groups")
grouped[0]

# %% [markdown]
# ## Plot

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
for s in SENSORS:
    left.plot([g["step"] for g in grouped], [g[s] for g in grouped], label=s)
left.set(title="mean per 100 steps (Rx pipeline)", xlabel="step", ylabel="value")
left.legend(loc="lower left", fontsize="small")

sensors = summary["sensors"]
names = sorted(sensors)
means = [sensors[s]["mean"] for s in names]
right.bar(names, means, color="tab:blue", alpha=0.7)
right.errorbar(names, means, fmt="none", ecolor="black", capsize=4,
               yerr=[[sensors[s]["mean"] - sensors[s]["min"] for s in names],
                     [sensors[s]["max"] - sensors[s]["mean"] for s in names]])
right.set(title="mean and range per sensor (pull pipeline)", ylabel="value")
fig.tight_layout()
plt.show()

# %%
iii.close()
