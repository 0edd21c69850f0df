"""Invocations and the call actions (``TriggerAction``).

:class:`Invocation` (one call of one of this worker's functions) is defined beside the
:class:`~iii_rx.context.Context` it extends, in :mod:`iii_rx.context`, and re-exported here.
An invocation that arrives for a function nobody subscribes to any more is answered
``function_not_found`` by the worker (:mod:`iii_rx.worker`).
"""

from __future__ import annotations

from iii_rx.context import Invocation, ReplySink, error_body_of
from iii_rx.protocol import EnqueueAction, VoidAction

__all__ = ["Invocation", "ReplySink", "TriggerAction", "error_body_of"]


class TriggerAction:
    """What the engine does with a call: ``void()`` (fire and forget) or ``enqueue(queue)``.

    Both spellings work: ``TriggerAction.void()`` / ``TriggerAction.Void()`` and
    ``TriggerAction.enqueue("q")`` / ``TriggerAction.Enqueue(queue="q")``. The values are the
    wire models, so they can be passed as ``action=`` directly; dicts work too.
    """

    @staticmethod
    def void() -> VoidAction:
        """Fire and forget: the call completes once handed over, with ``None``."""
        return VoidAction()

    @staticmethod
    def enqueue(queue: str) -> EnqueueAction:
        """Queue the call on ``queue``: it completes with the engine's receipt."""
        return EnqueueAction(queue=queue)

    Void = void

    @staticmethod
    def Enqueue(queue: str) -> EnqueueAction:
        """:meth:`enqueue`, spelled as in the official SDK."""
        return EnqueueAction(queue=queue)
