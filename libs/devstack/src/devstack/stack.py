"""One stack = one run dir `.run/<name>/`: Kafka + PostgreSQL (+ the services).

`start_infra` / `start_stack` are what `python -m devstack`, the Makefile and the e2e fixtures
call. Both are context managers; anything they started is also stopped at interpreter exit
unless `stop_at_exit=False` (what `devstack up` uses so the stack outlives the command), and
`stop_run(name)` stops a stack from its pid files alone (`devstack down`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import postgres as pg
from devstack.errors import DevstackError
from devstack.kafka import (
    KafkaCluster,
    KafkaServer,
    broker_count_from_env,
    start_kafka_cluster,
)
from devstack.paths import run_dir as make_run_dir
from devstack.ports import free_port
from devstack.postgres import PostgresServer, start_postgres
from devstack.procs import (
    ManagedProcess,
    Progress,
    StoppedOnExit,
    detach,
    read_pid_file,
    signal_pid,
    stderr_progress,
    stop_pid_file,
)
from devstack.services import SERVICE_NAMES, ServicePorts, Services, start_services

STATE_FILE = "stack.json"


@dataclass
class Infra(StoppedOnExit):
    """Kafka and PostgreSQL of one run dir: started here, or given by the environment."""

    name: str
    run_dir: Path
    kafka_bootstrap_servers: str
    database_url: str
    kafka: KafkaCluster | None = None
    postgres: PostgresServer | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "DATABASE_URL": self.database_url,
        }

    def export_lines(self) -> str:
        """`export NAME=value` lines for a shell's `eval`."""
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.env.items())

    def detach(self) -> None:
        """Let the servers outlive this Python process."""
        if self.kafka is not None:
            self.kafka.stop_at_exit = False
            for node in self.kafka.nodes:
                detach(node.process)
        if self.postgres is not None:
            detach(self.postgres.process)

    def stop(self, *, purge: bool = False, progress: Progress = stderr_progress) -> None:
        """Stop Kafka, then PostgreSQL (only what this run dir started); `purge` also deletes
        the run dir (data, logs)."""
        if self.kafka is not None:
            self.kafka.stop(progress=progress)
        if self.postgres is not None:
            self.postgres.stop(progress=progress)
        if purge:
            purge_run_dir(self.run_dir)

    # -- fault injection: kill and restart one server by its PID ---------------------------

    def _kafka(self) -> KafkaCluster:
        if self.kafka is None:
            raise DevstackError("this stack did not start Kafka: it cannot kill or restart it")
        return self.kafka

    def kill_kafka(
        self, sig: int = signal.SIGKILL, *, node: int | None = None, timeout: float = 30.0
    ) -> int:
        """kill -9 a broker (by PID, only one this run dir started); return its PID. `node`
        (1..3) says which of a cluster; a single broker needs none. SIGTERM instead is a
        controlled shutdown: the broker hands its partition leaderships over first."""
        return _kill_and_wait(self._kafka().node(node).process, sig, timeout)

    def restart_kafka(
        self,
        *,
        node: int | None = None,
        timeout: float = 180.0,
        progress: Progress = stderr_progress,
    ) -> KafkaServer:
        """Start a broker again on the same ports and data (after `kill_kafka`; one still
        running is killed first). In a cluster, returns once every broker is live again."""
        cluster = self._kafka()
        _kill_and_wait(cluster.node(node).process, signal.SIGKILL, 30.0)
        node_id = cluster.node(node).node_id
        return cluster.start_node(node_id, timeout=timeout, progress=progress)

    def kill_postgres(self, sig: int = signal.SIGQUIT, *, timeout: float = 30.0) -> int:
        """PostgreSQL's immediate shutdown (SIGQUIT to the postmaster, by PID: every session
        ends at once, no checkpoint, crash recovery at the next start); return its PID."""
        if self.postgres is None:
            raise DevstackError("this stack did not start PostgreSQL: it cannot kill it")
        return _kill_and_wait(self.postgres.process, sig, timeout)

    def restart_postgres(
        self, *, timeout: float = 90.0, progress: Progress = stderr_progress
    ) -> PostgresServer:
        """Start PostgreSQL again on the same port and data folder (after `kill_postgres`)."""
        if self.postgres is None:
            raise DevstackError("this stack did not start PostgreSQL: it cannot restart it")
        _kill_and_wait(self.postgres.process, signal.SIGQUIT, 30.0)
        self.postgres = start_postgres(
            self.run_dir,
            port=self.postgres.port,
            timeout=timeout,
            progress=progress,
            options=self.postgres.options,
        )
        return self.postgres


