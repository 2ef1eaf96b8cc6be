"""The services as subprocesses (`python -m <module>`, each running uvicorn): the five of the
system and the back office (a web app over the gateway's public API)."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from devstack.errors import DevstackError
from devstack.paths import repo_root
from devstack.ports import free_port, port_is_free
from devstack.procs import (
    ManagedProcess,
    Progress,
    StoppedOnExit,
    format_tail,
    signal_pid,
    spawn,
    stderr_progress,
)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    prefix: str
    default_port: int

    @property
    def port_var(self) -> str:
        return f"{self.prefix}PORT"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("gateway", "pos_gateway", "GATEWAY_", 8080),
    ServiceSpec("credit", "credit", "CREDIT_", 8081),
    ServiceSpec("loyalty", "loyalty", "LOYALTY_", 8082),
    ServiceSpec("reporting", "reporting", "REPORTING_", 8083),
    ServiceSpec("notifier", "notifier", "NOTIFIER_", 8084),
    ServiceSpec("backoffice", "backoffice", "BACKOFFICE_", 8085),
)
SERVICE_NAMES: tuple[str, ...] = tuple(s.name for s in SERVICES)
#: Shared variables (no prefix) that also reach one service under its own prefixed name.
PREFIXED_ALIASES: dict[str, str] = {
    "OVERDUE_SCAN_INTERVAL_SECONDS": "CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS",
    "OPERATOR_TOKEN": "GATEWAY_OPERATOR_TOKEN",
}


def spec(name: str) -> ServiceSpec:
    for candidate in SERVICES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICE_NAMES)}")


@dataclass(frozen=True)
class ServicePorts:
    """The HTTP port of each service on 127.0.0.1."""

    gateway: int = 8080
    credit: int = 8081
    loyalty: int = 8082
    reporting: int = 8083
    notifier: int = 8084
    backoffice: int = 8085

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServicePorts:
        """`GATEWAY_PORT`, `CREDIT_PORT`, ... from the environment, else 8080..8085."""
        source = os.environ if env is None else env
        values: dict[str, int] = {}
        for service in SERVICES:
            raw = source.get(service.port_var, "")
            try:
                values[service.name] = int(raw) if raw else service.default_port
            except ValueError as exc:
                raise DevstackError(f"{service.port_var}={raw!r} is not a port number") from exc
        return cls(**values)

    @classmethod
    def free(cls) -> ServicePorts:
        """A distinct free port per service (for tests and parallel stacks)."""
        return cls(**{service.name: free_port() for service in SERVICES})

    def of(self, name: str) -> int:
        return int(getattr(self, spec(name).name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


def resolve_operator_token(
    token: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[str, bool]:
    """(token, generated): the given token, else `OPERATOR_TOKEN` from the environment, else a
    new random one (generated=True: print it for the user)."""
    if token:
        return token, False
    source = os.environ if env is None else env
    if source.get("OPERATOR_TOKEN"):
        return source["OPERATOR_TOKEN"], False
    return secrets.token_urlsafe(32), True


def build_service_env(
    *,
    kafka_bootstrap_servers: str,
    database_url: str,
    ports: ServicePorts,
    operator_token: str,
    base_env: Mapping[str, str] | None = None,
    app_env: str = "dev",
) -> dict[str, str]:
    """The environment every service is started with: everything already in `base_env`
    (default: this process's environment) plus the stack's infrastructure, ports, internal
    URLs and operator token, which win over what `base_env` says."""
    env = dict(os.environ if base_env is None else base_env)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
            "DATABASE_URL": database_url,
            "APP_ENV": app_env,
            "OPERATOR_TOKEN": operator_token,
            "GATEWAY_REPORTING_URL": f"http://127.0.0.1:{ports.reporting}",
            "GATEWAY_CREDIT_URL": f"http://127.0.0.1:{ports.credit}",
            "GATEWAY_NOTIFIER_URL": f"http://127.0.0.1:{ports.notifier}",
            "BACKOFFICE_GATEWAY_URL": f"http://127.0.0.1:{ports.gateway}",
            # the reminder email's task links open this stack's back office (whatever its port)
            "NOTIFIER_BACKOFFICE_URL": f"http://127.0.0.1:{ports.backoffice}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # the back office is served over plain http on 127.0.0.1 here: a Secure cookie would not
    # come back over http to every client (curl, test clients), so it is off unless set
    env.setdefault("BACKOFFICE_COOKIE_SECURE", "false")
    for service in SERVICES:
        env[service.port_var] = str(ports.of(service.name))
        env[f"{service.prefix}HOST"] = "127.0.0.1"
    for shared, prefixed in PREFIXED_ALIASES.items():
        if shared == "OPERATOR_TOKEN":
            env[prefixed] = operator_token
        elif env.get(shared) and not env.get(prefixed):
            env[prefixed] = env[shared]
    return env


def health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/health/ready"


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of a GET (None when nothing answers)."""
    request = urllib.request.Request(url, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class Services(StoppedOnExit):
    """Running services; `stop()` or use as a context manager."""

    run_dir: Path
    ports: ServicePorts
    operator_token: str
    env: dict[str, str]
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    python: str = sys.executable
    cwd: Path | None = None
    stop_at_exit: bool = True
    #: HTTP port of each running process (instance name -> port), extra instances included.
    instance_ports: dict[str, int] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def backoffice_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.backoffice}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports.of(name)}"

    def log_path(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def stop(self, *, progress: Progress = stderr_progress) -> None:
        for name in reversed(list(self.processes)):
            self.processes[name].stop(progress=progress)

    # -- one process at a time (fault injection, extra instances) --------------------------

    def spawn_instance(
        self,
        service: str,
        *,
        instance: str | None = None,
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> ManagedProcess:
        """Start one process of `service` (`python -m <module>`) without waiting for it.

        `instance` names it (default: the service itself; e.g. "credit-2" for an extra
        instance, with its own pid file and log); `port` is its HTTP port (default: the one it
        had, else the service's port). The process shares the stack's environment, so an
        extra instance joins the same consumer groups and databases."""
        svc = spec(service)
        key = instance or service
        if key in self.processes and self.processes[key].alive():
            raise DevstackError(f"{key} is already running (pid {self.processes[key].pid})")
        port = port or self.instance_ports.get(key) or self.ports.of(service)
        env = {**self.env, **(extra_env or {})}
        env[svc.port_var] = str(port)
        proc = spawn(
            key,
            [self.python, "-m", svc.module],
            pid_file=self.run_dir / "pids" / f"svc-{key}.pid",
            log_path=self.run_dir / "logs" / f"{key}.log",
            env=env,
            cwd=self.cwd or repo_root(),
            stop_timeout=20.0,
            stop_at_exit=self.stop_at_exit,
        )
        self.processes[key] = proc
        self.instance_ports[key] = port
        return proc

    def start_instance(
        self,
        service: str,
        *,
        instance: str | None = None,
        port: int | None = None,
        ready_timeout: float = 120.0,
        extra_env: Mapping[str, str] | None = None,
        progress: Progress = stderr_progress,
    ) -> ManagedProcess:
        """`spawn_instance`, then wait until it answers 200 on /health/ready."""
        proc = self.spawn_instance(service, instance=instance, port=port, extra_env=extra_env)
        key = instance or service
        self.wait_ready(key, timeout=ready_timeout, progress=progress)
        return proc

    def wait_ready(
        self, instance: str, *, timeout: float = 120.0, progress: Progress = stderr_progress
    ) -> None:
        """Wait until the named process answers 200 on /health/ready (DevstackError with its
        log tail when it dies or is not ready in time)."""
        proc = self.processes[instance]
        port = self.instance_ports.get(instance) or self.ports.of(instance)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise DevstackError(
                    f"{instance} exited before it was ready\n"
                    + format_tail(f"{instance} log", proc.log_path)
                )
            if http_status(health_url(port)) == 200:
                progress(f"{instance} ready on http://127.0.0.1:{port} (pid {proc.pid})")
                return
            time.sleep(0.2)
        raise DevstackError(
            f"{instance} not ready within {timeout:.0f}s\n"
            + format_tail(f"{instance} log", proc.log_path)
        )

    def kill(self, instance: str, sig: int = signal.SIGKILL, *, timeout: float = 20.0) -> int:
        """Send `sig` (default SIGKILL, i.e. kill -9: no clean shutdown) to one process by its
        PID and wait until it is gone; return the PID. Restart it with `start_instance`."""
        proc = self.processes[instance]
        pid = proc.pid
        if proc.alive():
            signal_pid(proc.info, sig)
            deadline = time.monotonic() + timeout
            while proc.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.alive():
                raise DevstackError(f"{instance} (pid {pid}) still runs {timeout:.0f}s after {sig}")
        proc.pid_file.unlink(missing_ok=True)
        return pid

    def restart(
        self, instance: str, *, ready_timeout: float = 120.0, progress: Progress = stderr_progress
    ) -> ManagedProcess:
        """kill -9 one process (if it runs) and start it again on the same port."""
        service = instance
        if instance not in {s.name for s in SERVICES}:
            service = self.processes[instance].info.argv[-1]
            service = next(s.name for s in SERVICES if s.module == service)
        self.kill(instance)
        return self.start_instance(
            service, instance=instance, ready_timeout=ready_timeout, progress=progress
        )


def wait_services_ready(
    processes: Mapping[str, ManagedProcess],
    ports: ServicePorts,
    *,
    timeout: float = 120.0,
    progress: Progress = stderr_progress,
) -> None:
    """Wait until every service answers 200 on /health/ready; raise DevstackError with the log
    tail of each service that died or did not get ready."""
    pending = dict(processes)
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    last_note = started
    while pending and time.monotonic() < deadline:
        dead = [name for name, proc in pending.items() if not proc.alive()]
        if dead:
            raise DevstackError(
                "service(s) exited before they were ready: "
                + ", ".join(dead)
                + "\n"
                + "\n".join(format_tail(f"{n} log", pending[n].log_path) for n in dead)
            )
        for name in list(pending):
            if http_status(health_url(ports.of(name))) == 200:
                progress(f"{name} ready on http://127.0.0.1:{ports.of(name)}")
                del pending[name]
        if pending:
            if time.monotonic() - last_note >= 10:
                last_note = time.monotonic()
                waited = time.monotonic() - started
                progress(f"... waiting for {', '.join(pending)} ({waited:.0f}s)")
            time.sleep(0.3)
    if pending:
        raise DevstackError(
            f"service(s) not ready within {timeout:.0f}s: "
            + ", ".join(pending)
            + "\n"
            + "\n".join(format_tail(f"{n} log", pending[n].log_path) for n in pending)
        )


def start_services(
    run_dir: Path,
    *,
    kafka_bootstrap_servers: str,
    database_url: str,
    ports: ServicePorts | None = None,
    operator_token: str | None = None,
    base_env: Mapping[str, str] | None = None,
    names: Iterable[str] = SERVICE_NAMES,
    ready_timeout: float = 120.0,
    python: str | None = None,
    cwd: Path | None = None,
    stop_at_exit: bool = True,
    progress: Progress = stderr_progress,
) -> Services:
    """Start the services (`python -m <module>`) with logs in `run_dir/logs/<name>.log` and pid
    files in `run_dir/pids/`; return when all answer 200 on /health/ready. On any failure the
    ones already started are stopped and DevstackError says why (with log tails)."""
    ports = ports or ServicePorts.from_env(base_env)
    token, generated = resolve_operator_token(operator_token, base_env)
    env = build_service_env(
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        database_url=database_url,
        ports=ports,
        operator_token=token,
        base_env=base_env,
    )
    selected = [spec(n) for n in names]
    busy = [
        f"{s.name} ({s.port_var}={ports.of(s.name)})"
        for s in selected
        if not port_is_free(ports.of(s.name))
    ]
    if busy:
        raise DevstackError(
            f"port(s) already in use: {', '.join(busy)} (choose other ports or stop their user)"
        )
    if generated:
        progress(f"generated OPERATOR_TOKEN={token}")
    services = Services(
        run_dir=run_dir,
        ports=ports,
        operator_token=token,
        env=env,
        python=python or sys.executable,
        cwd=cwd,
        stop_at_exit=stop_at_exit,
        instance_ports={s.name: ports.of(s.name) for s in selected},
    )
    logs = run_dir / "logs"
    try:
        for service in selected:
            services.processes[service.name] = spawn(
                service.name,
                [python or sys.executable, "-m", service.module],
                pid_file=run_dir / "pids" / f"svc-{service.name}.pid",
                log_path=logs / f"{service.name}.log",
                env=env,
                cwd=cwd or repo_root(),
                stop_timeout=20.0,
                stop_at_exit=stop_at_exit,
            )
            progress(f"started {service.name} (pid {services.processes[service.name].pid})")
        wait_services_ready(services.processes, ports, timeout=ready_timeout, progress=progress)
    except BaseException:
        services.stop(progress=progress)
        raise
    return services
