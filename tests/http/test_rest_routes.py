"""The REST API's route table (docs/protocol.md §6.5.1): keys, shapes, replacement, ownership,
matching."""

from __future__ import annotations

import pytest

from iii_rx.engine.rest_routes import Route, RouteError, RouteTable, route_from_config


def route(trigger_id: str, path: str, method: str = "GET", owner: object = None) -> Route:
    return route_from_config(trigger_id, f"fn::{trigger_id}",
                             {"api_path": path, "http_method": method}, owner=owner)


def test_leading_slash_and_method_case_do_not_matter() -> None:
    table = RouteTable()
    table.add(route("a", "users/:id", "post"))
    found = table.match("POST", "/users/42")
    assert found is not None
    assert found[0].trigger_id == "a" and found[1] == {"id": "42"}
    assert found[0].path == "users/:id"  # the pattern as registered
    assert table.match("GET", "/users/42") is None


def test_same_method_and_path_replaces() -> None:
    table = RouteTable()
    first = route("a", "/x")
    table.add(first)
    assert table.add(route("b", "x")) is first
    found = table.match("GET", "/x")
    assert found is not None and found[0].trigger_id == "b"
    assert len(table) == 1
    assert not table.remove("a", "GET", "/x")  # the replaced binding no longer owns it
    assert table.match("GET", "/x") is not None
    assert table.remove("b", "GET", "/x")
    assert table.match("GET", "/x") is None


def test_same_shape_other_parameter_names_is_refused() -> None:
    table = RouteTable()
    table.add(route("a", "/a/:x"))
    with pytest.raises(RouteError, match="conflicts"):
        table.add(route("b", "/a/:y"))
    table.add(route("c", "/a/:y", "POST"))  # another method is another route
    table.add(route("d", "/a/:x"))          # same names: replacement


def test_unbind_checks_the_owner() -> None:
    table = RouteTable()
    owner, other = object(), object()
    table.add(route("a", "/x", owner=owner))
    assert not table.remove("a", "GET", "/x", other)
    assert table.remove("a", "GET", "/x", owner)


def test_static_segments_win_and_params_stay_as_sent() -> None:
    """As the Rust engine: parameters are not percent-decoded, and empty segments count (a
    trailing or doubled ``/`` is another path)."""
    table = RouteTable()
    table.add(route("param", "/users/:id"))
    table.add(route("me", "/users/me"))
    table.add(route("deep", "/users/:id/posts/:post"))
    table.add(route("trail", "/trail/"))
    assert table.match("GET", "/users/me")[0].trigger_id == "me"  # type: ignore[index]
    found = table.match("GET", "/users/a%2Fb%20c")
    assert found is not None and found[1] == {"id": "a%2Fb%20c"}
    assert table.match("GET", "/users/42/") is None
    assert table.match("GET", "//users/42") is None
    assert table.match("GET", "/users/") is None  # no empty parameter
    assert table.match("GET", "/users//posts/9") is None
    assert table.match("GET", "/trail/")[0].trigger_id == "trail"  # type: ignore[index]
    assert table.match("GET", "/trail") is None
    found = table.match("GET", "/users/7/posts/9")
    assert found is not None and found[1] == {"id": "7", "post": "9"}
    assert table.match("GET", "/users") is None
    assert table.match("GET", "/users/7/posts") is None


def test_head_falls_back_to_get_and_root_path() -> None:
    table = RouteTable()
    table.add(route("root", "/"))
    assert table.match("HEAD", "/")[0].trigger_id == "root"  # type: ignore[index]
    assert table.match("GET", "")[0].trigger_id == "root"  # type: ignore[index]


@pytest.mark.parametrize(
    "config",
    [None, {}, {"api_path": ""}, {"api_path": 3}, {"api_path": "/x", "http_method": "TRACE"},
     {"api_path": "/x/:"}, {"api_path": "/x/:a/:a"}],
)
def test_bad_configs(config: object) -> None:
    with pytest.raises(RouteError):
        route_from_config("t", "f", config)


def test_config_fields() -> None:
    r = route_from_config("t", "f", {"api_path": "/x", "condition_function_id": "c",
                                     "middleware_function_ids": ["m1", 2, "m2"]},
                          namespace="ns", metadata={"k": 1})
    assert (r.method, r.condition_function_id, r.middleware_function_ids) == (
        "GET", "c", ("m1", "m2"))
    assert (r.namespace, r.metadata) == ("ns", {"k": 1})
