"""A call Single's subscription disposed (from another thread) while the loop is sending it:
the call is withdrawn, not left pending until its answer or its timeout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reactivex import Observer

from iii_rx.single import _CallSubscription


class _OnLoop:
    def on_loop(self) -> bool:
        return True


class _DisposedWhileStarting:
    """Stands for the client's calls: the subscription is disposed while ``start`` runs, the
    moment another thread's dispose can fall between ``begin``'s check and its start."""

    bridge = _OnLoop()

    def __init__(self) -> None:
        self.subscription: _CallSubscription | None = None
        self.withdrawn = False

    def start(self, done: Any) -> Callable[[], None]:
        assert self.subscription is not None
        self.subscription.dispose()  # sees no canceller yet
        return self.withdraw

    def withdraw(self) -> None:
        self.withdrawn = True


def test_a_subscription_disposed_while_its_call_starts_withdraws_the_call() -> None:
    starter = _DisposedWhileStarting()
    subscription = _CallSubscription(starter, Observer())  # type: ignore[arg-type]
    starter.subscription = subscription
    subscription.begin()
    assert starter.withdrawn
