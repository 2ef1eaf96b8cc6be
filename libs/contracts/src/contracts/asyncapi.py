"""An AsyncAPI 3.0 document of every topic and message, generated from the registry.

``python -m contracts.asyncapi``           (re)write ``docs/asyncapi.json``
``python -m contracts.asyncapi --check``   exit 1 when the committed file differs (CI drift)
``python -m contracts.asyncapi --stdout``  print it

Channels are the topics; each message is the envelope whose ``type`` and ``schema_version``
are fixed and whose ``payload`` is the model's JSON Schema. Operations say which service
sends and which services receive each channel. Every schema lives once under
``components.schemas``.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from pydantic.json_schema import models_json_schema

import contracts
from contracts._paths import ASYNCAPI_DOCUMENT, dump_json
from contracts.envelope import Envelope
from contracts.generated import document_main
from contracts.registry import MESSAGES, MessageSpec
from contracts.topics import TOPICS

__all__ = ["build_document", "main", "render"]

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
_REF_TEMPLATE = "#/components/schemas/{model}"

#: the service that sends the messages defined in each producer package
_PRODUCER_OF_PACKAGE = {
    "gateway": "pos-gateway",
    "credit": "credit",
    "loyalty": "loyalty",
    "notifier": "notifier",
    "deadletter": "every consumer",
}


def _producer(spec: MessageSpec) -> str:
    package = spec.module.split(".")[1]
    return _PRODUCER_OF_PACKAGE[package]


def _op_id(action: str, service: str, topic: str) -> str:
    """An operation id from [A-Za-z0-9._-] only."""
    return f"{action}.{service.replace(' ', '-')}.{topic}"


def _doc(obj: object) -> tuple[str, str]:
    text = inspect.getdoc(obj) or ""
    summary = text.split("\n\n", 1)[0].replace("\n", " ")
    return summary, text


def _envelope_for(spec: MessageSpec, payload_ref: dict[str, Any], base: dict[str, Any]) -> Any:
    schema = copy.deepcopy(base)
    schema.pop("title", None)
    schema["description"] = f"Envelope carrying {spec.name} on {spec.topic}."
    props = schema["properties"]
    props["type"] = {"type": "string", "const": spec.type}
    props["schema_version"] = {"type": "integer", "const": spec.version}
    props["payload"] = payload_ref
    return schema


def build_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a JSON-ready dict (deterministic)."""
    specs = list(MESSAGES.values())
    refs, defs = models_json_schema(
        [(spec.model, "validation") for spec in specs] + [(Envelope, "validation")],
        ref_template=_REF_TEMPLATE,
    )
    schemas: dict[str, Any] = dict(sorted(defs.get("$defs", {}).items()))
    envelope_schema = schemas["Envelope"]

    messages: dict[str, Any] = {}
    for spec in specs:
        summary, description = _doc(spec.model)
        messages[spec.name] = {
            "name": spec.type,
            "title": f"{spec.type.split('.', 1)[1]} v{spec.version}",
            "summary": summary,
            "description": description,
            "contentType": "application/json",
            "tags": [{"name": spec.kind}, {"name": _producer(spec)}],
            "payload": _envelope_for(spec, refs[(spec.model, "validation")], envelope_schema),
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": TOPICS[spec.topic].key},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic, topic_spec in TOPICS.items():
        on_topic = [spec for spec in specs if spec.topic == topic]
        channels[topic] = {
            "address": topic,
            "title": topic,
            "description": f"{topic_spec.description} Key: {topic_spec.key}.",
            "messages": {
                spec.name: {"$ref": f"#/components/messages/{spec.name}"} for spec in on_topic
            },
            "bindings": {
                "kafka": {
                    "topic": topic,
                    "topicConfiguration": {"retention.ms": topic_spec.retention_ms},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        channel_ref = {"$ref": f"#/channels/{topic}"}
        by_producer: dict[str, list[MessageSpec]] = {}
        for spec in on_topic:
            by_producer.setdefault(_producer(spec), []).append(spec)
        for producer, produced in by_producer.items():
            operations[_op_id("send", producer, topic)] = {
                "action": "send",
                "channel": channel_ref,
                "summary": f"{producer} publishes to {topic}.",
                "messages": [
                    {"$ref": f"#/channels/{topic}/messages/{spec.name}"} for spec in produced
                ],
            }
        for consumer in topic_spec.consumers:
            operations[_op_id("receive", consumer, topic)] = {
                "action": "receive",
                "channel": channel_ref,
                "summary": f"{consumer} consumes {topic}.",
                "messages": [
                    {"$ref": f"#/channels/{topic}/messages/{spec.name}"} for spec in on_topic
                ],
            }

    summary, description = _doc(contracts)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "VIP credit and loyalty: messages",
            "version": contracts.__version__,
            "description": (
                f"{description}\n\nGenerated by `python -m contracts.asyncapi` from the "
                "contracts registry; do not edit by hand."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    """The exact text of ``docs/asyncapi.json``."""
    return dump_json(build_document())


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    return document_main(
        argv,
        prog="python -m contracts.asyncapi",
        description=__doc__,
        default=ASYNCAPI_DOCUMENT,
        render=render,
        stale="is out of date with the contracts: run `python -m contracts.asyncapi` and commit "
        "the result",
        summary=lambda _: f"{len(MESSAGES)} messages on {len(TOPICS)} channels",
    )


if __name__ == "__main__":
    raise SystemExit(main())
