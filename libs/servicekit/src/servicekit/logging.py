"""Structured JSON logs: one object per line, carrying service, correlation, chain and message ids.

The ids come from context variables that the HTTP middleware and the consumer set, so a log
line written anywhere below them carries them without passing them around.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)
chain_id_var: ContextVar[str | None] = ContextVar("chain_id", default=None)
message_id_var: ContextVar[str | None] = ContextVar("message_id", default=None)

_SERVICE = "service"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": _SERVICE,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, var in (
            ("correlation_id", correlation_id_var),
            ("chain_id", chain_id_var),
            ("message_id", message_id_var),
        ):
            value = var.get()
            if value:
                entry[key] = value
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stderr for the whole process (uvicorn's and FastStream's loggers too)."""
    global _SERVICE
    _SERVICE = service
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "aiokafka"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # aiokafka is chatty at INFO about every rebalance step; httpx logs every request it sends
    # at INFO (the gateway's calls to reporting, credit and the notifier: a JSON line per card
    # lookup on the hot path)
    for name in ("aiokafka", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def mask_card(card_number: str | None) -> str | None:
    """Card numbers are never logged in full: keep the last four characters."""
    if not card_number:
        return card_number
    return "*" * max(0, len(card_number) - 4) + card_number[-4:]
