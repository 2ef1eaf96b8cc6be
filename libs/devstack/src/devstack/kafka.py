"""A real Apache Kafka (KRaft) as plain local processes: one node, or a cluster of three.

Every node is broker and controller at once ("combined" mode): a three-node cluster is three
JVMs whose controllers form the KRaft quorum, so killing any one node leaves a quorum of two
and two replicas of every partition. (A separate quorum of three controllers would be six
JVMs on a two-core machine; production runs dedicated controllers, docs/operations.md.)

The jars come from Maven Central through `libs/devstack/kafka/pom.xml` (the one place that
names the Kafka version) into `.cache/kafka/<version>/lib`, fetched once.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import shutil
import socket
import struct
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from devstack.errors import DevstackError
from devstack.paths import cache_root, kafka_pom, repo_root
from devstack.ports import free_port, port_is_free
from devstack.procs import (
    ManagedProcess,
    Progress,
    StoppedOnExit,
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


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a cluster of `brokers`: 3 and 2 from three
    brokers up (one broker may be down and every write still lands on two), 1 and 1 below.

    The same rule as servicekit's topic defaults (`servicekit.topics.replication_for`), which
    cannot import devstack: the two are held together by the tests."""
    if brokers >= 3:
        return 3, 2
    return 1, 1


def broker_count_from_env(env: Mapping[str, str] | None = None) -> int:
    """`KAFKA_BROKERS` (1 when unset): how many brokers devstack starts."""
    raw = (os.environ if env is None else env).get("KAFKA_BROKERS", "").strip()
    if not raw:
        return 1
    try:
        count = int(raw)
    except ValueError as exc:
        raise DevstackError(f"KAFKA_BROKERS={raw!r} is not a number") from exc
    if count not in (1, 3):
        # 2 brokers would give neither a controller quorum that survives a loss nor
        # replication factor 3; more than 3 only costs this machine's two cores.
        raise DevstackError(f"KAFKA_BROKERS={count}: devstack runs 1 or 3 brokers")
    return count


def render_server_properties(
    *,
    port: int,
    controller_port: int,
    data_dir: Path,
    host: str = "127.0.0.1",
    node_id: int = 1,
    voters: str | None = None,
    brokers: int = 1,
) -> str:
    """`server.properties` of one KRaft node on loopback that is broker and controller at
    once ("combined"): a single node, or one of a cluster of `brokers` whose controller quorum
    is `voters` (`1@host:port,2@host:port,...`, every node a voter)."""
    replication, min_isr = replication_for(brokers)
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters or f"{node_id}@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        # topics the services create carry their own replication factor and min.insync.replicas
        # (servicekit.topics); these are the defaults of every other topic, internal ones too
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        # a replica that falls behind must never become leader: acknowledged writes stay
        "unclean.leader.election.enable": "false",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.flush.interval.ms": "1000",
        # Topics carry their own retention (servicekit.topics); the broker looks for segments
        # past it every 5 s instead of every 5 min, so a retention test sees them go in
        # seconds. Cheap: it only compares segment timestamps.
        "log.retention.check.interval.ms": "5000",
    }
    if brokers > 1:
        # A broker killed without a word keeps its partition leaderships (and its place in the
        # ISR, which an acks=all write waits for) until the controller fences it for missed
        # heartbeats: the default 9 s is the longest part of a broker kill's stall. 4 s with a
        # heartbeat every second still tolerates a few missed beats on a busy machine.
        settings["broker.heartbeat.interval.ms"] = "1000"
        settings["broker.session.timeout.ms"] = "4000"
    kind = "single-node KRaft" if brokers == 1 else f"node {node_id} of a {brokers}-node KRaft"
    lines = [f"# written by devstack: {kind} cluster on loopback (broker + controller)"]
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


# -- asking a broker which brokers are live (standard library only) ----------------------------


