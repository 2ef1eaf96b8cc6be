"""The gateway's OpenAPI document, shaped so that a client can be generated from it.

FastAPI writes most of it from the routes and `schemas`; this module adds what it cannot
know: readable operation ids (`createSale`, not `create_sale_v1_sales_post`), the tags and
the servers, every error answer typed as the one `Problem` schema under
`application/problem+json` (FastAPI puts a route's extra models under its default media type,
and adds its own `HTTPValidationError` for 422s the gateway never sends), and an example of
each operation (`examples.py`). Only the document changes: no answer does.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from pos_gateway.entrypoints.api.examples import OPERATION_EXAMPLES, problem_example
from pos_gateway.entrypoints.api.problems import PROBLEM_MEDIA_TYPE
from pos_gateway.entrypoints.api.routes import DECLARED_PATHS

TAGS: list[dict[str, str]] = [
    {
        "name": "chains",
        "description": "Chains (operator key), their stores, terminals, keys "
        "and settings (chain admin key)",
    },
    {"name": "staff", "description": "Staff users and their sign-in (Bearer tokens)"},
    {"name": "customers", "description": "VIP customers and their cards (chain admin key)"},
    {
        "name": "till",
        "description": 'What a POS terminal does: "Calculate", sales, money, '
        "returns; a `202` is followed on its `status_url`",
    },
    {"name": "back office", "description": "Cancelling a payment's bonus, revoking a discount"},
    {"name": "reports", "description": "JSON, or CSV with `Accept: text/csv`"},
    {
        "name": "tasks",
        "description": "Reminder tasks for customer service and the webhook announcing them",
    },
]

#: The document is served by the gateway itself, so "/" is wherever it was read from (behind
#: an Ingress too); the second entry is the address `make up` prints.
SERVERS: list[dict[str, str]] = [
    {"url": "/", "description": "The gateway that serves this document"},
    {"url": "http://127.0.0.1:8080", "description": "A local stack started with `make up`"},
]

_METHODS = ("get", "put", "post", "delete", "patch")
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
#: FastAPI's own 422 model: the gateway answers its validation errors as a `Problem`
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def operation_id(route: APIRoute) -> str:
    """`create_sale` -> `createSale`: the route's name in lower camel case (a route may
    name its own with `operation_id=`)."""
    head, *rest = route.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _type_problems(operation: dict[str, Any]) -> None:
    for status, answer in operation.get("responses", {}).items():
        if status[0] not in "45":
            continue
        code = problem_example(int(status))["code"]
        answer["content"] = {
            PROBLEM_MEDIA_TYPE: {
                "schema": dict(_PROBLEM_REF),
                "examples": {code: {"$ref": f"#/components/examples/{code}"}},
            }
        }
        if answer.get("description") == "Validation Error":  # FastAPI's own 422
            answer["description"] = "`validation_error`: the request is not valid"


def _add_examples(operation: dict[str, Any]) -> None:
    examples = OPERATION_EXAMPLES.get(operation["operationId"], {})
    if "request" in examples:
        body = operation["requestBody"]["content"]["application/json"]
        body["example"] = examples["request"]
    for status, answer in operation["responses"].items():
        content = answer.get("content", {})
        # the route's own success answer, or the `202` of a till operation still pending
        shown = examples.get("pending" if status == "202" else "response")
        if status[0] == "2" and "application/json" in content and shown is not None:
            content["application/json"]["example"] = shown
        if "text/csv" in content and "csv" in examples:
            content["text/csv"]["example"] = examples["csv"]


def _problem_statuses(document: dict[str, Any]) -> set[int]:
    return {
        int(status)
        for item in document["paths"].values()
        for method in _METHODS
        for status in item.get(method, {}).get("responses", {})
        if status[0] in "45"
    }


def _unused_schemas(document: dict[str, Any]) -> list[str]:
    text = repr(document["paths"]) + repr(
        {k: v for k, v in document["components"]["schemas"].items() if k not in _FASTAPI_VALIDATION}
    )
    return [
        name
        for name in _FASTAPI_VALIDATION
        if not re.search(rf"#/components/schemas/{name}'", text)
    ]


def build_document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=TAGS,
        servers=SERVERS,
    )
    # the routing table has the till's operations first (`routes.till_operations_first`); the
    # document lists the paths as declared, the staff routes' (included after them) last
    declared = {path: i for i, path in enumerate(DECLARED_PATHS)}
    document["paths"] = dict(
        sorted(document["paths"].items(), key=lambda item: declared.get(item[0], len(declared)))
    )
    for item in document["paths"].values():
        for method in _METHODS:
            if method in item:
                _type_problems(item[method])
                _add_examples(item[method])
    # one example of each problem, referenced from every answer of its status
    document["components"]["examples"] = {
        (body := problem_example(status))["code"]: {"summary": body["title"], "value": body}
        for status in sorted(_problem_statuses(document))
    }
    schemas = document["components"]["schemas"]
    for name in _unused_schemas(document):
        schemas.pop(name, None)
    return document


def install_openapi(app: FastAPI) -> None:
    """`app.openapi()` (and `GET /openapi.json`) answer `build_document`, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
