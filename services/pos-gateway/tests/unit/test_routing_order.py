"""The till's operations come first in the routing table (`routes.till_operations_first`):
that changes which route answers no request, and the OpenAPI document keeps its order."""

from __future__ import annotations

import re

from starlette.routing import BaseRoute, Match, Mount, Route

from pos_gateway.bootstrap import Gateway
from pos_gateway.config import Settings
from pos_gateway.entrypoints.api.routes import _TILL_OPERATIONS, DECLARED_PATHS, router
from pos_gateway.entrypoints.api.staff_routes import router as staff_router
from pos_gateway.entrypoints.app import build_public_app


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def _matches(route: BaseRoute, method: str, path: str) -> Match:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    return route.matches(scope)[0]


def test_the_till_operations_head_the_routing_table_a_sale_first() -> None:
    till = [
        route for route in router.routes if getattr(route, "endpoint", None) in _TILL_OPERATIONS
    ]
    assert len(till) == 5
    assert router.routes[: len(till)] == till
    assert (till[0].path, till[0].methods) == ("/v1/sales", {"POST"})  # type: ignore[attr-defined]


def test_no_other_route_matches_a_till_operation_path_nor_the_reverse() -> None:
    routes = [*router.routes, *staff_router.routes]
    till = [route for route in routes if getattr(route, "endpoint", None) in _TILL_OPERATIONS]
    for route in routes:
        path = _concrete(route.path)  # type: ignore[attr-defined]
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            for other in till:
                if other is not route:
                    assert _matches(other, method, path) is Match.NONE, (route, other)
                    assert _matches(route, method, _concrete(other.path)) is Match.NONE  # type: ignore[attr-defined]


def test_the_document_lists_the_paths_as_declared() -> None:
    document = build_public_app(Gateway(Settings(operator_token="t" * 32))).openapi()
    paths = list(document["paths"])
    assert paths[: len(DECLARED_PATHS)] == list(DECLARED_PATHS)
    staff = list(dict.fromkeys(route.path for route in staff_router.routes))  # type: ignore[attr-defined]
    assert paths[len(DECLARED_PATHS) :] == staff


def test_the_api_heads_the_apps_table_and_matches_no_documentation_path() -> None:
    app = build_public_app(Gateway(Settings(operator_token="t" * 32)))
    api = [*router.routes, *staff_router.routes]
    documentation = [
        route
        for route in app.router.routes
        if isinstance(route, Route | Mount) and not route.path.startswith("/v1")
    ]
    assert {r.path for r in documentation} >= {"/openapi.json", "/docs", "/redoc"}
    first_doc = app.router.routes.index(documentation[0])
    assert all(r in documentation for r in app.router.routes[first_doc:])
    for doc in documentation:
        path = doc.path + ("/x1.js" if isinstance(doc, Mount) else "")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            for route in api:
                assert _matches(route, method, path) is Match.NONE, (doc, route)
                assert _matches(doc, method, _concrete(route.path)) is Match.NONE  # type: ignore[attr-defined]
