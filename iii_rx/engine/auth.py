"""Secrets a peer presents to the engine, compared so that timing tells it nothing.

The engine's optional token (``Engine(token=...)``, ``iii-rx engine --token``, ``III_TOKEN``)
arrives as ``Authorization: Bearer <token>`` on the worker, channel and REST ports; a worker's
reattach token arrives in its ``reattach`` frame. Both are compared with
:func:`hmac.compare_digest` over SHA-256 digests: equal-length inputs, so neither the contents
nor the length of the secret leak through the time a refusal takes.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SecretToken", "bearer_token_ok", "same_secret"]


def same_secret(presented: str | None, expected: str) -> bool:
    """Whether ``presented`` equals ``expected``, in time independent of both."""
    equal = hmac.compare_digest(_digest(presented or ""), _digest(expected))
    return equal and presented is not None


def bearer_token_ok(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (scheme case-insensitive)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    ok = same_secret(value.strip(), token)
    return ok and scheme.lower() == "bearer"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class SecretToken(str):
    """A token the engine issued (a reattach token): ``==`` and ``!=`` compare in constant
    time, wherever the comparison is written, so no call site can leak it through timing."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and same_secret(str(other), str(self))

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__