def live_brokers(host: str, port: int, *, timeout: float = 3.0) -> list[int]:
    """The node ids of the brokers the cluster's metadata lists as live (registered and not
    fenced), asked of the broker at host:port with one Metadata request (v4: the oldest
    version Kafka 4 still serves; no topics). Raises OSError when it does not answer."""
    client_id = b"devstack"
    request = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id
    request += struct.pack(">ib", 0, 0)  # no topics; allow_auto_topic_creation=false
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
        data = _recv_exactly(sock, size)
    # correlation id, throttle_time_ms, then the brokers: node_id, host, port, rack
    pos = 8
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    nodes = []
    for _ in range(count):
        (node,) = struct.unpack_from(">i", data, pos)
        pos += 4
        (length,) = struct.unpack_from(">h", data, pos)
        pos += 2 + length + 4  # host, port
        (rack,) = struct.unpack_from(">h", data, pos)
        pos += 2 + max(0, rack)
        nodes.append(node)
    return sorted(nodes)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the broker closed the connection mid-answer")
        chunks += chunk
    return bytes(chunks)


# -- the server --------------------------------------------------------------------------------


@dataclass
class KafkaServer(StoppedOnExit):
    """One running Kafka node (broker + controller); stop it with `stop()` or use it as a
    context manager."""

    port: int
    controller_port: int
    home: Path
    process: ManagedProcess
    log_file: Path
    version: str
    extra_logs: list[Path] = field(default_factory=list)
    node_id: int = 1

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.alive()

    def stop(self, *, progress: Progress = stderr_progress) -> None:
        self.process.stop(progress=progress)


