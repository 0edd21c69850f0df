"""The REST API as an engine extension: the ``http`` trigger type (docs/protocol.md §6.4, §6.5).

:class:`RestExtension` starts a :class:`~iii_rx.engine.rest.RestApi` on ``rest_port`` and
provides the ``http`` trigger type through :class:`HttpTriggerProvider`: every ``http`` binding
becomes a route. It reaches the engine only through
:class:`~iii_rx.engine.services.EngineServices`.
"""

from __future__ import annotations

import logging
from typing import Any

from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.rest import RestApi
from iii_rx.engine.rest_routes import HTTP_METHODS, RouteError
from iii_rx.engine.services import EngineServices, Trace
from iii_rx.engine.triggers import Binding, BindingRefused, TriggerType

__all__ = ["HTTP_CONFIG_SCHEMA", "HTTP_RESPONSE_SCHEMA", "HttpTriggerProvider", "RestExtension"]

log = logging.getLogger("iii_rx.engine.rest")


class HttpTriggerProvider:
    """The in-process provider of the ``http`` trigger type: bindings become routes."""

    def __init__(self, api: RestApi) -> None:
        self.api = api

    def bind(self, binding: Binding) -> None:
        """Add the binding's route; a bad config or a shape conflict refuses it."""
        try:
            self.api.bind(binding.id, binding.function_id, binding.config,
                          namespace=binding.namespace, metadata=binding.metadata,
                          owner=binding.owner)
        except RouteError as exc:
            raise BindingRefused(str(exc)) from None

    def unbind(self, binding: Binding) -> None:
        """Remove the binding's route if it still owns it."""
        self.api.unbind(binding.id, binding.config, binding.owner)


HTTP_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "api_path": {"type": "string"},
        "http_method": {"type": "string", "enum": sorted(HTTP_METHODS), "default": "GET"},
        "condition_function_id": {"type": "string"},
        "middleware_function_ids": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["api_path"],
}
"""``configuration_schema`` of the ``http`` trigger type (docs/protocol.md §6.4)."""

HTTP_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status_code": {"type": "integer", "minimum": 100, "maximum": 599, "default": 200},
        "headers": {"oneOf": [{"type": "object", "additionalProperties": {"type": "string"}},
                              {"type": "array", "items": {"type": "string"}}]},
        "body": {},
    },
}
"""``response_schema`` of the ``http`` trigger type: the buffered envelope.

docs/protocol.md §6.5.3 describes the envelope, §8.5 the schema's place.
"""


class RestExtension:
    """Engine extension: the REST API on ``rest_port`` and the ``http`` trigger type.

    Engine-originated calls of bound functions are bounded by ``rest_timeout_ms`` too, so a
    handler that never answers does not keep its pending call after the 504.
    """

    WORKER_NAME = "iii-http"

    def __init__(self) -> None:
        self.api: RestApi | None = None
        self.port: int | None = None
        """The bound port of the REST API (``None`` until it started; kept after it stopped)."""
        self._type: TriggerType | None = None

    async def start(self, services: EngineServices) -> None:
        """Serve the REST API on ``rest_port`` and provide the ``http`` trigger type
        (neither when ``rest_port`` is ``None``)."""
        config = services.config
        if config.rest_port is None:
            return
        timeout = config.rest_timeout_ms / 1000

        async def invoke(namespace: str, function_id: str, data: Any, metadata: Any,
                         trace: Trace) -> Any:
            return await services.call(function_id, data, namespace=namespace,
                                       metadata=metadata, traceparent=trace[0],
                                       baggage=trace[1], timeout=timeout)

        host = config.host if config.rest_host is None else config.rest_host
        api = RestApi(invoke, services.channels, host=host, port=config.rest_port,
                      timeout_ms=config.rest_timeout_ms,
                      no_response_grace_ms=config.http_no_response_grace_ms,
                      max_concurrency=config.rest_max_concurrency, token=config.token,
                      header_timeout_ms=config.rest_header_timeout_ms,
                      body_timeout_ms=config.rest_body_timeout_ms,
                      peer_log=services.limited_log(log))
        await api.start()
        self.api = api
        self.port = api.port
        services.add_worker(self.WORKER_NAME, "Expose functions as HTTP endpoints")
        self._type = TriggerType("http", DEFAULT_NAMESPACE, "HTTP API trigger",
                                 provider=HttpTriggerProvider(api), worker_name=self.WORKER_NAME,
                                 trigger_request_format=HTTP_CONFIG_SCHEMA,
                                 response_format=HTTP_RESPONSE_SCHEMA)
        services.add_trigger_type(self._type)
        log.info("REST API listening on %s", api.url)

    async def stop(self) -> None:
        """Stop serving (calls in flight are cancelled)."""
        api, self.api = self.api, None
        if api is not None:
            await api.close()
