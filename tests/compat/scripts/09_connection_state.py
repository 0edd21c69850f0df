"""Connection-state listeners: fired at once with the current state, then on each change; the
returned function unsubscribes (idempotently)."""

import os

# --- iii imports ---
from iii import IIIConnectionState, InitOptions, register_worker
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-state"))

seen_a: list[IIIConnectionState] = []
seen_b: list[IIIConnectionState] = []
seen_c: list[IIIConnectionState] = []


def broken(state):
    raise RuntimeError("a faulty listener must not break the others")


unsubscribe_a = iii.add_connection_state_listener(seen_a.append)
unsubscribe_b = iii.add_connection_state_listener(seen_b.append)
unsubscribe_broken = iii.add_connection_state_listener(broken)
iii.add_connection_state_listener(seen_c.append)
print("current:", iii.get_connection_state())
unsubscribe_b()
unsubscribe_b()  # idempotent
iii.shutdown()
print("a:", seen_a)
print("b:", seen_b)
print("c:", seen_c)
print("after shutdown:", iii.get_connection_state())
unsubscribe_a()
unsubscribe_broken()