@dataclass
class Stack(StoppedOnExit):
    """Infrastructure plus the services (the five of the system and the back office)."""

    infra: Infra
    services: Services
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.infra.name

    @property
    def run_dir(self) -> Path:
        return self.infra.run_dir

    @property
    def gateway_url(self) -> str:
        return self.services.gateway_url

    @property
    def backoffice_url(self) -> str:
        return self.services.backoffice_url

    @property
    def operator_token(self) -> str:
        return self.services.operator_token

    @property
    def ports(self) -> ServicePorts:
        return self.services.ports

    @property
    def kafka_bootstrap_servers(self) -> str:
        return self.infra.kafka_bootstrap_servers

    @property
    def database_url(self) -> str:
        return self.infra.database_url

    @property
    def env(self) -> dict[str, str]:
        """The environment the services were started with."""
        return self.services.env

    def url(self, service: str) -> str:
        return self.services.url(service)

    def log_path(self, service: str) -> Path:
        return self.services.log_path(service)

    def detach(self) -> None:
        for proc in self.services.processes.values():
            detach(proc)
        self.infra.detach()

    def stop(self, *, purge: bool = False, progress: Progress = stderr_progress) -> None:
        """Stop the services, then the infrastructure this stack started."""
        try:
            self.services.stop(progress=progress)
        finally:
            self.infra.stop(purge=purge, progress=progress)


def _kill_and_wait(proc: ManagedProcess, sig: int, timeout: float) -> int:
    """Signal one process by PID (if it is still that process) and wait until it is gone."""
    signal_pid(proc.info, sig)
    deadline = time.monotonic() + timeout
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.alive():
        proc.stop()  # SIGTERM/SIGINT, then SIGKILL of its process group
    return proc.pid


def _from_env(
    given: str | None, var: str, use_env: bool, env: Mapping[str, str] | None
) -> str | None:
    if given:
        return given
    if use_env:
        return (os.environ if env is None else env).get(var) or None
    return None


