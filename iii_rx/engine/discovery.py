"""The read-only ``engine::*`` discovery functions of docs/protocol.md §8.

Each is an in-process function taking an object (the builtins wrapper has already refused
anything else with ``deserialization_error``) and returning the shapes of docs/protocol.md §8.2-8.9.
Field names differ from registration names on purpose (``request_format`` → ``request_schema``,
``trigger_request_format`` → ``configuration_schema``, ...). Optional fields are left out when
empty; the nullable strings of a worker summary are ``null``, as in the Rust engine.
"""

from __future__ import annotations

from typing import Any

from iii_rx.engine.config import DEFAULT_NAMESPACE, ENGINE_VERSION
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.metrics import EngineMetrics
from iii_rx.engine.registry import BuiltinWorker, FunctionEntry, Registry
from iii_rx.engine.triggers import Binding, Triggers, TriggerType
from iii_rx.engine.wire import dumps
from iii_rx.errors import IIIInvocationError

__all__ = ["Discovery"]

_INFO_BATCH_MAX = 32
_SUMMARY_MAX = 80


def _set(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def _not_found(message: str) -> IIIInvocationError:
    return IIIInvocationError("NOT_FOUND", message)


def _invalid(message: str) -> IIIInvocationError:
    return IIIInvocationError("INVALID_ARGUMENTS", message)


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise IIIInvocationError("deserialization_error", f"{key} must be a string")
    return value


def _first_segment(text: str) -> str:
    return text.split("::", 1)[0]


def _hidden_function(entry: FunctionEntry) -> bool:
    fid = entry.function_id
    return (fid.startswith("engine::") and not fid.startswith("engine::queue::")) or entry.internal


def _search_rank(function_id: str, needle: str) -> int:
    lowered = function_id.lower()
    if lowered.startswith(needle) or needle in lowered.split("::"):
        return 0
    return 1 if needle in lowered else 2


class Discovery:
    """Builds the answers of the discovery functions from the engine's registries (read only)."""

    def __init__(self, registry: Registry, triggers: Triggers,
                 metrics: EngineMetrics | None = None) -> None:
        self.registry = registry
        self.triggers = triggers
        self.metrics = metrics
        """Call counters: a ``metrics`` object on each row of ``engine::workers::list`` when
        asked with ``include_metrics: true``."""

    # ------------------------------------------------------------------ shapes

    def function_summary(self, entry: FunctionEntry) -> dict[str, Any]:
        out: dict[str, Any] = {
            "function_id": entry.function_id,
            "namespace": entry.namespace,
            "worker_name": self.registry.worker_name_of(entry),
        }
        _set(out, "description", entry.description)
        _set(out, "metadata", entry.metadata)
        return out

    def function_detail(self, entry: FunctionEntry) -> dict[str, Any]:
        out = self.function_summary(entry)
        out.pop("metadata", None)
        _set(out, "request_schema", entry.request_format)
        _set(out, "response_schema", entry.response_format)
        _set(out, "metadata", entry.metadata)
        out["registered_triggers"] = [
            {"id": b.id, "trigger_type": b.trigger_type, "config": b.config}
            for b in self.triggers.active()
            if b.namespace == entry.namespace and b.function_id == entry.function_id
        ]
        return out

    def type_worker_name(self, trigger_type: TriggerType) -> str:
        provider = trigger_type.provider
        if isinstance(provider, WorkerConnection) and provider.name is not None:
            return provider.name
        return trigger_type.worker_name or _first_segment(trigger_type.id)

    def type_summary(self, trigger_type: TriggerType) -> dict[str, Any]:
        return {
            "id": trigger_type.id,
            "namespace": trigger_type.namespace,
            "worker_name": self.type_worker_name(trigger_type),
            "description": trigger_type.description or "",
        }

    def type_detail(self, trigger_type: TriggerType) -> dict[str, Any]:
        out = self.type_summary(trigger_type)
        _set(out, "configuration_schema", trigger_type.trigger_request_format)
        _set(out, "request_schema", trigger_type.call_request_format)
        _set(out, "response_schema", trigger_type.response_format)
        out["instance_count"] = sum(
            1 for b in self.triggers.bindings.values() if b.trigger_type == trigger_type.id)
        return out

    def binding_worker_name(self, binding: Binding) -> str:
        entry = self.registry.functions.get((binding.namespace, binding.function_id))
        if entry is not None:
            return self.registry.worker_name_of(entry)
        return _first_segment(binding.function_id)

    def binding_summary(self, binding: Binding) -> dict[str, Any]:
        text = dumps(binding.config)
        summary = text if len(text) <= _SUMMARY_MAX else text[:_SUMMARY_MAX] + "…"
        return {
            "id": binding.id,
            "trigger_type": binding.trigger_type,
            "function_id": binding.function_id,
            "worker_name": self.binding_worker_name(binding),
            "config": binding.config,
            "config_summary": summary,
        }

    def worker_summary(self, conn: WorkerConnection) -> dict[str, Any]:
        info = conn.info
        return {
            "name": conn.name,
            "description": info.get("description"),
            "version": info.get("version"),
            "id": conn.id,
            "namespace": conn.effective_namespace,
            "runtime": info.get("runtime"),
            "os": info.get("os"),
            "status": "connected",
            "function_count": len(conn.functions),
            "connected_at_ms": conn.connected_at_ms,
            "active_invocations": len(conn.inbound),
            "isolation": info.get("isolation"),
            "ip_address": conn.ip_address,
        }

    def builtin_summary(self, worker: BuiltinWorker) -> dict[str, Any]:
        return {
            "name": worker.name,
            "description": worker.description,
            "version": ENGINE_VERSION,
            "id": worker.name,
            "namespace": DEFAULT_NAMESPACE,
            "runtime": "engine",
            "os": None,
            "status": "available",
            "function_count": sum(1 for e in self.registry.functions.values()
                                  if e.builtin_worker == worker.name),
            "connected_at_ms": worker.connected_at_ms,
            "active_invocations": 0,
            "isolation": "in-process",
            "ip_address": None,
        }

    def all_function_summaries(self) -> list[dict[str, Any]]:
        """Every function, builtins included (the ``engine::functions-available`` payload)."""
        return [self.function_summary(e) for e in self.registry.functions.values()]

    # ------------------------------------------------------------------ functions

    def functions_list(self, data: dict[str, Any]) -> dict[str, Any]:
        search = _opt_str(data, "search")
        prefix = _opt_str(data, "prefix")
        worker = _opt_str(data, "worker")
        workers = data.get("workers")
        names = {w for w in workers if isinstance(w, str)} if isinstance(workers, list) else set()
        if worker is not None:
            names.add(worker)
        include_internal = data.get("include_internal") is True
        needle = search.lower() if search else None
        rows: list[tuple[int, dict[str, Any]]] = []
        for entry in self.registry.functions.values():
            if not include_internal and _hidden_function(entry):
                continue
            if prefix and not entry.function_id.startswith(prefix):
                continue
            summary = self.function_summary(entry)
            if names and summary["worker_name"] not in names:
                continue
            rank = 0
            if needle is not None:
                description = (entry.description or "").lower()
                if needle not in entry.function_id.lower() and needle not in description:
                    continue
                rank = _search_rank(entry.function_id, needle)
            rows.append((rank, summary))
        rows.sort(key=lambda r: (r[0], r[1]["function_id"], r[1]["namespace"]))
        if self.metrics is not None and data.get("include_metrics") is True:
            for _, row in rows:  # an extra key, asked for: as in ``engine::workers::list``
                row["metrics"] = self.metrics.function(row["namespace"], row["function_id"])
        return {"functions": [summary for _, summary in rows]}

    def _resolve_function(self, function_id: str, namespace: str | None) -> FunctionEntry:
        spaces = self.registry.namespaces_of(function_id)
        if namespace is not None:
            entry = self.registry.functions.get((namespace, function_id))
            if entry is not None:
                return entry
            if spaces:
                raise _not_found(f"Function '{function_id}' is not registered in namespace "
                                 f"'{namespace}'; it is registered in namespace(s): "
                                 f"{', '.join(spaces)}.")
            raise _not_found(f"Function '{function_id}' is not registered.")
        if DEFAULT_NAMESPACE in spaces:
            return self.registry.functions[(DEFAULT_NAMESPACE, function_id)]
        if len(spaces) == 1:
            return self.registry.functions[(spaces[0], function_id)]
        if spaces:
            raise _not_found(f"Function '{function_id}' is ambiguous: it is registered in "
                             f"namespace(s): {', '.join(spaces)}. Pass `namespace` to select one.")
        raise _not_found(f"Function '{function_id}' is not registered.")

    def functions_info(self, data: dict[str, Any]) -> dict[str, Any]:
        single = _opt_str(data, "function_id")
        many = data.get("function_ids")
        namespace = _opt_str(data, "namespace")
        if (single is None) == (many is None):
            raise _invalid("pass exactly one of `function_id` and `function_ids`")
        if single is not None:
            return self.function_detail(self._resolve_function(single, namespace))
        if not isinstance(many, list) or not all(isinstance(i, str) for i in many):
            raise _invalid("`function_ids` must be a list of strings")
        ids = list(dict.fromkeys(many))
        if len(ids) > _INFO_BATCH_MAX:
            raise _invalid(f"at most {_INFO_BATCH_MAX} ids per call")
        out: list[dict[str, Any]] = []
        for function_id in ids:
            try:
                out.append(self.function_detail(self._resolve_function(function_id, namespace)))
            except IIIInvocationError:
                out.append({"function_id": function_id, "error": "not_found"})
        return {"functions": out}

    # ------------------------------------------------------------------ trigger types

    def triggers_list(self, data: dict[str, Any]) -> dict[str, Any]:
        search = _opt_str(data, "search")
        prefix = _opt_str(data, "prefix")
        worker = _opt_str(data, "worker")
        include_internal = data.get("include_internal") is True
        rows = []
        for trigger_type in self.triggers.types.values():
            if not include_internal and trigger_type.id.startswith("engine::"):
                continue
            if prefix and not trigger_type.id.startswith(prefix):
                continue
            summary = self.type_summary(trigger_type)
            if worker is not None and summary["worker_name"] != worker:
                continue
            if search and search.lower() not in (
                    f"{trigger_type.id}\n{trigger_type.description or ''}".lower()):
                continue
            rows.append(summary)
        rows.sort(key=lambda r: (r["id"], r["namespace"]))
        return {"triggers": rows}

    def triggers_info(self, data: dict[str, Any]) -> dict[str, Any]:
        type_id = _required_str(data, "id")
        namespace = _opt_str(data, "namespace") or DEFAULT_NAMESPACE
        trigger_type = self.triggers.types.get((namespace, type_id))
        if trigger_type is None:
            raise _not_found(f"Trigger type '{type_id}' is not registered in namespace "
                             f"'{namespace}'.")
        return self.type_detail(trigger_type)

    # ------------------------------------------------------------------ bindings

    def registered_triggers_list(self, data: dict[str, Any]) -> dict[str, Any]:
        search = _opt_str(data, "search")
        trigger_type = _opt_str(data, "trigger_type")
        function_id = _opt_str(data, "function_id")
        worker = _opt_str(data, "worker")
        include_internal = data.get("include_internal") is True
        needle = search.lower() if search else None
        rows = []
        for binding in self.triggers.active():
            if not include_internal and binding.function_id.startswith("engine::"):
                continue
            if trigger_type is not None and binding.trigger_type != trigger_type:
                continue
            if function_id is not None and binding.function_id != function_id:
                continue
            if needle is not None and needle not in (
                    f"{binding.id}\n{binding.trigger_type}\n{binding.function_id}".lower()):
                continue
            summary = self.binding_summary(binding)
            if worker is not None and summary["worker_name"] != worker:
                continue
            rows.append(summary)
        rows.sort(key=lambda r: (r["trigger_type"], r["function_id"], r["id"]))
        return {"registered_triggers": rows}

    def registered_triggers_info(self, data: dict[str, Any]) -> dict[str, Any]:
        binding_id = _required_str(data, "id")
        binding = self.triggers.bindings.get(binding_id)
        if binding is None:
            raise _not_found(f"Trigger '{binding_id}' is not registered.")
        out = self.binding_summary(binding)
        del out["config_summary"]
        _set(out, "metadata", binding.metadata)
        key = binding.provider_key or self.triggers.resolve(binding)
        trigger_type = self.triggers.types.get(key) if key is not None else None
        out["trigger"] = self.type_detail(trigger_type) if trigger_type is not None else None
        entry = self.registry.functions.get((binding.namespace, binding.function_id))
        out["function"] = self.function_detail(entry) if entry is not None else None
        return out

    # ------------------------------------------------------------------ workers

    def workers_list(self, data: dict[str, Any]) -> dict[str, Any]:
        search = _opt_str(data, "search")
        runtime = _opt_str(data, "runtime")
        status = _opt_str(data, "status")
        rows = [self.worker_summary(c) for c in self.registry.workers.values()
                if c.info.get("pid") is not None and not c.closed]
        rows += [self.builtin_summary(w) for w in self.registry.builtin_workers.values()]
        if search:
            rows = [r for r in rows if search.lower() in (r["name"] or "").lower()]
        if runtime is not None:
            rows = [r for r in rows if r["runtime"] == runtime]
        if status is not None:
            rows = [r for r in rows if r["status"] == status]
        rows.sort(key=lambda r: (r["name"] or r["id"], r["id"]))
        if self.metrics is not None and data.get("include_metrics") is True:
            for row in rows:  # an extra key, asked for: the Rust engine's rows stay as they are
                row["metrics"] = self.metrics.worker(row["id"])
        return {"workers": rows}

    def workers_info(self, data: dict[str, Any]) -> dict[str, Any]:
        name = _required_str(data, "name")
        namespace = _opt_str(data, "namespace")
        builtin = self.registry.builtin_workers.get(name)
        sockets = [c for c in self.registry.workers.values() if c.name == name and not c.closed]
        candidates = sorted({c.effective_namespace for c in sockets}
                            | ({DEFAULT_NAMESPACE} if builtin is not None else set()))
        if namespace is None:
            if DEFAULT_NAMESPACE in candidates:
                namespace = DEFAULT_NAMESPACE
            elif len(candidates) == 1:
                namespace = candidates[0]
            elif candidates:
                raise _not_found(f"Worker '{name}' is ambiguous: it is connected in "
                                 f"namespace(s): {', '.join(candidates)}. Pass `namespace` to "
                                 "disambiguate.")
        if namespace not in candidates:
            if candidates:
                raise _not_found(f"Worker '{name}' is not connected in the requested namespace; "
                                 f"it is connected in namespace(s): {', '.join(candidates)}.")
            raise _not_found(f"Worker '{name}' is not connected.")
        conn = next((c for c in sockets if c.effective_namespace == namespace), None)
        if conn is not None:
            worker = self.worker_summary(conn)
            _set(worker, "pid", conn.info.get("pid"))
            worker["internal"] = False
            functions = [e for e in self.registry.functions.values() if e.owner is conn]
            types = [t for t in self.triggers.types.values() if t.provider is conn]
        else:
            assert builtin is not None
            worker = self.builtin_summary(builtin)
            worker["internal"] = True
            functions = [e for e in self.registry.functions.values()
                         if e.builtin_worker == builtin.name]
            types = [t for t in self.triggers.types.values()
                     if t.worker_name == builtin.name and not isinstance(t.provider,
                                                                         WorkerConnection)]
        keys = {e.key for e in functions}
        bindings = [b for b in self.triggers.active() if (b.namespace, b.function_id) in keys]
        return {
            "worker": worker,
            "functions": sorted((self.function_summary(e) for e in functions),
                                key=lambda r: r["function_id"]),
            "trigger_types": sorted((self.type_summary(t) for t in types),
                                    key=lambda r: r["id"]),
            "registered_triggers": [self.binding_summary(b) for b in bindings],
        }


def _required_str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise IIIInvocationError("deserialization_error", f"missing field `{key}` (a string)")
    return value
