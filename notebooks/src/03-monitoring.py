# %% [markdown]
# # Monitoring a live system
#
# A live view of an engine from a notebook: its topology (workers and functions) and their call
# rates, updated **in place** while background workers come and go; the latencies of the calls;
# and the live stream of spans with OpenTelemetry on.
#
# The engine here is the embedded one, started by this notebook's client; point
# `connect_sync()` at `ws://host:49134` to watch a real one. The views are
# `iii_rx.notebook.LiveView`s: IPython display handles that any thread may update in place, so
# the client's streams (which emit on the client's loop thread) update them directly.

# %%
import asyncio
import random
import threading
import time
from collections import deque

import matplotlib.pyplot as plt
from IPython.display import HTML
from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler

import iii_rx
from iii_rx.notebook import LiveView
from iii_rx.operators import batch
from iii_rx.topology import TopologyStream

# otel=True turns on spans: each call this client makes, and each invocation it serves.
iii = iii_rx.connect_sync(name="monitor", otel=True)
iii.register_function("monitor::ping", lambda data: "pong")
iii.url

# %% [markdown]
# ## Live topology and call rates
#
# `TopologyStream(iii, poll_interval=0.5)` emits a new immutable snapshot whenever the engine's
# lists change: at once on a worker or function event, and every 0.5 s while counters move.
# The embedded engine counts calls per worker and function (`row.extra["metrics"]`), so the
# rate is the difference of two snapshots' counts over the time between them.

