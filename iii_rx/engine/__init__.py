"""The embedded iii engine: serve official-SDK workers (and iii_rx clients) from this process.

``async with Engine(port=0) as engine: engine.url``, or ``Engine.start_in_thread()`` from sync
code. Implements docs/protocol.md §12.1-12.5 (transport, registration, invocation, triggers, engine
functions); channels live in :mod:`iii_rx.engine.channels`. Extensions (the REST API,
HTTP-invoked functions, built-in workers) reach the engine through
:class:`~iii_rx.engine.services.EngineServices`. This package never imports the client. See
``docs/engine.md``; listeners, middleware, RBAC and the config file: ``docs/engine-config.md``.
"""

from __future__ import annotations

from iii_rx.engine.config import DEFAULT_NAMESPACE, EngineConfig
from iii_rx.engine.config_file import ConfigFileError
from iii_rx.engine.engine import Engine, EngineThread
from iii_rx.engine.listeners import Listener
from iii_rx.engine.rbac_config import FunctionFilter, RbacConfig, Wildcard
from iii_rx.engine.services import EngineExtension, EngineServices

__all__ = [
    "DEFAULT_NAMESPACE",
    "ConfigFileError",
    "Engine",
    "EngineConfig",
    "EngineExtension",
    "EngineServices",
    "EngineThread",
    "FunctionFilter",
    "Listener",
    "RbacConfig",
    "Wildcard",
]
