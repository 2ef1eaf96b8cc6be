"""Local infrastructure without Docker: real Kafka (KRaft) and PostgreSQL 15 as plain
processes, plus the services (the five of the system and the back office). Standard library only.

For tests (e2e fixtures), start a whole stack on free ports and stop it::

    from devstack import ServicePorts, start_stack

    with start_stack("e2e-123", ports=ServicePorts.free()) as stack:
        stack.gateway_url, stack.operator_token, stack.database_url
"""

from devstack.errors import DevstackError
from devstack.kafka import (
    KafkaCluster,
    KafkaServer,
    fetch_kafka,
    kafka_version,
    start_kafka,
    start_kafka_cluster,
)
from devstack.ports import free_port, free_ports, port_is_free
from devstack.postgres import PostgresServer, start_postgres
from devstack.procs import pid_alive
from devstack.services import (
    SERVICE_NAMES,
    SERVICES,
    ServicePorts,
    Services,
    build_service_env,
    start_services,
)
from devstack.stack import (
    Infra,
    Stack,
    log_paths,
    purge_run_dir,
    run_status,
    start_infra,
    start_stack,
    stop_run,
)

__all__ = [
    "SERVICES",
    "SERVICE_NAMES",
    "DevstackError",
    "Infra",
    "KafkaCluster",
    "KafkaServer",
    "PostgresServer",
    "ServicePorts",
    "Services",
    "Stack",
    "build_service_env",
    "fetch_kafka",
    "free_port",
    "free_ports",
    "kafka_version",
    "log_paths",
    "pid_alive",
    "port_is_free",
    "purge_run_dir",
    "run_status",
    "start_infra",
    "start_kafka",
    "start_kafka_cluster",
    "start_postgres",
    "start_services",
    "start_stack",
    "stop_run",
]
