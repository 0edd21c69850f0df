"""One thing per name: ``iii_rx`` is the reactive API, ``iii_rx.compat`` the official SDK's names,
and no name means one object in one and another object in the other (docs/migration.md)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import iii_rx
import iii_rx.errors
from iii_rx import compat

OLDER_SPELLINGS = {"ApiRequest", "ApiResponse", "get_context"}
"""Names of older official releases that compat keeps (docs/migration.md)."""


def _official_names() -> set[str]:
    """Every public name of the installed official ``iii-sdk`` (``iii``, ``iii_helpers``)."""
    names: set[str] = set()
    for root in ("iii", "iii_helpers"):
        package = importlib.import_module(root)
        names |= set(dir(package))
        for info in pkgutil.walk_packages(package.__path__, f"{root}."):
            try:
                module = importlib.import_module(info.name)
            except Exception:  # an optional dependency of the official SDK is missing
                continue
            names |= {name for name in dir(module) if not name.startswith("_")}
    return names


def test_a_name_in_both_namespaces_is_one_object() -> None:
    shared = set(iii_rx.__all__) & set(compat.__all__)
    different = sorted(name for name in shared
                       if getattr(iii_rx, name) is not getattr(compat, name))
    assert not different, f"same name, different objects: {different}"


def test_iii_rx_exports_nothing_of_compat() -> None:
    from_compat = sorted(name for name in iii_rx.__all__
                         if getattr(getattr(iii_rx, name), "__module__", "").startswith(
                             "iii_rx.compat"))
    assert not from_compat, f"iii_rx re-exports compat objects: {from_compat}"
    for name in ("register_worker", "InitOptions", "InvocationError", "Channel",
                 "ChannelReader", "ChannelWriter", "Logger", "TriggerConfig",
                 "current_invocation"):
        assert not hasattr(iii_rx, name), name


def test_compat_exports_only_the_official_names() -> None:
    extra = sorted(set(compat.__all__) - _official_names() - OLDER_SPELLINGS)
    assert not extra, f"compat exports names the official SDK does not have: {extra}"


def test_iii_rx_exports_the_whole_error_tree() -> None:
    tree = {name for name in iii_rx.errors.__all__
            if inspect.isclass(getattr(iii_rx.errors, name))}
    assert tree <= set(iii_rx.__all__), sorted(tree - set(iii_rx.__all__))


def test_every_exported_error_derives_from_iii_error() -> None:
    for namespace in (iii_rx, compat):
        for name in namespace.__all__:
            value = getattr(namespace, name)
            if inspect.isclass(value) and issubclass(value, BaseException):
                assert issubclass(value, iii_rx.IIIError), f"{namespace.__name__}.{name}"


def test_the_official_error_names_keep_their_meaning() -> None:
    assert compat.InvocationError is iii_rx.IIIInvocationError
    assert compat.RegistrationRejectedError is iii_rx.IIIRegistrationRejectedError
    assert issubclass(compat.HandlerExit, Exception)
    from iii_rx.compat.errors import NotSupportedError

    assert issubclass(NotSupportedError, NotImplementedError)


def test_classes_generic_in_the_official_sdk_are_generic_alike() -> None:
    """``TriggerTypeRef[Any, Any]`` (what the official ``register_trigger_type`` returns) must
    subscript at run time and under mypy, with the official number of parameters."""
    import iii

    official_classes: dict[str, type] = {}
    for info in pkgutil.walk_packages(iii.__path__, "iii."):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # an optional dependency of the official SDK is missing
            continue
        official_classes.update((name, value) for name, value in vars(module).items()
                                if inspect.isclass(value) and value.__module__ == info.name)
    differ = []
    for name in compat.__all__:
        official = official_classes.get(name)
        if inspect.isclass(official) and getattr(official, "__parameters__", ()):
            ours = getattr(compat, name)
            if len(getattr(ours, "__parameters__", ())) != len(official.__parameters__):
                differ.append(name)
    assert not differ, f"generic in the official SDK, not alike here: {differ}"
    assert compat.TriggerTypeRef[Any, Any].__origin__ is compat.TriggerTypeRef


def test_every_iii_error_class_is_in_the_tree_and_exported() -> None:
    """An error class defined elsewhere (``iii_rx.operators``, ``iii_rx.http``) was neither
    exported nor drawn; compat's own are drawn and stay compat's (docs/migration.md)."""
    classes: dict[str, str] = {}
    for info in pkgutil.walk_packages(iii_rx.__path__, "iii_rx."):
        module = importlib.import_module(info.name)
        classes.update((name, info.name) for name, value in vars(module).items()
                       if inspect.isclass(value) and issubclass(value, iii_rx.IIIError)
                       and value.__module__ == info.name)
    assert "HandlerExit" in classes  # the walk reached compat
    tree = iii_rx.errors.__doc__ or ""
    undrawn = sorted(name for name in classes if name not in tree)
    assert not undrawn, f"not in the tree of iii_rx/errors.py: {undrawn}"
    unexported = sorted(name for name, module in classes.items()
                        if not module.startswith("iii_rx.compat") and name not in iii_rx.__all__)
    assert not unexported, f"error classes iii_rx does not export: {unexported}"
