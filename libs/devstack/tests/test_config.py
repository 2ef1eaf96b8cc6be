"""Rendering of the Kafka and PostgreSQL configuration (no process started)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from devstack.errors import DevstackError
from devstack.kafka import (
    broker_count_from_env,
    check_logging_jars,
    kafka_version,
    new_cluster_id,
    render_log4j2_properties,
    render_server_properties,
    replication_for,
    start_kafka_cluster,
)
from devstack.paths import check_name, kafka_pom, repo_root, run_dir
from devstack.postgres import make_database_url, render_server_options


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {k.strip(): v.strip() for k, v in pairs}


def test_server_properties_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    props = parse_properties(
        render_server_properties(port=39092, controller_port=39093, data_dir=tmp_path / "data")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:39093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:39092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["offsets.topic.num.partitions"] == "6"
    for key, value in props.items():
        if key.endswith("replication.factor") or key.endswith("min.isr"):
            assert value == "1", key
    assert props["min.insync.replicas"] == "1"
    assert "log.retention.ms" not in props  # topics carry their own retention


def test_a_node_of_a_three_broker_cluster_replicates_everything_three_times(
    tmp_path: Path,
) -> None:
    voters = "1@127.0.0.1:39001,2@127.0.0.1:39002,3@127.0.0.1:39003"
    props = parse_properties(
        render_server_properties(
            port=39102,
            controller_port=39002,
            data_dir=tmp_path / "data",
            node_id=2,
            voters=voters,
            brokers=3,
        )
    )
    assert props["process.roles"] == "broker,controller"  # combined: each node a voter
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == voters
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:39102,CONTROLLER://127.0.0.1:39002"
    # internal topics (consumer offsets, transactions, share groups) too
    for key, value in props.items():
        if key.endswith("replication.factor"):
            assert value == "3", key
        if key.endswith("min.isr"):
            assert value == "2", key
    assert props["min.insync.replicas"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    # a killed broker is fenced (its leaderships move) after 4 s of missed heartbeats
    assert int(props["broker.session.timeout.ms"]) <= 4000


def test_replication_is_three_with_two_in_sync_from_three_brokers_up() -> None:
    assert replication_for(1) == (1, 1)
    assert replication_for(3) == (3, 2)


def test_the_broker_count_comes_from_kafka_brokers() -> None:
    assert broker_count_from_env({}) == 1
    assert broker_count_from_env({"KAFKA_BROKERS": "3"}) == 3
    for bad in ("2", "three", "5"):
        with pytest.raises(DevstackError):
            broker_count_from_env({"KAFKA_BROKERS": bad})


def test_a_run_dir_of_one_broker_is_not_restarted_as_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "cluster-id").write_text(new_cluster_id())
    with pytest.raises(DevstackError, match="1-broker Kafka, not 3"):
        start_kafka_cluster(tmp_path, brokers=3)


def test_log4j2_config_logs_to_the_given_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "kafka-server.log"
    props = parse_properties(render_log4j2_properties(log_file))
    assert props["appender.file.fileName"] == str(log_file)
    assert props["rootLogger.appenderRef.file.ref"] == props["appender.file.name"]


def test_cluster_id_is_urlsafe_base64_of_16_bytes() -> None:
    cid = new_cluster_id()
    assert len(cid) == 22
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16
    assert new_cluster_id() != cid


def test_cluster_id_never_starts_with_a_dash_that_kafka_storage_would_take_for_an_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uuid

    dashed = uuid.UUID(bytes=b"\xf8" + b"\x01" * 15)  # encodes as "-AEB..."
    plain = uuid.UUID(bytes=b"\x01" * 16)
    ids = iter([dashed, plain])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(ids))
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    assert new_cluster_id() == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")


def test_kafka_version_comes_from_the_pom() -> None:
    version = kafka_version()
    assert version.split(".")[0] == "4"
    assert kafka_pom() == repo_root() / "libs" / "devstack" / "kafka" / "pom.xml"


def test_kafka_version_of_a_pom_without_it(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text('<project xmlns="http://maven.apache.org/POM/4.0.0"><properties/></project>')
    with pytest.raises(DevstackError):
        kafka_version(pom)


@pytest.mark.parametrize(
    ("jars", "ok"),
    [
        (["slf4j-api-1.7.36.jar", "log4j-core-2.26.1.jar", "log4j-slf4j-impl-2.26.1.jar"], True),
        (["slf4j-api-1.7.36.jar", "log4j-core-2.26.1.jar", "log4j-slf4j2-impl-2.26.1.jar"], False),
        (["slf4j-api-2.0.17.jar", "log4j-core-2.26.1.jar", "log4j-slf4j2-impl-2.26.1.jar"], True),
        (["slf4j-api-2.0.17.jar", "log4j-slf4j2-impl-2.26.1.jar"], False),
    ],
)
def test_slf4j_binding_must_match_the_api(tmp_path: Path, jars: list[str], ok: bool) -> None:
    for jar in jars:
        (tmp_path / jar).touch()
    assert (check_logging_jars(tmp_path) == []) is ok


def test_postgres_options_listen_on_loopback_only(tmp_path: Path) -> None:
    argv = render_server_options(port=45432, socket_dir=tmp_path)
    options = dict(argv[i + 1].split("=", 1) for i in range(0, len(argv), 2))
    assert all(argv[i] == "-c" for i in range(0, len(argv), 2))
    assert options["listen_addresses"] == "127.0.0.1"
    assert options["port"] == "45432"
    assert options["unix_socket_directories"] == str(tmp_path)
    assert options["max_connections"] == "300"
    assert options["synchronous_commit"] == "on"
    assert "fsync" not in options  # stays on


def test_postgres_extra_options_add_to_and_override_devstacks(tmp_path: Path) -> None:
    argv = render_server_options(
        port=45432,
        socket_dir=tmp_path,
        extra={"shared_preload_libraries": "pg_stat_statements", "max_connections": "50"},
    )
    options = dict(argv[i + 1].split("=", 1) for i in range(0, len(argv), 2))
    assert options["shared_preload_libraries"] == "pg_stat_statements"
    assert options["max_connections"] == "50"
    assert options["listen_addresses"] == "127.0.0.1"


def test_database_url_quotes_credentials() -> None:
    url = make_database_url(user="retail", password="a/b@c", port=5555)
    assert url == "postgresql://retail:a%2Fb%40c@127.0.0.1:5555/postgres"


def test_database_url_names_the_socket_directory(tmp_path: Path) -> None:
    url = make_database_url(user="retail", password="pw", port=5555, socket_dir=tmp_path / "s k")
    assert url == f"postgresql://retail:pw@127.0.0.1:5555/postgres?host={tmp_path}/s%20k"


def test_run_dir_names(tmp_path: Path) -> None:
    assert run_dir("dev", tmp_path) == tmp_path / "dev"
    for bad in ("", "../x", "a/b", ".hidden", "x" * 80):
        with pytest.raises(ValueError, match="invalid stack name"):
            check_name(bad)
