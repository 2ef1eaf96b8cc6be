"""JSON log lines carry the service and the message's ids; the dead-letter command's helpers."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI

import servicekit.logging as sk_logging
from contracts.deadletter.v1 import DeadLetter
from contracts.envelope import encode, make_envelope
from contracts.gateway.v1 import CancelPaymentBonus
from contracts.topics import LOYALTY_COMMANDS
from servicekit import sql
from servicekit.consumer import Consumer, MessageContext
from servicekit.deadletters import Letter, parse_since, resolve, select
from servicekit.runtime import install_http_metrics


class _Session:
    """Just enough of an AsyncSession for the consumer's happy path (no database: its
    statements go through `servicekit.sql`, replaced below)."""

    def __init__(self) -> None:
        # where the consumer keeps a batch's outbox rows until it writes them
        self.sync_session = SimpleNamespace(info={})

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[None]:
        yield

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        yield


@asynccontextmanager
async def _session_factory() -> AsyncIterator[_Session]:
    yield _Session()


@pytest.fixture(autouse=True)
def _statements_without_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """The statements the consumer sends through asyncpg (`servicekit.sql`): the batch's inbox
    insert returns the ids it was given (all new), the others nothing."""

    async def fetch(_session: Any, statement: str, *args: Any) -> list[Any]:
        return [(m,) for m in args[1]] if statement.startswith("INSERT INTO inbox") else []

    async def execute(_session: Any, _statement: str, *_args: Any) -> str:
        return ""

    monkeypatch.setattr(sql, "fetch", fetch)
    monkeypatch.setattr(sql, "execute", execute)

    @asynccontextmanager
    async def transaction(_consumer: Consumer, **_: Any) -> AsyncIterator[sql.Tx]:
        """The fast path's transaction, on no connection (its statements are replaced)."""
        yield sql.Tx(SimpleNamespace(), SimpleNamespace(_connection=None, _transaction=None))  # type: ignore[arg-type]

    monkeypatch.setattr(Consumer, "_transaction", transaction)


