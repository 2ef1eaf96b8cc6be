"""The OpenAPI document is one a client can be generated from: every answer has a schema,
every error is the one `Problem` under `application/problem+json`, operation ids are readable
and unique, and each operation has examples that its own schemas accept."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from pos_gateway.bootstrap import Gateway
from pos_gateway.config import Settings
from pos_gateway.domain.errors import PROBLEMS, problem_body
from pos_gateway.entrypoints.api.examples import OPERATION_EXAMPLES
from pos_gateway.entrypoints.app import build_public_app

METHODS = ("get", "put", "post", "delete", "patch")
PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_public_app(Gateway(Settings(operator_token="t" * 32))).openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # the schema's $refs point into the document's components
    return Draft202012Validator(
        {**schema, "components": document["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def test_every_success_answer_with_a_body_has_a_schema(document: dict[str, Any]) -> None:
    untyped = [
        f"{method} {path} {status}"
        for method, path, op in operations(document)
        for status, answer in op["responses"].items()
        if status.startswith("2")
        for media in answer.get("content", {}).values()
        if not media.get("schema")
    ]
    assert untyped == []


def test_every_error_answer_is_the_one_problem_schema_as_problem_json(
    document: dict[str, Any],
) -> None:
    for method, path, op in operations(document):
        errors = {s: a for s, a in op["responses"].items() if s[0] in "45"}
        assert errors, f"{method} {path} documents no error answer"
        for status, answer in errors.items():
            assert list(answer["content"]) == [PROBLEM_JSON], (method, path, status)
            schema = answer["content"][PROBLEM_JSON]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
    # FastAPI's own 422 model is gone: the gateway never answers it
    assert not {"HTTPValidationError", "ValidationError"} & set(document["components"]["schemas"])


def test_the_problem_code_is_an_enum_of_every_code_the_gateway_answers(
    document: dict[str, Any],
) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert problem["properties"]["code"]["enum"] == list(PROBLEMS)
    assert set(problem["required"]) == {"title", "status", "detail", "code"}
    check = validator(document, {"$ref": "#/components/schemas/Problem"})
    for code in PROBLEMS:
        check.validate(problem_body(code, "an example"))
    assert not check.is_valid(problem_body("no_such_code", "an example"))


def test_operation_ids_are_unique_lower_camel_case_words(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if not re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", i)] == []
    assert {"createSale", "getCard", "takeMoney", "getPaymentBalanceReport"} <= set(ids)


def test_every_operation_has_a_tag_that_the_document_describes(document: dict[str, Any]) -> None:
    described = {tag["name"] for tag in document["tags"]}
    used = {tag for _, _, op in operations(document) for tag in op["tags"]}
    assert used == described


def test_the_document_names_its_servers(document: dict[str, Any]) -> None:
    assert document["servers"][0]["url"] == "/"  # wherever the document was read from


def test_every_operation_has_an_example_and_every_body_answer_too(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        examples = OPERATION_EXAMPLES.get(op["operationId"], {})
        if "requestBody" in op:
            assert "request" in examples, f"{method} {path}: no request example"
        success = [a for s, a in op["responses"].items() if s in ("200", "201")]
        if any("application/json" in a.get("content", {}) for a in success):
            assert "response" in examples, f"{method} {path}: no answer example"
        for status, answer in op["responses"].items():
            for media in answer.get("content", {}).values():
                if status[0] in "245":
                    assert "example" in media or "examples" in media, (method, path, status)
    operation_ids = {op["operationId"] for _, _, op in operations(document)}
    assert set(OPERATION_EXAMPLES) <= operation_ids, "an example of no operation"


def test_every_example_is_accepted_by_the_schema_it_illustrates(document: dict[str, Any]) -> None:
    shown = 0
    for method, path, op in operations(document):
        parts = [op.get("requestBody", {}), *op["responses"].values()]
        for part in parts:
            for media_type, media in part.get("content", {}).items():
                values = [media["example"]] if "example" in media else []
                for ref in media.get("examples", {}).values():
                    name = ref["$ref"].rsplit("/", 1)[-1]
                    values.append(document["components"]["examples"][name]["value"])
                for value in values:
                    errors = list(validator(document, media["schema"]).iter_errors(value))
                    assert errors == [], f"{method} {path} {media_type}: {errors[0].message}"
                    shown += 1
    assert shown > 100


def test_a_request_example_is_a_request_the_gateway_accepts() -> None:
    # the schemas above are FastAPI's rendering of the models: the models themselves (with
    # their validators: strict decimals, time zones, card numbers) accept the examples too
    from pos_gateway import schemas as s

    models = {
        "createChain": s.ChainCreate,
        "createStore": s.StoreCreate,
        "createTerminal": s.TerminalCreate,
        "updateSettings": s.SettingsUpdate,
        "createCustomer": s.CustomerCreate,
        "updateCustomer": s.CustomerPatch,
        "issueCard": s.CardIssue,
        "createSale": s.SaleCreate,
        "takeMoney": s.DebtPaymentCreate,
        "payAdvance": s.AdvanceCreate,
        "returnMoney": s.RefundCreate,
        "returnGoods": s.ReturnCreate,
        "setBonusType": s.BonusTypeUpdate,
        "completeTask": s.TaskComplete,
        "setWebhook": s.WebhookSet,
        "createUser": s.UserCreate,
        "signIn": s.SessionCreate,
    }
    with_request = {k for k, v in OPERATION_EXAMPLES.items() if "request" in v}
    assert with_request == set(models)
    for operation, model in models.items():
        model.model_validate(OPERATION_EXAMPLES[operation]["request"])


async def test_the_document_is_served_without_a_key() -> None:
    app = build_public_app(Gateway(Settings(operator_token="t" * 32)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as http:
        answer = await http.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.json() == app.openapi()