@dataclass
class KafkaCluster(StoppedOnExit):
    """The Kafka of one run dir: one node, or three (each broker and controller at once, the
    three controllers one KRaft quorum). Clients get every node in `bootstrap_servers`, so
    they find the cluster while any one node is down."""

    nodes: list[KafkaServer]
    run_dir: Path
    #: nodes started again by `start_node` are also stopped at interpreter exit
    stop_at_exit: bool = True

    @property
    def brokers(self) -> int:
        return len(self.nodes)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def version(self) -> str:
        return self.nodes[0].version

    @property
    def pid(self) -> int:
        """The first node's PID (the only one of a single-node cluster)."""
        return self.nodes[0].pid

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes]

    @property
    def process(self) -> ManagedProcess:
        return self.nodes[0].process

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def controller_port(self) -> int:
        return self.nodes[0].controller_port

    def node(self, node_id: int | None = None) -> KafkaServer:
        """Node `node_id` (1-based); None is allowed only for a single node."""
        if node_id is None:
            if len(self.nodes) != 1:
                raise DevstackError(
                    f"this Kafka has {len(self.nodes)} nodes: say which (1..{len(self.nodes)})"
                )
            return self.nodes[0]
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise DevstackError(f"no Kafka node {node_id} (nodes 1..{len(self.nodes)})")

    def live_brokers(self) -> list[int]:
        """Node ids of the live brokers, asked of the first node that answers ([] if none)."""
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                return live_brokers("127.0.0.1", node.port)
            except (OSError, struct.error):
                continue
        return []

    def wait_all_live(self, timeout: float = 120.0, progress: Progress = stderr_progress) -> None:
        """Wait until the cluster's metadata lists every node as a live broker: a node logs
        "Kafka Server started" before the controller has unfenced it, and a topic created in
        between with replication factor 3 would fail (or, sized by the live brokers, get 2)."""
        wanted = sorted(node.node_id for node in self.nodes)
        deadline = time.monotonic() + timeout
        seen: list[int] = []
        with ticking(progress, f"waiting for brokers {wanted} to be live"):
            while time.monotonic() < deadline:
                seen = self.live_brokers()
                if seen == wanted:
                    return
                time.sleep(0.2)
        raise DevstackError(f"Kafka brokers live after {timeout:.0f}s: {seen}, wanted {wanted}")

    def start_node(
        self, node_id: int, *, timeout: float = 180.0, progress: Progress = stderr_progress
    ) -> KafkaServer:
        """Start one node again on its ports and data (after it was killed or stopped) and wait
        until it is ready and, in a cluster, a live broker again."""
        old = self.node(node_id)
        if old.alive():
            raise DevstackError(f"Kafka node {node_id} still runs (pid {old.pid})")
        lib = fetch_kafka(progress=progress)
        layout = _NodeLayout.of(self.run_dir, node_id, len(self.nodes))
        proc = _spawn_node(lib, layout, stop_at_exit=self.stop_at_exit)
        try:
            _wait_ready(proc, layout.server_log, timeout, progress)
        except BaseException:
            proc.stop()
            raise
        new = KafkaServer(
            port=old.port,
            controller_port=old.controller_port,
            home=lib.parent,
            process=proc,
            log_file=layout.server_log,
            version=old.version,
            node_id=node_id,
        )
        self.nodes[self.nodes.index(old)] = new
        if len(self.nodes) > 1:
            self.wait_all_live(timeout=timeout, progress=progress)
        progress(f"Kafka node {node_id} ready again on 127.0.0.1:{new.port} (pid {new.pid})")
        return new

    def stop(self, *, progress: Progress = stderr_progress) -> None:
        """Stop every node (SIGTERM, in parallel: a cluster node waits for its controller quorum
        while it shuts down, so stopping them one after the other is slow)."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            list(pool.map(lambda node: node.stop(progress=progress), self.nodes))


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


@dataclass(frozen=True)
class _NodeLayout:
    """Where one node keeps its files in the run dir. A single node keeps the layout it always
    had (`kafka/`, `pids/kafka.pid`, `logs/kafka-server.log`); node i of a cluster has
    `kafka-<i>/`, `pids/kafka-<i>.pid`, `logs/kafka-<i>-server.log`."""

    name: str
    folder: Path
    logs: Path
    pid_file: Path

    @classmethod
    def of(cls, run_dir: Path, node_id: int, brokers: int) -> _NodeLayout:
        name = "kafka" if brokers == 1 else f"kafka-{node_id}"
        return cls(name, run_dir / name, run_dir / "logs", run_dir / "pids" / f"{name}.pid")

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def server_log(self) -> Path:
        return self.logs / f"{self.name}-server.log"

    @property
    def stdout_log(self) -> Path:
        return self.logs / f"{self.name}.out"

    @property
    def properties(self) -> Path:
        return self.folder / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.folder / "log4j2.properties"


def _spawn_node(
    lib: Path, layout: _NodeLayout, *, stop_at_exit: bool, heap: str | None = None
) -> ManagedProcess:
    # Readiness is read from the log: start it afresh for this run.
    if layout.server_log.exists():
        layout.server_log.replace(layout.logs / f"{layout.name}-server.log.prev")
    argv = java_command(
        lib, layout.log4j, main="kafka.Kafka", args=[str(layout.properties)], heap=heap
    )
    return spawn(
        layout.name,
        argv,
        pid_file=layout.pid_file,
        log_path=layout.stdout_log,
        cwd=layout.folder,
        stop_timeout=60.0,
        stop_at_exit=stop_at_exit,
    )


def kafka_layout_in_use(run_dir: Path) -> int | None:
    """How many nodes the Kafka data in `run_dir` belongs to (None: no Kafka data yet)."""
    if (run_dir / "kafka" / "cluster-id").exists():
        return 1
    nodes = sorted(run_dir.glob("kafka-[0-9]*/cluster-id"))
    return len(nodes) or None


def start_kafka_cluster(
    run_dir: Path,
    *,
    brokers: int = 1,
    ports: list[tuple[int, int]] | None = None,
    timeout: float = 180.0,
    heap: str | None = None,
    stop_at_exit: bool = True,
    progress: Progress = stderr_progress,
) -> KafkaCluster:
    """Fetch the jars if needed, format each node's storage and start `brokers` KRaft nodes
    (1 or 3), every one broker and controller; return once each logs "Kafka Server started"
    and, for a cluster, the metadata lists all of them as live brokers. `ports` is one
    (broker, controller) pair per node; by default free ones (or the previous start's in this
    run dir while still free, so a dev stack keeps its ports). If any node fails, every node
    started is stopped and DevstackError carries the log tail."""
    if brokers < 1:
        raise DevstackError(f"a Kafka cluster needs at least one broker, not {brokers}")
    in_use = kafka_layout_in_use(run_dir)
    if in_use is not None and in_use != brokers:
        raise DevstackError(
            f"{run_dir} holds the data of a {in_use}-broker Kafka, not {brokers}: "
            f"stop it and delete it first (python -m devstack down --name {run_dir.name} "
            "--purge), or use another NAME"
        )
    lib = fetch_kafka(progress=progress)
    version = kafka_version()
    layouts = [_NodeLayout.of(run_dir, i, brokers) for i in range(1, brokers + 1)]
    for layout in layouts:
        for folder in (layout.folder, layout.logs, layout.data):
            folder.mkdir(parents=True, exist_ok=True)

    chosen: list[tuple[int, int]] = []
    for index, layout in enumerate(layouts):
        if ports is not None:
            pair = ports[index]
        else:
            previous = _read_ports(layout.folder / "ports")
            port = previous[0] if previous and port_is_free(previous[0]) else free_port()
            controller = previous[1] if previous and port_is_free(previous[1]) else free_port()
            pair = (port, controller)
        (layout.folder / "ports").write_text(f"{pair[0]} {pair[1]}\n")
        chosen.append(pair)
    voters = ",".join(f"{i}@127.0.0.1:{pair[1]}" for i, pair in enumerate(chosen, start=1))

    cluster_ids = {
        (layout.folder / "cluster-id").read_text().strip()
        for layout in layouts
        if (layout.folder / "cluster-id").exists()
    }
    if len(cluster_ids) > 1:
        raise DevstackError(f"the Kafka nodes in {run_dir} belong to different clusters")
    cluster_id = cluster_ids.pop() if cluster_ids else new_cluster_id()

    for index, layout in enumerate(layouts):
        (layout.folder / "cluster-id").write_text(cluster_id + "\n")
        layout.log4j.write_text(render_log4j2_properties(layout.server_log))
        port, controller = chosen[index]
        layout.properties.write_text(
            render_server_properties(
                port=port,
                controller_port=controller,
                data_dir=layout.data,
                node_id=index + 1,
                voters=voters,
                brokers=brokers,
            )
        )

    def format_storage(layout: _NodeLayout) -> None:
        fmt = java_command(
            lib,
            layout.log4j,
            main="kafka.tools.StorageTool",
            args=["format", "--ignore-formatted", "-t", cluster_id, "-c", str(layout.properties)],
            heap="-Xmx256m",
        )
        run_checked(fmt, what=f"Kafka storage format ({layout.name})", timeout=180)

    with ticking(progress, "formatting Kafka storage"), ThreadPoolExecutor(brokers) as pool:
        list(pool.map(format_storage, layouts))

    # Every node of a cluster at once: a node waits for its controller quorum (a majority of
    # the voters) before it reports itself started.
    procs: list[ManagedProcess] = []
    try:
        for layout in layouts:
            procs.append(_spawn_node(lib, layout, stop_at_exit=stop_at_exit, heap=heap))
        for proc, layout in zip(procs, layouts, strict=True):
            _wait_ready(proc, layout.server_log, timeout, progress)
        cluster = KafkaCluster(
            nodes=[
                KafkaServer(
                    port=pair[0],
                    controller_port=pair[1],
                    home=lib.parent,
                    process=proc,
                    log_file=layout.server_log,
                    version=version,
                    node_id=index + 1,
                )
                for index, (pair, proc, layout) in enumerate(
                    zip(chosen, procs, layouts, strict=True)
                )
            ],
            run_dir=run_dir,
            stop_at_exit=stop_at_exit,
        )
        if brokers > 1:
            cluster.wait_all_live(timeout=timeout, progress=progress)
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
    where = ", ".join(f"127.0.0.1:{pair[0]}" for pair in chosen)
    pids = ", ".join(str(p.pid) for p in procs)
    what = "Kafka" if brokers == 1 else f"Kafka cluster of {brokers} brokers"
    progress(f"{what} {version} ready on {where} (pid {pids})")
    return cluster


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
    """A single-node Kafka in `run_dir/kafka` (see `start_kafka_cluster`): logs go to
    `run_dir/logs/`, the pid file to `run_dir/pids/kafka.pid`."""
    ports = None
    if port is not None or controller_port is not None:
        ports = [(port or free_port(), controller_port or free_port())]
    cluster = start_kafka_cluster(
        run_dir,
        brokers=1,
        ports=ports,
        timeout=timeout,
        heap=heap,
        stop_at_exit=stop_at_exit,
        progress=progress,
    )
    return cluster.nodes[0]


def _read_ports(path: Path) -> tuple[int, int] | None:
    try:
        first, second = path.read_text().split()
        return int(first), int(second)
    except (OSError, ValueError):
        return None
