"""Every message model is registered once, on a real topic, with a name that says what it is."""

from __future__ import annotations

import re

from contracts.base import Command, Event, Message
from contracts.registry import MESSAGE_MODULES, MESSAGES, lookup, messages_on, spec_of
from contracts.topics import (
    ALL_TOPICS,
    DAY_MS,
    DEAD_LETTERS,
    LOYALTY_COMMANDS,
    POS_COMMANDS,
    RETENTION_MS,
    TOPICS,
)


def _all_subclasses(cls: type[Message]) -> set[type[Message]]:
    found: set[type[Message]] = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= _all_subclasses(sub)
    return found


def _concrete_messages() -> set[type[Message]]:
    return {
        cls
        for cls in _all_subclasses(Message)
        if "TYPE" in vars(cls) and cls.__module__.startswith("contracts.")
    }


def test_every_message_model_in_the_package_is_registered() -> None:
    registered = {spec.model for spec in MESSAGES.values()}
    assert _concrete_messages() == registered


def test_type_and_version_identify_one_model() -> None:
    keys = [(spec.model.TYPE, spec.model.VERSION) for spec in MESSAGES.values()]
    assert len(keys) == len(set(keys)) == len(MESSAGES)
    for (type_, version), spec in MESSAGES.items():
        assert lookup(type_, version) is spec
        assert spec_of(spec.model) is spec


def test_every_message_travels_on_a_declared_topic() -> None:
    for spec in MESSAGES.values():
        assert spec.topic in ALL_TOPICS, spec.name
    for topic in ALL_TOPICS:
        assert messages_on(topic), f"nothing is ever published on {topic}"


def test_topic_names_and_retention() -> None:
    assert POS_COMMANDS == "pos.commands.v1"
    assert DEAD_LETTERS == "deadletter.v1"
    assert len(ALL_TOPICS) == 7
    assert all(name.endswith(".v1") for name in ALL_TOPICS)
    assert set(RETENTION_MS) == set(ALL_TOPICS) == set(TOPICS)
    # finite: reporting rebuilds from a snapshot plus the log since (not from offset 0)
    assert RETENTION_MS[DEAD_LETTERS] == 90 * DAY_MS
    assert all(ms == 30 * DAY_MS for t, ms in RETENTION_MS.items() if t != DEAD_LETTERS)


def test_commands_are_imperative_and_events_past_tense() -> None:
    for spec in MESSAGES.values():
        name = spec.type.split(".", 1)[1]
        if issubclass(spec.model, Command):
            assert spec.kind == "command"
            assert spec.topic in {POS_COMMANDS, LOYALTY_COMMANDS}, spec.name
            assert not re.search(r"(ed|Letter)$", name), spec.name
        else:
            assert issubclass(spec.model, Event)
            assert spec.kind == "event"
            assert re.search(r"(ed|Overdue|Letter)$", name), spec.name


def test_the_namespace_is_the_handler_for_commands_and_the_topic_owner_for_events() -> None:
    for spec in MESSAGES.values():
        namespace = spec.type.split(".", 1)[0]
        assert spec.topic.startswith(namespace + ".") or (
            spec.topic == POS_COMMANDS and namespace == "credit"
        ), spec.name
        assert spec.module in MESSAGE_MODULES


def test_every_model_says_what_it_is_for_who_produces_and_who_consumes_it() -> None:
    for spec in MESSAGES.values():
        doc = (spec.model.__doc__ or "").lower()
        assert "produced by" in doc, spec.name
        assert "consumed by" in doc, spec.name


def test_money_fields_are_never_floats() -> None:
    for spec in MESSAGES.values():
        assert '"number"' not in str(spec.model.model_json_schema()).replace("'", '"'), spec.name
