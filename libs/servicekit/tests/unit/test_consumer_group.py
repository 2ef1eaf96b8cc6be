"""How a consumer joins its group: a member killed without leaving (kill -9) must not hold its
partitions for long, since its restarted process waits for them (the pipeline benchmark's
recovery phase measures the whole restart: docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from servicekit.consumer import Consumer


class _Broker:
    def __init__(self) -> None:
        self.topics: tuple[str, ...] = ()
        self.options: dict[str, Any] = {}

    def subscriber(self, *topics: str, **options: Any) -> Callable[[Any], Any]:
        self.topics, self.options = topics, options
        return lambda handler: handler


def test_a_dead_member_is_out_of_the_group_after_six_seconds_not_aiokafkas_ten() -> None:
    broker = _Broker()
    consumer = Consumer(name="bench-group", topics=["a.v1", "b.v1"], handlers={})
    consumer.attach(broker, session_factory=None)  # type: ignore[arg-type]
    assert broker.topics == ("a.v1", "b.v1")
    assert broker.options["group_id"] == "bench-group"
    assert broker.options["session_timeout_ms"] == 6_000
    # the broker's minimum; heartbeats well inside it
    assert broker.options["heartbeat_interval_ms"] * 3 <= broker.options["session_timeout_ms"]


def test_the_subscriber_leaves_the_records_undecoded_for_the_consumer_to_decode_once() -> None:
    from types import SimpleNamespace

    broker = _Broker()
    consumer = Consumer(name="decode-once", topics=["a.v1"], handlers={})
    consumer.attach(broker, session_factory=None)  # type: ignore[arg-type]
    decoder = broker.options["decoder"]
    # FastStream's default would json.loads every record's bytes; ours does nothing with them
    batch = SimpleNamespace(body=[b'{"message_id": "x"}', b"not json"], raw_message=())
    assert decoder(batch) is None
