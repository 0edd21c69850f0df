"""iii_rx: a reactive, stream-oriented Python client for the iii engine.

The engine connection is a set of observable streams; functions subscribe to their invocation
stream and ``trigger`` returns a single-value observable. ``iii_rx.engine`` holds an embedded
engine so that everything runs on one machine.
"""

from __future__ import annotations

from iii_rx.errors import (
    IIIConnectionError,
    IIIError,
    IIIForbiddenError,
    IIIInvocationError,
    IIIRegistrationRejectedError,
    IIITimeoutError,
)
from iii_rx.http import ApiRequest, ApiResponse, HttpInvocationConfig

__version__ = "0.1.0"

__all__ = [
    "ApiRequest",
    "ApiResponse",
    "HttpInvocationConfig",
    "IIIConnectionError",
    "IIIError",
    "IIIForbiddenError",
    "IIIInvocationError",
    "IIIRegistrationRejectedError",
    "IIITimeoutError",
    "__version__",
]
