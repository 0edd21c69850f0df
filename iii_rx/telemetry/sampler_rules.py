"""The SDK's standard samplers as one rule, so that :mod:`~iii_rx.telemetry.leanspan` decides
them without their generic path (a sampling result object, the parent's context looked up
twice) and with the same answer.

Recognised: ``ALWAYS_ON``, ``ALWAYS_OFF``, ``TraceIdRatioBased`` and ``ParentBased`` (or
``ParentBasedTraceIdRatio``, what ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` makes)
over one of the first three with the default delegates. Any other sampler, a subclass
included, has no rule and is asked through its own ``should_sample``.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import sampling

__all__ = ["TRACE_ID_LIMIT", "Rule", "rule_of"]

_ALWAYS_ON = sampling.ALWAYS_ON
_ALWAYS_OFF = sampling.ALWAYS_OFF
_PARENT_BASED = (sampling.ParentBased, sampling.ParentBasedTraceIdRatio)
_DELEGATES = ("_remote_parent_sampled", "_remote_parent_not_sampled", "_local_parent_sampled",
              "_local_parent_not_sampled")
_DEFAULT_DELEGATES = (_ALWAYS_ON, _ALWAYS_OFF, _ALWAYS_ON, _ALWAYS_OFF)
Rule = tuple[bool, int | None]
"""How a standard sampler decides: ``(follows_parent, bound)``. With a valid parent and
``follows_parent``, the parent's sampled flag decides; otherwise a span is sampled when
``bound`` is ``None`` or the trace id's low 64 bits are below it (``0``: never)."""
TRACE_ID_LIMIT: int = sampling.TraceIdRatioBased.TRACE_ID_LIMIT
"""The trace id bits a ratio sampler compares with its bound."""


def rule_of(sampler: object) -> Rule | None:
    """The :data:`Rule` of the SDK's standard samplers (always on or off, trace id ratio, and
    parent-based over one of those with the default delegates), ``None`` for any other (it
    then decides through its own ``should_sample``)."""
    if sampler is _ALWAYS_ON:
        return False, None
    if sampler is _ALWAYS_OFF:
        return False, 0
    if type(sampler) is sampling.TraceIdRatioBased:
        return False, sampler.bound
    if type(sampler) in _PARENT_BASED:
        delegates = tuple(getattr(sampler, name, None) for name in _DELEGATES)
        root = rule_of(getattr(sampler, "_root", None))
        if root is not None and not root[0] and all(
                found is expected for found, expected in zip(delegates, _DEFAULT_DELEGATES,
                                                             strict=True)):
            return True, root[1]
    return None
