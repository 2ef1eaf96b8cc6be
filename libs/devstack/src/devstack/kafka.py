"""A real single-node Apache Kafka (KRaft, broker + controller) as a plain local process.

The jars come from Maven Central through `libs/devstack/kafka/pom.xml` (the one place that
names the Kafka version) into `.cache/kafka/<version>/lib`, fetched once.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from devstack.errors import DevstackError
from devstack.paths import cache_root, kafka_pom, repo_root
from devstack.ports import free_port, port_is_free
from devstack.procs import (
    ManagedProcess,
    Progress,
    format_tail,
    run_checked,
    spawn,
    stderr_progress,
    ticking,
)

READY_MARKER = "Kafka Server started"
DEFAULT_HEAP = "-Xmx512m -Xms256m"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_COMPLETE = ".complete"


# -- the jars ----------------------------------------------------------------------------------


def kafka_version(pom: Path | None = None) -> str:
    """`<kafka.version>` from the POM."""
    path = pom or kafka_pom()
    node = ET.parse(path).getroot().find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not (node.text or "").strip():
        raise DevstackError(f"{path} has no <properties><kafka.version>")
    return (node.text or "").strip()


def kafka_home(version: str | None = None, *, root: Path | None = None) -> Path:
    """`.cache/kafka/<version>/`; its `lib/` holds the jars once fetched."""
    return cache_root(root) / "kafka" / (version or kafka_version(kafka_pom(root)))


def kafka_fetched(home: Path) -> bool:
    return (home / "lib" / _COMPLETE).is_file()


def check_logging_jars(lib: Path) -> list[str]:
    """Problems with the logging jars in `lib` (empty when the slf4j binding matches)."""
    names = [p.name for p in lib.glob("*.jar")]
    problems = []
    apis = [n for n in names if re.match(r"slf4j-api-\d", n)]
    if not any(n.startswith("log4j-core-") for n in names):
        problems.append("log4j-core is missing")
    for api in apis:
        major = api[len("slf4j-api-") :].split(".")[0]
        binding = "log4j-slf4j2-impl" if major == "2" else "log4j-slf4j-impl"
        if not any(n.startswith(binding + "-") for n in names):
            problems.append(f"{api} needs {binding} (set it in the POM)")
    return problems


def fetch_kafka(
    *, root: Path | None = None, force: bool = False, progress: Progress = stderr_progress
) -> Path:
    """Download Kafka's runtime jars with Maven into `.cache/kafka/<version>/lib` unless they
    are there already; return that `lib` folder. Safe to call from parallel processes."""
    root = root or repo_root()
    pom = kafka_pom(root)
    version = kafka_version(pom)
    home = kafka_home(version, root=root)
    lib = home / "lib"
    if kafka_fetched(home) and not force:
        return lib
    home.mkdir(parents=True, exist_ok=True)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevstackError("Maven (mvn) is not installed: run scripts/bootstrap.sh")
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same version
        if kafka_fetched(home) and not force:
            return lib
        tmp = home / f"lib.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        argv = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]
        started = time.monotonic()
        with ticking(progress, f"fetching Kafka {version} jars with Maven into {lib}"):
            run_checked(argv, what="Maven fetch of the Kafka jars", timeout=1200)
        problems = check_logging_jars(tmp)
        if problems:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DevstackError("Kafka jars fetched but logging is wrong: " + "; ".join(problems))
        (tmp / _COMPLETE).write_text(version + "\n")
        shutil.rmtree(lib, ignore_errors=True)
        tmp.rename(lib)
        count = len(list(lib.glob("*.jar")))
        progress(f"fetched {count} jars in {time.monotonic() - started:.1f}s")
    return lib


# -- configuration -----------------------------------------------------------------------------


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 without padding (22 chars).

    Never one that starts with '-' (1 in 64 would): `kafka-storage format -t <id>` would
    take it for an option, as Kafka's own `Uuid.randomUuid` avoids for the same reason."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def render_server_properties(
    *, port: int, controller_port: int, data_dir: Path, host: str = "127.0.0.1"
) -> str:
    """`server.properties` of a single-node KRaft broker+controller on loopback."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.flush.interval.ms": "1000",
    }
    lines = ["# written by devstack: single-node KRaft on loopback"]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def render_log4j2_properties(log_file: Path) -> str:
    """A log4j2 `.properties` config (no YAML dependency) logging to one file."""
    return "\n".join(
        [
            "status = warn",
            "name = devstack-kafka",
            "appender.file.type = File",
            "appender.file.name = FILE",
            f"appender.file.fileName = {log_file}",
            "appender.file.append = true",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = FILE",
            "logger.statechange.name = state.change.logger",
            "logger.statechange.level = WARN",
            "logger.authorizer.name = kafka.authorizer.logger",
            "logger.authorizer.level = WARN",
            "",
        ]
    )


