"""The cron built-in worker (``iii-cron``): the ``cron`` trigger type.

A ``cron`` binding takes ``{"expression": "...", "condition_function_id"?: "..."}``; the
expression is the Rust engine's dialect (six or seven fields, seconds first, UTC; see
:mod:`~iii_rx.engine.workers.cron_expr`). A missing, malformed or never-firing expression
(a five-field crontab line included) is refused when the binding arrives, with the reason:
the registering worker gets a ``triggerregistrationresult`` error, and
``engine::register_trigger`` answers ``trigger_registration_failed``.

At each fire time the binding's function is called with::

    {"trigger": "cron", "job_id": <binding id>,
     "scheduled_time": "2025-01-01T02:00:00+00:00", "actual_time": "2025-01-01T02:00:00.0012+00:00"}

(RFC 3339 in UTC, fractions only when not zero, as the Rust engine writes them). As there, a
job waits for its call's answer before it looks for the next fire time, so a run that
outlasts the interval skips the fire times it overran instead of piling up; runs of different
jobs are independent. A failed call is logged. Locks are process-local: every engine that
has the binding fires it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from iii_rx.aio import TaskSet
from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.logsafe import RateLimitedLog, printable
from iii_rx.engine.services import EngineServices
from iii_rx.engine.triggers import Binding, BindingRefused, TriggerType
from iii_rx.engine.workers._common import Fanout, config_object, config_str, json_kind
from iii_rx.engine.workers.cron_expr import CronError, CronSchedule, parse
from iii_rx.errors import IIIInvocationError

__all__ = ["CRON_CONFIG_SCHEMA", "CRON_EVENT_SCHEMA", "CronWorker", "rfc3339"]

log = logging.getLogger("iii_rx.engine.workers")

WORKER_NAME = "iii-cron"
TRIGGER_TYPE = "cron"

CRON_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"expression": {"type": "string"}, "condition_function_id": {"type": "string"}},
    "required": ["expression"],
}
CRON_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"trigger": {"const": "cron"}, "job_id": {"type": "string"},
                   "scheduled_time": {"type": "string"}, "actual_time": {"type": "string"}},
    "required": ["trigger", "job_id", "scheduled_time", "actual_time"],
}


def rfc3339(when: dt.datetime) -> str:
    """``when`` in UTC as the Rust engine's ``to_rfc3339()``: ``+00:00``, and 3 or 6
    fraction digits only when the fraction is not zero."""
    when = when.astimezone(dt.timezone.utc)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    micro = when.microsecond
    if micro:
        text += f".{micro // 1000:03d}" if micro % 1000 == 0 else f".{micro:06d}"
    return text + "+00:00"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def _sleep_until(due: dt.datetime) -> None:
    """Sleep until the wall clock reaches ``due`` (a loop timer may wake a little early, and
    the wall clock may step: look again a few times)."""
    for _ in range(10):
        wait = (due - _now()).total_seconds()
        if wait <= 0:
            return
        await asyncio.sleep(wait)


@dataclass(eq=False)
class _Job:
    binding: Binding
    schedule: CronSchedule
    condition: str | None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class CronWorker:
    """Engine extension: the ``cron`` trigger type (it is also the type's provider)."""

    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}
        self._services: EngineServices | None = None
        self._fanout: Fanout | None = None
        self._tasks = TaskSet("the cron worker")
        self._failures = RateLimitedLog(log)
        """The engine's budget of these lines once started."""

    async def start(self, services: EngineServices) -> None:
        self._services = services
        self._failures = services.limited_log(log)
        self._fanout = Fanout(services, "the cron worker")
        self._tasks = TaskSet("the cron worker")
        services.add_worker(WORKER_NAME, "Schedule functions with cron expressions")
        services.add_trigger_type(TriggerType(
            TRIGGER_TYPE, DEFAULT_NAMESPACE, "Cron-based scheduled triggers", provider=self,
            worker_name=WORKER_NAME, trigger_request_format=CRON_CONFIG_SCHEMA,
            call_request_format=CRON_EVENT_SCHEMA))

    async def stop(self) -> None:
        self.jobs.clear()
        await self._tasks.aclose()
        if self._fanout is not None:
            await self._fanout.aclose()
        self._services = self._fanout = None

    # ------------------------------------------------------------------ provider

    def bind(self, binding: Binding) -> None:
        """Check the expression and schedule the job (refused with the reason if bad)."""
        config = config_object(TRIGGER_TYPE, binding.config)
        expression = config.get("expression")
        if expression is None or expression == "":
            raise BindingRefused("Cron expression is required (config `expression`, six or "
                                 "seven fields, seconds first)")
        if not isinstance(expression, str):
            raise BindingRefused(f"Cron expression must be a string, got {json_kind(expression)}")
        try:
            schedule = parse(expression)
        except CronError as exc:
            raise BindingRefused(f"Invalid cron expression '{expression}': {exc}") from None
        if schedule.next_after(_now()) is None:
            raise BindingRefused(f"Invalid cron expression '{expression}': it never fires "
                                 "again (its last fire time is in the past)")
        condition = config_str(TRIGGER_TYPE, config, "condition_function_id")
        self._cancel(binding.id)
        job = _Job(binding, schedule, condition)
        job.task = self._tasks.spawn(self._run(job), name=f"cron {binding.id}")
        self.jobs[binding.id] = job
        self._failures.log(logging.INFO, "cron_bind", "cron job %s (%s) -> %s",
                      printable(binding.id), printable(expression),
                      printable(binding.function_id))

    def unbind(self, binding: Binding) -> None:
        """Stop the job (if it is still this binding's)."""
        job = self.jobs.get(binding.id)
        if job is not None and job.binding is binding:
            self._cancel(binding.id)

    def _cancel(self, binding_id: str) -> None:
        job = self.jobs.pop(binding_id, None)
        if job is not None and job.task is not None:
            job.task.cancel()

    # ------------------------------------------------------------------ firing

    async def _run(self, job: _Job) -> None:
        last: dt.datetime | None = None
        while True:
            now = _now()
            due = job.schedule.next_after(now if last is None or now > last else last)
            if due is None:
                log.warning("cron job %s has no fire time left; it stops",
                            printable(job.binding.id))
                return
            await _sleep_until(due)
            last = due
            await self._fire(job, due)

    async def _fire(self, job: _Job, due: dt.datetime) -> None:
        services, fanout = self._services, self._fanout
        if services is None or fanout is None:
            return
        binding = job.binding
        payload = {"trigger": "cron", "job_id": binding.id, "scheduled_time": rfc3339(due),
                   "actual_time": rfc3339(_now())}
        if job.condition is not None and not await fanout.passes(
                job.condition, binding.namespace, payload):
            return
        try:
            await services.call(binding.function_id, payload, namespace=binding.namespace,
                                metadata=binding.metadata)
        except IIIInvocationError as exc:
            self._failures.log(logging.WARNING, "cron_call", "cron job %s: call of %s failed: %s",
                          printable(binding.id), printable(binding.function_id),
                          printable(exc))