@pytest.fixture
def json_log(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(sk_logging, "_SERVICE", "loyalty")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(sk_logging.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [orjson.loads(line) for line in out.getvalue().splitlines()]
    root.removeHandler(handler)


async def test_a_log_line_from_a_consumer_handler_carries_service_correlation_chain_and_message(
    json_log: Any,
) -> None:
    chain_id = uuid.uuid4()
    command = CancelPaymentBonus(
        payment_id=uuid.uuid4(),
        chain_id=chain_id,
        customer_id=uuid.uuid4(),
        requested_at=datetime.now(UTC),
    )
    env = make_envelope(command, chain_id=chain_id, key="k", correlation_id=uuid.uuid4())

    async def handler(ctx: MessageContext, payload: CancelPaymentBonus) -> None:
        logging.getLogger("loyalty.handlers").warning("handling %s", payload.payment_id)

    consumer = Consumer(
        name="loyalty", topics=[LOYALTY_COMMANDS], handlers={CancelPaymentBonus: handler}
    )
    consumer.bind(_session_factory)  # type: ignore[arg-type]
    value = encode(env)
    await consumer.process_records(
        [
            ConsumerRecord(
                topic=LOYALTY_COMMANDS,
                partition=0,
                offset=7,
                timestamp=0,
                timestamp_type=0,
                key=b"k",
                value=value,
                checksum=None,
                serialized_key_size=1,
                serialized_value_size=len(value),
                headers=[],
            )
        ]
    )

    [line] = [x for x in json_log() if x["logger"] == "loyalty.handlers"]
    assert line["service"] == "loyalty"
    assert line["correlation_id"] == str(env.correlation_id)
    assert line["chain_id"] == str(chain_id)
    assert line["message_id"] == str(env.message_id)
    assert line["level"] == "warning" and line["msg"].startswith("handling ")
    # the ids belong to the message: nothing is left behind for the next log line
    logging.getLogger("loyalty.handlers").warning("after")
    assert "message_id" not in json_log()[-1]


async def test_a_log_line_while_serving_http_carries_the_request_correlation_id(
    json_log: Any,
) -> None:
    app = FastAPI()
    install_http_metrics(app)

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        logging.getLogger("svc").warning("pong")
        return {}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.get("/ping", headers={"X-Correlation-Id": "corr-1"})
    assert response.headers["x-correlation-id"] == "corr-1"
    [line] = [x for x in json_log() if x["logger"] == "svc"]
    assert line["correlation_id"] == "corr-1" and line["service"] == "loyalty"


def _letter(
    partition: int, offset: int, *, consumer: str = "credit", failed_at: datetime | None = None
) -> Letter:
    return Letter(
        partition,
        offset,
        DeadLetter(
            consumer=consumer,
            original_topic="pos.commands.v1",
            partition=2,
            offset=40,
            key="k",
            reason="invalid payload:\n  field required",
            error_type="ValidationError",
            original_value="{}",
            failed_at=failed_at or datetime.now(UTC),
            original_type="credit.RecordSale",
        ),
    )


def test_a_listed_letter_is_one_line_with_its_id_consumer_origin_type_and_reason() -> None:
    line = _letter(3, 17).line()
    assert "\n" not in line
    assert line.startswith("3:17\t")
    for part in (
        "consumer=credit",
        "original=pos.commands.v1[2]@40",
        "type=credit.RecordSale",
        "error=ValidationError",
        "reason=invalid payload: field required",
    ):
        assert part in line


def test_letters_are_chosen_by_partition_and_offset_or_by_an_offset_only_one_letter_has() -> None:
    letters = [_letter(0, 5), _letter(1, 5), _letter(1, 6)]
    assert resolve(letters, ["1:5"]) == [letters[1]]
    assert resolve(letters, ["6", "1:6"]) == [letters[2]]
    with pytest.raises(SystemExit, match="partition:offset"):
        resolve(letters, ["5"])
    with pytest.raises(SystemExit, match="no dead letter"):
        resolve(letters, ["2:5"])


def test_the_listing_filters_by_consumer_and_by_age() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    old = _letter(0, 1, consumer="loyalty", failed_at=now - timedelta(days=3))
    new = _letter(0, 2, failed_at=now - timedelta(minutes=5))
    assert select([old, new], consumer="loyalty") == [old]
    assert select([old, new], since=parse_since("2h", now=now)) == [new]
    assert parse_since("2026-04-29T00:00") == datetime(2026, 4, 29, tzinfo=UTC)
    assert parse_since("2026-04-29T00:00:00Z") == datetime(2026, 4, 29, tzinfo=UTC)


def _requests(method: str, template: str, status: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "http_requests_total", {"method": method, "route": template, "status": status}
    )
    return value or 0.0


async def test_http_metrics_count_by_route_template_and_status_and_make_up_a_correlation_id() -> (
    None
):
    app = FastAPI()
    install_http_metrics(app)

    @app.post("/things/{thing_id}", status_code=201)
    async def make(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {}

    before = _requests("POST", "/things/{thing_id}", "201")
    live_before = _requests("GET", "/health/live", "200")
    unmatched_before = _requests("GET", "unmatched", "404")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        made = [await client.post(f"/things/{n}") for n in ("a", "b")]
        await client.get("/health/live")
        missing = await client.get("/nowhere")
    assert [r.status_code for r in made] == [201, 201]
    assert _requests("POST", "/things/{thing_id}", "201") == before + 2  # one label, any id
    assert _requests("GET", "/health/live", "200") == live_before  # probes are not counted
    assert missing.status_code == 404
    assert _requests("GET", "unmatched", "404") == unmatched_before + 1
    ids = {r.headers["x-correlation-id"] for r in made}
    assert len(ids) == 2 and all(len(i) == 36 for i in ids)  # a fresh uuid each


def test_the_requests_httpx_sends_are_not_logged_at_info(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(sk_logging, "_SERVICE", sk_logging._SERVICE)
    level = root.level
    try:
        sk_logging.configure_logging("pos-gateway", "INFO")
        # one line per call to reporting, credit or the notifier was logged before
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    finally:
        root.setLevel(level)
        for name in ("aiokafka", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