def start_infra(
    name: str = "dev",
    *,
    run_root: Path | None = None,
    kafka_bootstrap_servers: str | None = None,
    database_url: str | None = None,
    use_env: bool = True,
    env: Mapping[str, str] | None = None,
    kafka_port: int | None = None,
    kafka_controller_port: int | None = None,
    postgres_port: int | None = None,
    kafka_brokers: int | None = None,
    timeout: float = 180.0,
    stop_at_exit: bool = True,
    progress: Progress = stderr_progress,
    postgres_options: Mapping[str, str] | None = None,
) -> Infra:
    """Start Kafka and PostgreSQL in `.run/<name>/` (in parallel) and wait until both are ready.

    A piece is not started when its address is given (`kafka_bootstrap_servers`,
    `database_url`) or, with `use_env`, when `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` is set
    in `env` (default: os.environ). Kafka is `kafka_brokers` brokers (default: `KAFKA_BROKERS`
    from `env`, else 1; 3 is a cluster). Ports default to free ones. `postgres_options`: `-c`
    settings for the PostgreSQL started here, on top of devstack's. If either fails, whatever
    was started is stopped and DevstackError carries the log tail."""
    brokers = kafka_brokers or broker_count_from_env(env)
    rdir = make_run_dir(name, run_root)
    rdir.mkdir(parents=True, exist_ok=True)
    kafka_given = _from_env(kafka_bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS", use_env, env)
    db_given = _from_env(database_url, "DATABASE_URL", use_env, env)
    if kafka_given:
        progress(f"using Kafka at {kafka_given} (not starting one)")
    if db_given:
        progress(f"using PostgreSQL at {db_given.rsplit('@', 1)[-1]} (not starting one)")

    started = time.monotonic()
    kafka: KafkaCluster | None = None
    postgres: PostgresServer | None = None
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="devstack") as pool:
        kafka_future: Future[KafkaCluster] | None = None
        pg_future: Future[PostgresServer] | None = None
        if not db_given:
            pg_future = pool.submit(
                start_postgres,
                rdir,
                port=postgres_port,
                timeout=timeout,
                stop_at_exit=stop_at_exit,
                progress=progress,
                options=postgres_options,
            )
        if not kafka_given:
            given_ports = None
            if kafka_port is not None or kafka_controller_port is not None:
                if brokers != 1:
                    raise DevstackError("kafka_port / kafka_controller_port are for one broker")
                given_ports = [(kafka_port or free_port(), kafka_controller_port or free_port())]
            kafka_future = pool.submit(
                start_kafka_cluster,
                rdir,
                brokers=brokers,
                ports=given_ports,
                timeout=timeout,
                stop_at_exit=stop_at_exit,
                progress=progress,
            )
        errors: list[BaseException] = []
        for future in (pg_future, kafka_future):
            if future is None:
                continue
            try:
                result = future.result()
            except BaseException as exc:  # collect both, then clean up
                errors.append(exc)
                continue
            if isinstance(result, KafkaCluster):
                kafka = result
            else:
                postgres = result
    if errors:
        for server in (kafka, postgres):
            if server is not None:
                server.stop(progress=progress)
        if len(errors) == 1:
            raise errors[0]
        raise DevstackError("\n\n".join(str(e) for e in errors)) from errors[0]

    infra = Infra(
        name=name,
        run_dir=rdir,
        kafka_bootstrap_servers=kafka_given or (kafka.bootstrap_servers if kafka else ""),
        database_url=db_given or (postgres.database_url if postgres else ""),
        kafka=kafka,
        postgres=postgres,
    )
    _write_state(
        rdir,
        {
            **infra.env,
            "kafka_brokers": kafka.brokers if kafka else None,
            "infra_ready_seconds": round(time.monotonic() - started, 1),
        },
        replace=True,
    )
    progress(f"infrastructure ready in {time.monotonic() - started:.1f}s")
    return infra


def start_stack(
    name: str = "dev",
    *,
    ports: ServicePorts | None = None,
    operator_token: str | None = None,
    env: Mapping[str, str] | None = None,
    use_env: bool = True,
    run_root: Path | None = None,
    services: tuple[str, ...] = SERVICE_NAMES,
    infra_timeout: float = 180.0,
    ready_timeout: float = 180.0,
    stop_at_exit: bool = True,
    kafka_brokers: int | None = None,
    progress: Progress = stderr_progress,
    services_database_url: Callable[[str], str] | None = None,
    postgres_options: Mapping[str, str] | None = None,
) -> Stack:
    """Infrastructure (see `start_infra`) plus the services on `ports` (default:
    `ServicePorts.from_env(env)`, i.e. 8080..8084; tests pass `ServicePorts.free()`), ready
    when each answers 200 on /health/ready. `env` (default os.environ) is passed through to
    the services. `kafka_brokers` as for `start_infra`. `services_database_url`: the URL the
    services get, from the infrastructure's (the bench runs an older commit's code over TCP).
    Use as `with start_stack(...) as stack:`; a failure stops everything."""
    infra = start_infra(
        name,
        run_root=run_root,
        use_env=use_env,
        env=env,
        timeout=infra_timeout,
        stop_at_exit=stop_at_exit,
        kafka_brokers=kafka_brokers,
        progress=progress,
        postgres_options=postgres_options,
    )
    try:
        svc = start_services(
            infra.run_dir,
            kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
            database_url=(services_database_url or str)(infra.database_url),
            ports=ports or ServicePorts.from_env(env),
            operator_token=operator_token,
            base_env=env,
            names=services,
            ready_timeout=ready_timeout,
            stop_at_exit=stop_at_exit,
            progress=progress,
        )
    except BaseException:
        infra.stop(progress=progress)
        raise
    stack = Stack(infra=infra, services=svc)
    _write_state(
        infra.run_dir,
        {
            "gateway_url": stack.gateway_url,
            **({"backoffice_url": svc.backoffice_url} if "backoffice" in services else {}),
            "operator_token": stack.operator_token,
            "ports": stack.ports.as_dict(),
        },
    )
    return stack


