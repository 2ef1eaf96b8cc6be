"""docs/asyncapi.json is generated from the registry and never drifts from it.

After a schema change run ``python -m contracts.asyncapi`` and commit docs/asyncapi.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

from contracts._paths import ASYNCAPI_DOCUMENT
from contracts.asyncapi import build_document, main
from contracts.registry import MESSAGES
from contracts.topics import ALL_TOPICS, TOPICS

_COMPONENT_KEY = re.compile(r"^[\w.\-]+$")


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_committed_asyncapi_document_matches_the_code() -> None:
    assert ASYNCAPI_DOCUMENT.exists(), "run `python -m contracts.asyncapi`"
    assert main(["--check"]) == 0, "docs/asyncapi.json is stale: run `python -m contracts.asyncapi`"


def test_the_check_fails_on_a_stale_document_and_passes_once_regenerated(tmp_path: Path) -> None:
    stale = tmp_path / "asyncapi.json"
    stale.write_text('{"asyncapi": "3.0.0"}\n', encoding="utf-8")
    assert main(["--check", "--output", str(stale)]) == 1
    assert main(["--output", str(stale)]) == 0
    assert main(["--check", "--output", str(stale)]) == 0


def test_channels_are_the_topics_and_messages_are_the_registry() -> None:
    doc = build_document()
    assert doc["asyncapi"] == "3.0.0"
    assert list(doc["channels"]) == list(ALL_TOPICS)
    assert set(doc["components"]["messages"]) == {spec.name for spec in MESSAGES.values()}
    for spec in MESSAGES.values():
        assert spec.name in doc["channels"][spec.topic]["messages"]
        payload = doc["components"]["messages"][spec.name]["payload"]
        assert payload["properties"]["type"]["const"] == spec.type
        assert payload["properties"]["schema_version"]["const"] == spec.version
    for topic, channel in doc["channels"].items():
        retention = channel["bindings"]["kafka"]["topicConfiguration"]["retention.ms"]
        assert retention == TOPICS[topic].retention_ms


def test_every_reference_resolves_and_every_key_is_a_valid_component_name() -> None:
    doc = build_document()
    for ref in _refs(doc):
        _resolve(doc, ref)
    for section in ("messages", "schemas"):
        assert all(_COMPONENT_KEY.match(key) for key in doc["components"][section])
    assert all(_COMPONENT_KEY.match(key) for key in doc["operations"])


def test_every_operation_sends_or_receives_messages_of_its_own_channel() -> None:
    doc = build_document()
    for op_id, operation in doc["operations"].items():
        assert operation["action"] in {"send", "receive"}
        channel_ref = operation["channel"]["$ref"]
        assert operation["messages"], op_id
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), op_id
    sent = {
        m["$ref"]
        for op in doc["operations"].values()
        if op["action"] == "send"
        for m in op["messages"]
    }
    assert len(sent) == len(MESSAGES), "every message has exactly one sending operation"


def test_every_schema_is_a_valid_draft_7_schema() -> None:
    doc = build_document()
    for schema in doc["components"]["schemas"].values():
        Draft7Validator.check_schema(schema)
    for message in doc["components"]["messages"].values():
        Draft7Validator.check_schema(message["payload"])


def test_the_document_is_plain_json() -> None:
    text = ASYNCAPI_DOCUMENT.read_text(encoding="utf-8")
    assert json.loads(text) == build_document()
