"""Errors the gateway answers with: each has the API's stable `code` and its HTTP status."""

from __future__ import annotations

from typing import Any

#: code -> (HTTP status, title). The codes are the public API's (api.md "Error codes").
PROBLEMS: dict[str, tuple[int, str]] = {
    "validation_error": (422, "The request is not valid"),
    "unauthorized": (401, "Missing or invalid API key"),
    "forbidden": (403, "This key may not do that"),
    "not_found": (404, "Not found"),
    "card_not_found": (422, "Unknown card"),
    "card_blocked": (422, "The card is blocked"),
    "card_required": (422, "A card is required"),
    "not_vip": (422, "The customer is not VIP"),
    "insufficient_bonus": (422, "Not enough bonus"),
    "insufficient_advance": (422, "Not enough advance"),
    "credit_limit_exceeded": (422, "Credit limit exceeded"),
    "credit_blocked_overdue": (422, "Credit blocked while debt is overdue"),
    "payment_mismatch": (422, "Payments do not match the total"),
    "no_debt": (422, "The customer has no debt"),
    "return_exceeds_sold": (422, "Return exceeds what was sold"),
    "already_revoked": (409, "The discount was already revoked"),
    "not_overdue": (422, "The sale is not overdue"),
    "idempotency_conflict": (409, "Idempotency key reused with another request"),
    "amount_out_of_range": (422, "A balance would leave the range that can be recorded"),
    # not (yet) in api.md's list: the operation failed for good on its way (a handler, a
    # dead letter, no answer within the deadline); nothing of it is recorded, the key's
    # answer stays this refusal, and the customer's next operation goes through
    "operation_failed": (422, "The operation failed and was not recorded"),
    # beyond the list of api.md: infrastructure answers, never business outcomes
    "method_not_allowed": (405, "Method not allowed"),
    "payload_too_large": (413, "Request body too large"),
    "rate_limited": (429, "Too many requests"),
    "unavailable": (503, "A service the answer depends on is unavailable"),
    "internal_error": (500, "Internal error"),
}


class GatewayError(Exception):
    """An answer other than success; rendered as problem+json by the API layer."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status if status is not None else PROBLEMS.get(code, (400, ""))[0]
        self.extra = extra or {}
        self.headers = headers or {}

    @property
    def title(self) -> str:
        return PROBLEMS.get(self.code, (self.status, self.code))[1]


class ValidationFailed(GatewayError):
    """`422 validation_error` with a list of `{"field", "message"}`."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        super().__init__("validation_error", detail, extra={"errors": errors})
        self.errors = errors


def invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed([{"field": field, "message": message}])


def not_found(what: str = "resource") -> GatewayError:
    return GatewayError("not_found", f"no such {what}")


def problem_body(code: str, detail: str, status: int | None = None, **extra: Any) -> dict[str, Any]:
    status_, title = PROBLEMS.get(code, (status or 400, code.replace("_", " ")))
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status if status is not None else status_,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return body
