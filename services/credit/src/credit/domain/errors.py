"""Why the ledger refuses an operation: a stable code (the API's) and a human detail."""

from __future__ import annotations


class Refusal(Exception):
    """The operation is refused as a whole; nothing of it is recorded. `field`: the request
    field at fault, for a `validation_error`."""

    def __init__(self, code: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.field = field


class InvalidOperation(Exception):
    """The command contradicts what the gateway guarantees: it can never be processed."""