def java_command(
    lib: Path, log4j_config: Path, *, main: str, args: list[str], heap: str | None = None
) -> list[str]:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java:
        raise DevstackError("java is not installed: run scripts/bootstrap.sh")
    opts = (heap or os.environ.get("DEVSTACK_KAFKA_HEAP_OPTS") or DEFAULT_HEAP).split()
    opts += os.environ.get("DEVSTACK_KAFKA_JVM_OPTS", "").split()
    return [
        java,
        *opts,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_config}",
        "-cp",
        str(lib / "*"),
        main,
        *args,
    ]


# -- the server --------------------------------------------------------------------------------


@dataclass
class KafkaServer:
    """A running Kafka; stop it with `stop()` or use it as a context manager."""

    port: int
    controller_port: int
    home: Path
    process: ManagedProcess
    log_file: Path
    version: str
    extra_logs: list[Path] = field(default_factory=list)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, *, progress: Progress = stderr_progress) -> None:
        self.process.stop(progress=progress)

    def __enter__(self) -> KafkaServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_ready(proc: ManagedProcess, log_file: Path, timeout: float, progress: Progress) -> None:
    deadline = time.monotonic() + timeout
    with ticking(progress, f"waiting for Kafka to start (pid {proc.pid})"):
        while time.monotonic() < deadline:
            try:
                if READY_MARKER in log_file.read_text(errors="replace"):
                    return
            except OSError:
                pass
            if not proc.alive():
                raise DevstackError(
                    "Kafka exited before it was ready\n"
                    + format_tail("kafka server log", log_file)
                    + "\n"
                    + format_tail("kafka stdout", proc.log_path)
                )
            time.sleep(0.2)
    proc.stop()
    raise DevstackError(
        f"Kafka was not ready within {timeout:.0f}s\n"
        + format_tail("kafka server log", log_file)
        + "\n"
        + format_tail("kafka stdout", proc.log_path)
    )


def start_kafka(
    run_dir: Path,
    *,
    port: int | None = None,
    controller_port: int | None = None,
    timeout: float = 180.0,
    heap: str | None = None,
    stop_at_exit: bool = True,
    progress: Progress = stderr_progress,
) -> KafkaServer:
    """Fetch the jars if needed, format the storage and start Kafka in `run_dir/kafka`;
    return once the log says "Kafka Server started". Logs go to `run_dir/logs/`, the pid file
    to `run_dir/pids/kafka.pid`. Ports default to free ones (or the ones of the previous start
    in this run dir while still free, so a dev stack keeps its ports)."""
    lib = fetch_kafka(progress=progress)
    home = lib.parent
    version = kafka_version()
    kdir = run_dir / "kafka"
    logs = run_dir / "logs"
    data = kdir / "data"
    for folder in (kdir, logs, data):
        folder.mkdir(parents=True, exist_ok=True)

    previous = _read_ports(kdir / "ports")
    if port is None:
        port = previous[0] if previous and port_is_free(previous[0]) else free_port()
    if controller_port is None:
        controller_port = previous[1] if previous and port_is_free(previous[1]) else free_port()
    (kdir / "ports").write_text(f"{port} {controller_port}\n")

    cluster_file = kdir / "cluster-id"
    if not cluster_file.exists():
        cluster_file.write_text(new_cluster_id() + "\n")
    cluster_id = cluster_file.read_text().strip()

    server_log = logs / "kafka-server.log"
    log4j = kdir / "log4j2.properties"
    log4j.write_text(render_log4j2_properties(server_log))
    props = kdir / "server.properties"
    props.write_text(
        render_server_properties(port=port, controller_port=controller_port, data_dir=data)
    )
    # Readiness is read from the log: start it afresh for this run.
    if server_log.exists():
        server_log.replace(logs / "kafka-server.log.prev")

    fmt = java_command(
        lib,
        log4j,
        main="kafka.tools.StorageTool",
        args=["format", "--ignore-formatted", "-t", cluster_id, "-c", str(props)],
        heap="-Xmx256m",
    )
    with ticking(progress, "formatting Kafka storage"):
        run_checked(fmt, what="Kafka storage format", timeout=180)

    argv = java_command(lib, log4j, main="kafka.Kafka", args=[str(props)], heap=heap)
    proc = spawn(
        "kafka",
        argv,
        pid_file=run_dir / "pids" / "kafka.pid",
        log_path=logs / "kafka.out",
        cwd=kdir,
        stop_timeout=60.0,
        stop_at_exit=stop_at_exit,
    )
    try:
        _wait_ready(proc, server_log, timeout, progress)
    except BaseException:
        proc.stop()
        raise
    progress(f"Kafka {version} ready on 127.0.0.1:{port} (pid {proc.pid})")
    return KafkaServer(
        port=port,
        controller_port=controller_port,
        home=home,
        process=proc,
        log_file=server_log,
        version=version,
    )


def _read_ports(path: Path) -> tuple[int, int] | None:
    try:
        first, second = path.read_text().split()
        return int(first), int(second)
    except (OSError, ValueError):
        return None
