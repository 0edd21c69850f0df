"""Read the Rust engine's config file (``iii-config.yaml``): the text, not its meaning.

The format (docs/engine-config.md): a YAML mapping with a ``workers`` list (``modules`` is
the older name of the same list) and an optional ``registration_namespace_grace_ms``; each
worker is ``{name: ..., config: {...}}``. Before parsing, every ``${VAR}`` or
``${VAR:default}`` in the text is replaced by the environment variable, or its default when
unset; an unset variable without a default is an error, as in the Rust engine.

The Rust engine moves a worker's ``config`` block, on its first run, into the ``configuration``
worker's directory (``./config/<name>.yaml`` by default, ``{id, value, ...}``) and leaves the
entry without one. An entry without ``config`` therefore takes that file's ``value`` when the
file exists (with the same substitution), so a file the Rust engine migrated still configures
ours.

What each worker's ``config`` means is :mod:`iii_rx.engine.config_workers`' business. Every
problem raises :class:`ConfigFileError` naming the file, the key (``workers[1].config.port``)
and what was expected, so that a bad file fails at start and says where.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["ConfigFileError", "WorkerEntry", "load_config_file", "substitute_env"]

_VAR = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")
_TOP_KEYS = ("workers", "modules", "registration_namespace_grace_ms")


class ConfigFileError(ValueError):
    """A config file that cannot be used: ``path``, ``key`` and what was expected."""

    def __init__(self, path: str, key: str, expected: str) -> None:
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(f"{where}{expected}")
        self.path = path
        self.key = key
        self.expected = expected


@dataclass(frozen=True)
class WorkerEntry:
    """One ``workers`` item: its position (for error keys), name and config mapping."""

    index: int
    name: str
    config: dict[str, Any]
    migrated: bool = False
    """The entry has no ``config`` key (its settings may live in the configuration
    worker's directory)."""

    @property
    def key(self) -> str:
        """``workers[i].config``: the prefix of this entry's keys in error messages."""
        return f"workers[{self.index}].config"


@dataclass(frozen=True)
class ConfigFile:
    """A parsed file: its path, the worker entries in order, the top-level grace period."""

    path: str
    workers: tuple[WorkerEntry, ...]
    namespace_grace_ms: int | None = None


def substitute_env(text: str, path: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` / ``${VAR:default}`` in ``text`` (the Rust engine does it on the text)."""
    env = os.environ if environ is None else environ

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found is not None:
            return found
        if default is None:
            line = text.count("\n", 0, match.start()) + 1
            raise ConfigFileError(path, f"line {line}", f"environment variable {name} is not "
                                  f"set and ${{{name}}} gives no default (write "
                                  f"${{{name}:default}})")
        return default

    return _VAR.sub(value, text)


def load_config_file(path: str | os.PathLike[str],
                     environ: Mapping[str, str] | None = None) -> ConfigFile:
    """Read, substitute and parse ``path``; raises :class:`ConfigFileError`."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigFileError(name, "", f"cannot read the config file ({exc.strerror or exc})"
                              ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(name, "", "expected UTF-8 text") from exc
    config = parse_config(_yaml(substitute_env(text, name, environ), name), name)
    return _with_migrated(config, environ)


def _yaml(text: str, path: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigFileError(path, where, f"expected valid YAML ({problem})") from exc
    except RecursionError:  # PyYAML composes nodes recursively
        raise ConfigFileError(path, "", "expected valid YAML (nested too deep)") from None
    except ValueError as exc:  # a constructor's: int() of more than 4300 digits
        raise ConfigFileError(path, "", f"expected valid YAML ({exc})") from None


def _with_migrated(config: ConfigFile, environ: Mapping[str, str] | None) -> ConfigFile:
    """Entries without ``config`` take ``<directory>/<name>.yaml``'s ``value`` if it exists."""
    if not any(e.migrated for e in config.workers):
        return config
    directory = "./config"
    for entry in config.workers:
        if entry.name == "configuration":
            adapter = entry.config.get("adapter")
            settings = adapter.get("config") if isinstance(adapter, dict) else None
            if isinstance(settings, dict) and isinstance(settings.get("directory"), str):
                directory = settings["directory"]
    entries = []
    for entry in config.workers:
        path = os.path.join(directory, f"{entry.name}.yaml")
        if entry.migrated and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                data = _yaml(substitute_env(f.read(), path, environ), path)
            value = data.get("value") if isinstance(data, dict) else None
            if value is not None and not isinstance(value, dict):
                raise ConfigFileError(path, "value", f"expected the {entry.name} settings (a "
                                      "mapping)")
            entry = WorkerEntry(entry.index, entry.name, dict(value or {}))
        entries.append(entry)
    return ConfigFile(config.path, tuple(entries), config.namespace_grace_ms)


def parse_config(data: Any, path: str) -> ConfigFile:
    """Check the top level of a parsed file and split it into worker entries."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigFileError(path, "(top level)", f"expected a mapping with a 'workers' list, "
                              f"got {_kind(data)}")
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigFileError(path, str(key), "unknown top-level key (expected one of "
                                  + ", ".join(_TOP_KEYS) + ")")
    grace = data.get("registration_namespace_grace_ms")
    if grace is not None and (type(grace) is not int or grace < 0):
        raise ConfigFileError(path, "registration_namespace_grace_ms",
                              f"expected a non-negative integer (milliseconds), got {grace!r}")
    items: list[Any] = []
    for list_key in ("modules", "workers"):
        value = data.get(list_key)
        if value is None:
            continue
        if not isinstance(value, list):
            raise ConfigFileError(path, list_key, f"expected a list of workers, got "
                                  f"{_kind(value)}")
        items.extend(value)
    entries = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigFileError(path, f"workers[{index}]", "expected a mapping with 'name' "
                                  f"and 'config', got {_kind(item)}")
        worker_name = item.get("name")
        if not isinstance(worker_name, str) or not worker_name.strip():
            raise ConfigFileError(path, f"workers[{index}].name", "expected the worker's name "
                                  "(a non-empty string)")
        config = item.get("config")
        if config is not None and not isinstance(config, dict):
            raise ConfigFileError(path, f"workers[{index}].config", f"expected a mapping, got "
                                  f"{_kind(config)}")
        entries.append(WorkerEntry(index, worker_name.strip(), config or {},
                                   migrated="config" not in item))
    return ConfigFile(path, tuple(entries), grace)


def _kind(value: Any) -> str:
    """A short description of what was found instead (``a list``, ``the string 'x'``)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