# -- a run dir seen from outside (devstack down / status) ---------------------------------------

_STOP_ORDER = [f"svc-{n}" for n in reversed(SERVICE_NAMES)] + ["kafka", "postgres"]


def _stop_rank(stem: str) -> tuple[int, int, str]:
    """Services (in `_STOP_ORDER`, then extra instances), then every Kafka node, then
    PostgreSQL, then anything else."""
    if stem in _STOP_ORDER:
        group = 0 if stem.startswith("svc-") else 2 if stem.startswith("kafka") else 3
        return group, _STOP_ORDER.index(stem), stem
    if stem.startswith("svc-"):
        return 1, 0, stem
    if stem.startswith("kafka-"):
        return 2, 0, stem
    return 4, 0, stem


def pid_files(rdir: Path) -> list[Path]:
    """The run dir's pid files in stop order: services, Kafka (every node), PostgreSQL."""
    folder = rdir / "pids"
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.pid"), key=lambda p: _stop_rank(p.stem))


def stop_run(
    name: str,
    *,
    run_root: Path | None = None,
    purge: bool = False,
    keep_logs: bool = False,
    progress: Progress = stderr_progress,
) -> list[str]:
    """Stop everything a run dir's pid files name (services first, then Kafka, then
    PostgreSQL), each by PID; return the names that were running. `purge` deletes the run dir
    afterwards (all but `logs/` with `keep_logs`)."""
    rdir = make_run_dir(name, run_root)
    stopped = []
    paths = pid_files(rdir)
    # The nodes of a Kafka cluster stop together: one by one, the last would wait for a
    # controller quorum that is already gone until its stop timeout runs out.
    kafka_nodes = [p for p in paths if p.stem.startswith("kafka-")]
    for path in paths:
        if path in kafka_nodes:
            if path is kafka_nodes[0]:
                with ThreadPoolExecutor(max_workers=len(kafka_nodes)) as pool:
                    done = pool.map(lambda p: stop_pid_file(p, progress=progress), kafka_nodes)
                    stopped += [p.stem for p, was in zip(kafka_nodes, done, strict=True) if was]
            continue
        if stop_pid_file(path, progress=progress):
            stopped.append(path.stem)
    if purge:
        purge_run_dir(rdir, keep_logs=keep_logs)
    return stopped


def purge_run_dir(rdir: Path, *, keep_logs: bool = False) -> None:
    """Delete a (stopped) run dir and PostgreSQL folders it keeps elsewhere; with
    `keep_logs`, everything but `logs/`."""
    live = [p.stem for p in pid_files(rdir) if (info := read_pid_file(p)) and info.alive()]
    if live:
        raise DevstackError(f"not purging {rdir}: still running: {', '.join(live)}")
    for folder in pg.extra_folders(rdir):
        shutil.rmtree(folder, ignore_errors=True)
    if not keep_logs:
        shutil.rmtree(rdir, ignore_errors=True)
        return
    for child in rdir.iterdir() if rdir.is_dir() else []:
        if child.name == "logs":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def run_status(name: str, *, run_root: Path | None = None) -> dict[str, Any]:
    """What runs in a run dir: {"run_dir", "processes": {name: {"pid", "alive"}}, "state"}."""
    rdir = make_run_dir(name, run_root)
    processes: dict[str, dict[str, Any]] = {}
    for path in pid_files(rdir):
        info = read_pid_file(path)
        if info is not None:
            processes[path.stem] = {"pid": info.pid, "alive": info.alive()}
    return {"run_dir": str(rdir), "processes": processes, "state": read_state(rdir)}


def read_state(rdir: Path) -> dict[str, Any]:
    try:
        data = json.loads((rdir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(rdir: Path, values: Mapping[str, Any], *, replace: bool = False) -> None:
    state = {**({} if replace else read_state(rdir)), **values}
    path = rdir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(path)


def log_paths(name: str, *, run_root: Path | None = None) -> list[Path]:
    """Every log file of a run dir."""
    folder = make_run_dir(name, run_root) / "logs"
    return sorted(folder.glob("*.log")) + sorted(folder.glob("*.out")) if folder.is_dir() else []
