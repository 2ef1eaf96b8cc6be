"""The registry of every message: (type, schema_version) -> model class and topic.

Consumers look a decoded envelope up here (``contracts.envelope.parse_payload``); producers
are checked against it (``make_envelope`` refuses an unregistered model); the JSON Schema
snapshot and the AsyncAPI document are generated from it. A message module is registered by
listing it in ``MESSAGE_MODULES``; every ``Message`` subclass defined in it is picked up.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
from dataclasses import dataclass
from types import ModuleType

from contracts.base import Message, MessageKind
from contracts.topics import ALL_TOPICS

__all__ = [
    "MESSAGES",
    "MESSAGE_MODULES",
    "MessageSpec",
    "UnknownMessageType",
    "lookup",
    "messages_on",
    "spec_of",
]

#: Every module that defines messages, producer by producer, major version by major version.
MESSAGE_MODULES: tuple[str, ...] = (
    "contracts.gateway.v1",
    "contracts.credit.v1",
    "contracts.loyalty.v1",
    "contracts.notifier.v1",
    "contracts.deadletter.v1",
)


class UnknownMessageType(LookupError):
    """No message model is registered for this (type, schema_version) or class."""


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """A registered message: its identity, model class, topic, kind and defining module."""

    type: str
    version: int
    model: builtins.type[Message]
    topic: str
    kind: MessageKind
    module: str

    @property
    def name(self) -> str:
        """``"<type>.v<version>"``, e.g. ``"credit.SaleCompleted.v1"``."""
        return f"{self.type}.v{self.version}"


def _messages_in(module: ModuleType) -> list[type[Message]]:
    # vars() keeps definition order, so the registry reads like the module
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Message)
        and obj.__module__ == module.__name__
        and "TYPE" in vars(obj)  # concrete messages only, not abstract bases
    ]


def _build() -> dict[tuple[str, int], MessageSpec]:
    registry: dict[tuple[str, int], MessageSpec] = {}
    for module_name in MESSAGE_MODULES:
        module = importlib.import_module(module_name)
        for model in _messages_in(module):
            key = (model.TYPE, model.VERSION)
            if key in registry:
                other = registry[key].model
                raise RuntimeError(f"{key} registered twice: {other.__qualname__}, {model}")
            if model.TOPIC not in ALL_TOPICS:
                raise RuntimeError(f"{model.__qualname__}.TOPIC {model.TOPIC!r} is not a topic")
            registry[key] = MessageSpec(
                type=model.TYPE,
                version=model.VERSION,
                model=model,
                topic=model.TOPIC,
                kind=model.KIND,
                module=module_name,
            )
    return registry


#: (type, schema_version) -> spec, in module order.
MESSAGES: dict[tuple[str, int], MessageSpec] = _build()

_BY_MODEL: dict[type[Message], MessageSpec] = {spec.model: spec for spec in MESSAGES.values()}


def lookup(type_: str, version: int) -> MessageSpec:
    """The spec for an envelope's (type, schema_version); ``UnknownMessageType`` if none."""
    try:
        return MESSAGES[(type_, version)]
    except KeyError:
        raise UnknownMessageType(
            f"unknown message type {type_!r} schema_version {version}"
        ) from None


def spec_of(model: type[Message] | Message) -> MessageSpec:
    """The spec of a model class or instance; ``UnknownMessageType`` if it is not registered."""
    cls = model if isinstance(model, type) else type(model)
    try:
        return _BY_MODEL[cls]
    except KeyError:
        raise UnknownMessageType(
            f"{cls.__module__}.{cls.__qualname__} is not a registered message"
        ) from None


def messages_on(topic: str) -> list[MessageSpec]:
    """Every message that travels on ``topic``, in registry order."""
    return [spec for spec in MESSAGES.values() if spec.topic == topic]
