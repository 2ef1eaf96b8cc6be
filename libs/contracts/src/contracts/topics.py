"""Topic names, who writes and reads them, how they are keyed and how long they are kept.

A topic name ends with its major version: a breaking schema change is a new ``v2`` topic
that runs next to ``v1`` until every consumer has moved.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALL_TOPICS",
    "CREDIT_EVENTS",
    "DAY_MS",
    "DEAD_LETTERS",
    "DEAD_LETTER_RETENTION_MS",
    "DEFAULT_RETENTION_MS",
    "KEEP_FOREVER",
    "LOYALTY_COMMANDS",
    "LOYALTY_EVENTS",
    "MASTERDATA_EVENTS",
    "NOTIFIER_EVENTS",
    "POS_COMMANDS",
    "RETENTION_MS",
    "TOPICS",
    "TopicSpec",
]

POS_COMMANDS = "pos.commands.v1"
LOYALTY_COMMANDS = "loyalty.commands.v1"
CREDIT_EVENTS = "credit.events.v1"
LOYALTY_EVENTS = "loyalty.events.v1"
MASTERDATA_EVENTS = "masterdata.events.v1"
NOTIFIER_EVENTS = "notifier.events.v1"
DEAD_LETTERS = "deadletter.v1"

#: ``retention.ms`` meaning "never delete".
KEEP_FOREVER = -1
DAY_MS = 86_400_000
#: Commands and events are kept 30 days (``KAFKA_RETENTION_DAYS``): reporting rebuilds from a
#: snapshot of its read models plus the log after it, so nothing needs the log from offset 0.
DEFAULT_RETENTION_MS = 30 * DAY_MS
#: Dead letters are evidence an operator may need late: 90 days
#: (``KAFKA_DEAD_LETTER_RETENTION_DAYS``).
DEAD_LETTER_RETENTION_MS = 90 * DAY_MS


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What a topic is for; ``retention_ms`` is the default ``retention.ms`` it is created with
    (servicekit.topics; the services' settings may change it)."""

    name: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    key: str
    description: str
    retention_ms: int = DEFAULT_RETENTION_MS


TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        TopicSpec(
            POS_COMMANDS,
            producers=("pos-gateway",),
            consumers=("credit",),
            key="customer id (sale id for anonymous sales)",
            description="Till and back-office operations the gateway accepted, for credit.",
        ),
        TopicSpec(
            LOYALTY_COMMANDS,
            producers=("credit", "pos-gateway"),
            consumers=("loyalty",),
            key="customer id",
            description="Bonus work for loyalty: apply a pending operation, cancel an accrual.",
        ),
        TopicSpec(
            CREDIT_EVENTS,
            producers=("credit",),
            consumers=("pos-gateway", "reporting", "notifier"),
            key="customer id (sale id for anonymous sales)",
            description="Outcomes of credit operations and overdue/settled facts.",
        ),
        TopicSpec(
            LOYALTY_EVENTS,
            producers=("loyalty",),
            consumers=("credit", "reporting", "pos-gateway"),
            key="customer id",
            description="Answers to bonus commands and every bonus ledger movement.",
        ),
        TopicSpec(
            MASTERDATA_EVENTS,
            producers=("pos-gateway",),
            consumers=("credit", "loyalty", "reporting", "notifier"),
            key="customer id for customer/card events, chain id otherwise",
            description="Chains, stores, terminals, settings, customers and cards.",
        ),
        TopicSpec(
            NOTIFIER_EVENTS,
            producers=("notifier",),
            consumers=("reporting", "external"),
            key="customer id",
            description="Reminder tasks for customer service raised and closed.",
        ),
        TopicSpec(
            DEAD_LETTERS,
            producers=("every consumer",),
            consumers=("operators",),
            key="the original message's key",
            description="Messages a consumer can never process, with the reason.",
            retention_ms=DEAD_LETTER_RETENTION_MS,
        ),
    )
}

#: Every topic, in the order of the architecture page.
ALL_TOPICS: tuple[str, ...] = tuple(TOPICS)

#: topic -> default ``retention.ms`` (30 days; dead letters 90 days).
RETENTION_MS: dict[str, int] = {name: spec.retention_ms for name, spec in TOPICS.items()}