# %%
def table(header, rows):
    head = "".join(f"<th style='text-align:left'>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


previous = {}        # worker id -> (invocations, taken_at)
history = []         # (taken_at, worker name, calls per second) for the plot below


def render(snapshot):
    rows = []
    for worker in snapshot.workers:
        if worker.builtin:
            continue
        metrics = worker.extra.get("metrics") or {}
        calls = metrics.get("invocations", 0)
        before = previous.get(worker.id)
        rate = 0.0
        if before is not None and snapshot.taken_at > before[1]:
            rate = (calls - before[0]) / (snapshot.taken_at - before[1])
        previous[worker.id] = (calls, snapshot.taken_at)
        history.append((snapshot.taken_at, worker.name, rate))
        functions = ", ".join(f.function_id for f in snapshot.functions_of(worker))
        rows.append((worker.name, functions, calls, f"{rate:,.0f}/s",
                     metrics.get("p50_ms"), metrics.get("p99_ms")))
    builtin = sum(1 for w in snapshot.workers if w.builtin)
    topology_view.update(HTML(
        f"<b>revision {snapshot.revision}</b>: {len(rows)} workers (+{builtin} built-in), "
        f"{len(snapshot.functions)} functions<br>"
        + table(["worker", "functions", "calls", "rate", "p50 ms", "p99 ms"], rows)))


topology = TopologyStream(iii, poll_interval=0.5)
topology_view = LiveView(HTML("<i>waiting for the first snapshot...</i>"))
watching = topology.snapshots.subscribe(render)

# %% [markdown]
# Topology **changes** (typed events between snapshots) go to a second view, newest first.

# %%
changes = deque(maxlen=12)
changes_view = LiveView(HTML("<i>no change yet</i>"))


def on_change(change):
    row = change.row
    what = getattr(row, "name", None) or getattr(row, "function_id", None) or row.key
    changes.appendleft((time.strftime("%H:%M:%S"), change.kind, what))
    changes_view.update(HTML(table(["time", "event", "what"], changes)))


watching_changes = topology.changes.subscribe(on_change)

# %% [markdown]
# ## The live span stream
#
# `iii.spans` emits every finished span of this client (OpenTelemetry `ReadableSpan`s): an
# `invoke <function>` span per call it makes, an `execute <function>` span per invocation it
# serves. `batch(max_delay=0.25)` gathers them so that the view is redrawn four times a second,
# not once per span. Its timer runs on the client's loop (`scheduler=`): subscribed from a
# cell, a time operator would otherwise take the kernel's loop, which stands still while a
# cell blocks (as the next cells do).

# %%
latest_spans = deque(maxlen=8)
span_counts = {}
spans_view = LiveView(HTML("<i>no span yet</i>"))


def on_spans(spans):
    for span in spans:
        span_counts[span.name] = span_counts.get(span.name, 0) + 1
        latest_spans.appendleft((
            span.name, span.kind.name, f"{(span.end_time - span.start_time) / 1e6:.2f}",
            span.status.status_code.name, f"{span.context.trace_id:032x}"[:12]))
    totals = ", ".join(f"{name}: {n}" for name, n in sorted(span_counts.items()))
    spans_view.update(HTML(f"{totals}<br>"
                           + table(["span", "kind", "ms", "status", "trace"], latest_spans)))


on_client_loop = AsyncIOThreadSafeScheduler(iii.bridge.loop)
watching_spans = iii.spans.pipe(
    batch(max_delay=0.25, scheduler=on_client_loop),
).subscribe(on_spans)
iii.trigger("monitor::ping").result(timeout=5)

# %% [markdown]
# ## Workers come and go
#
# Each background worker is its own client (its own thread and connection) on the same engine.
# A load thread calls whatever is there from the notebook's client, and records the latency of
# each call. Watch the three views above while this cell runs for about ten seconds.

# %%
latencies = []       # (seconds since start, function id, milliseconds, ok)
started = time.monotonic()


def run_worker(name, function_id, mean_ms, stop):
    with iii_rx.connect_sync(iii.url, name=name) as worker:
        async def handle(data):       # async: holds no thread while it waits
            await asyncio.sleep(random.expovariate(1000 / mean_ms))
            return data
        worker.register_function(function_id, handle)
        stop.wait(30)   # leaving cancels the calls it is serving: callers get invocation_stopped


def run_load(function_ids, stop):
    while not stop.is_set():
        function_id = random.choice(function_ids)
        t0 = time.monotonic()
        try:
            iii.trigger(function_id, {"n": 1}, timeout_ms=2000).result()
            ok = True
        except iii_rx.IIIError:
            ok = False    # e.g. function_not_found while a worker is away
        latencies.append((t0 - started, function_id, (time.monotonic() - t0) * 1000, ok))
        stop.wait(0.004)


stops = {}
threads = []


def start(name, function_id, mean_ms):
    stops[name] = threading.Event()
    thread = threading.Thread(target=run_worker, args=(name, function_id, mean_ms, stops[name]))
    thread.start()
    threads.append(thread)


def stop(name):
    stops.pop(name).set()


start("inventory", "inventory::check", 2)
start("pricing", "pricing::quote", 6)
iii.wait_for_function_sync("inventory::check", timeout=10)
iii.wait_for_function_sync("pricing::quote", timeout=10)
load_stop = threading.Event()
load = threading.Thread(target=run_load, args=(
    ["inventory::check", "pricing::quote", "shipping::estimate", "monitor::ping"], load_stop))
load.start()
time.sleep(2.5)
start("shipping", "shipping::estimate", 12)     # a worker arrives
time.sleep(2.5)
stop("inventory")                                # one leaves: its calls now fail
time.sleep(2.5)
start("inventory", "inventory::check", 1)       # and comes back, faster
time.sleep(2.5)
load_stop.set()
load.join()
for name in list(stops):
    stop(name)
for thread in threads:
    thread.join()
print(f"{len(latencies)} calls, {sum(not ok for *_, ok in latencies)} failed")

# %% [markdown]
# ## Latencies
#
# The latency of every call the load thread made, per function, over time (left), and their
# distribution (right). The gaps are the times a function had no worker.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
for function_id in sorted({f for _, f, _, _ in latencies}):
    points = [(t, ms) for t, f, ms, ok in latencies if f == function_id and ok]
    if points:
        left.scatter(*zip(*points), s=4, label=function_id)
        right.hist([ms for _, ms in points], bins=40, histtype="step", label=function_id)
left.set(title="call latency over time", xlabel="s since start", ylabel="ms", yscale="log")
right.set(title="latency distribution", xlabel="ms", ylabel="calls", xscale="log")
left.legend(fontsize="small", markerscale=3)
fig.tight_layout()
plt.show()

# %% [markdown]
# The calls per second of each worker, as the live view computed them.

# %%
fig, ax = plt.subplots(figsize=(11, 3))
t0 = history[0][0] if history else 0
for name in sorted({n for _, n, _ in history}):
    points = [(t - t0, r) for t, n, r in history if n == name]
    ax.step(*zip(*points), where="post", label=name)
ax.set(title="calls per second per worker", xlabel="s", ylabel="calls/s")
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# ## Stop watching
#
# Disposing the subscriptions unregisters the topology stream's private function and
# bindings; closing the client stops the embedded engine.

# %%
for subscription in (watching, watching_changes, watching_spans):
    subscription.dispose()
iii.close()
print("closed:", iii.closed)
