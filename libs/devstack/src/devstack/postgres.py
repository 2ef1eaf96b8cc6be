"""A real PostgreSQL 15 server as a plain local process, on 127.0.0.1 and a free port.

PostgreSQL refuses to run as root: when devstack runs as root, `initdb` and `postgres` run as
the unprivileged `postgres` user (`DEVSTACK_PG_USER` to change), with the data folder owned by
that user; as a normal user they run directly. The binaries come from `PG_BIN`, else
`pg_config --bindir`, else `/usr/lib/postgresql/15/bin`.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from devstack.errors import DevstackError
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
    user_ids,
)

DEFAULT_BINDIR = Path("/usr/lib/postgresql/15/bin")
APP_ROLE = "retail"
SUPERUSER = "postgres"
#: A unix socket path must fit in sun_path (107 bytes) with "/.s.PGSQL.<port>" appended.
_MAX_SOCKET_DIR = 90


def pg_bindir() -> Path:
    """Where `initdb`, `postgres`, `psql` and `pg_isready` are."""
    override = os.environ.get("PG_BIN")
    candidates: list[Path] = [Path(override)] if override else []
    pg_config = shutil.which("pg_config")
    if pg_config and not override:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
        except (OSError, subprocess.TimeoutExpired):
            pass
    if not override:
        candidates.append(DEFAULT_BINDIR)
    for candidate in candidates:
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    raise DevstackError(
        "PostgreSQL server binaries not found in "
        + ", ".join(str(c) for c in candidates)
        + ": run scripts/bootstrap.sh (installs postgresql-15) or set PG_BIN"
    )


def server_user() -> str | None:
    """The OS user to run PostgreSQL as: `postgres` when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("DEVSTACK_PG_USER", "postgres")
    try:
        pwd.getpwnam(name)
    except KeyError as exc:
        raise DevstackError(
            f"running as root but there is no {name!r} user for PostgreSQL: run "
            "scripts/bootstrap.sh (or `useradd --system postgres`)"
        ) from exc
    return name


def render_server_options(
    *,
    port: int,
    socket_dir: Path,
    max_connections: int = 300,
    extra: Mapping[str, str] | None = None,
) -> list[str]:
    """The `-c name=value` options the server is started with; `extra` adds or overrides some
    (the bench loads `pg_stat_statements` this way)."""
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(socket_dir),
        "max_connections": str(max_connections),
        "synchronous_commit": "on",
        "logging_collector": "off",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        "log_min_messages": "warning",
        "log_connections": "off",
        "shared_buffers": "128MB",
        "max_prepared_transactions": "0",
    }
    settings.update(extra or {})
    argv: list[str] = []
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    return argv


def make_database_url(
    *,
    user: str,
    password: str,
    port: int,
    host: str = "127.0.0.1",
    database: str = "postgres",
    socket_dir: Path | None = None,
) -> str:
    """The server's URL; with `socket_dir`, clients connect through its unix socket (libpq's
    and asyncpg's `?host=<directory>`), the port still naming the socket file. A local socket
    costs clients and server less CPU per round trip than TCP on loopback: a third less
    Python CPU per transaction measured with asyncpg (docs/benchmarks.md, "Stop 23")."""
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    url = f"postgresql://{credentials}@{host}:{port}/{database}"
    if socket_dir is not None:
        url += f"?host={quote(str(socket_dir), safe='/')}"
    return url


@dataclass
class PostgresServer(StoppedOnExit):
    """A running PostgreSQL; stop it with `stop()` or use it as a context manager."""

    port: int
    data_dir: Path
    socket_dir: Path
    process: ManagedProcess
    user: str
    password: str
    log_file: Path
    #: the `-c` options given on top of devstack's own (`start_postgres(options=...)`); a
    #: restart keeps them
    options: dict[str, str] = field(default_factory=dict)

    @property
    def superuser_url(self) -> str:
        """The server's superuser through the unix socket, where devstack trusts local
        connections: for diagnostics that need it (`pg_stat_statements_reset()`), never for
        the services."""
        socket = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{SUPERUSER}@/postgres?host={socket}&port={self.port}"

    @property
    def database_url(self) -> str:
        """`postgresql://retail:<pw>@127.0.0.1:<port>/postgres?host=<socket dir>` (the role
        has CREATEDB). The services' engines connect through the unix socket; the TCP address
        stays in the URL for clients that prefer it (asyncpg's own `connect`)."""
        return make_database_url(
            user=self.user, password=self.password, port=self.port, socket_dir=self.socket_dir
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, *, progress: Progress = stderr_progress) -> None:
        self.process.stop(progress=progress)


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _reachable_by(path: Path, user: str | None) -> bool:
    """Can `user` write in `path` (every parent folder traversable)?"""
    if user is None:
        return os.access(path, os.W_OK | os.X_OK)
    uid, gid, groups = user_ids(user)
    done = subprocess.run(
        ["test", "-w", str(path), "-a", "-x", str(path)],
        user=uid,
        group=gid,
        extra_groups=groups,
        check=False,
    )
    return done.returncode == 0


def _server_env(bindir: Path) -> dict[str, str]:
    """A small, clean environment: no PG* variables of the caller leak into the server."""
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env


def _private_dir(purpose: str, user: str | None, run_dir: Path) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"devstack-{run_dir.name}-{purpose}-"))
    _chown(path, user)
    return path


def _folders(run_dir: Path, user: str | None) -> tuple[Path, Path]:
    """(data dir, socket dir). Both live in `run_dir/postgres` when the server user can reach
    it; otherwise (say, the repo in a home folder only its owner may enter) in private folders
    under the temp dir, recorded in `run_dir/postgres/elsewhere` so `down --purge` removes
    them."""
    pgdir = run_dir / "postgres"
    pgdir.mkdir(parents=True, exist_ok=True)
    record = pgdir / "elsewhere"
    recorded = dict(
        line.split("=", 1) for line in (record.read_text().splitlines() if record.exists() else [])
    )
    base = Path(recorded["base"]) if "base" in recorded else pgdir
    if "base" not in recorded:
        _chown(pgdir, user)
        if not _reachable_by(pgdir, user):
            base = _private_dir("pg", user, run_dir)
            recorded["base"] = str(base)
    socket_dir = Path(recorded.get("sock", str(base / "sock")))
    if len(str(socket_dir)) > _MAX_SOCKET_DIR:
        socket_dir = _private_dir("sock", user, run_dir)
        recorded["sock"] = str(socket_dir)
    if recorded:
        record.write_text("".join(f"{k}={v}\n" for k, v in recorded.items()))
    base.mkdir(parents=True, exist_ok=True)
    socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _chown(socket_dir, user)
    return base / "data", socket_dir


def extra_folders(run_dir: Path) -> list[Path]:
    """Folders outside the run dir that belong to its PostgreSQL (see `_folders`)."""
    record = run_dir / "postgres" / "elsewhere"
    if not record.exists():
        return []
    return [Path(line.split("=", 1)[1]) for line in record.read_text().splitlines() if "=" in line]


def _wait_ready(
    proc: ManagedProcess,
    bindir: Path,
    socket_dir: Path,
    port: int,
    timeout: float,
    progress: Progress,
) -> None:
    deadline = time.monotonic() + timeout
    isready = [str(bindir / "pg_isready"), "-q", "-h", str(socket_dir), "-p", str(port)]
    isready += ["-U", SUPERUSER, "-d", "postgres", "-t", "2"]
    with ticking(progress, f"waiting for PostgreSQL to start (pid {proc.pid})"):
        while time.monotonic() < deadline:
            if not proc.alive():
                raise DevstackError(
                    "PostgreSQL exited before it was ready\n"
                    + format_tail("postgres log", proc.log_path)
                )
            done = subprocess.run(isready, capture_output=True, timeout=10, check=False)
            if done.returncode == 0:
                return
            time.sleep(0.2)
    raise DevstackError(
        f"PostgreSQL was not ready within {timeout:.0f}s\n"
        + format_tail("postgres log", proc.log_path)
    )


def start_postgres(
    run_dir: Path,
    *,
    port: int | None = None,
    role: str = APP_ROLE,
    timeout: float = 90.0,
    max_connections: int = 300,
    stop_at_exit: bool = True,
    progress: Progress = stderr_progress,
    options: Mapping[str, str] | None = None,
) -> PostgresServer:
    """initdb (first time only) and start PostgreSQL for `run_dir`; create/refresh the role
    `role` (LOGIN CREATEDB) with a password kept in `run_dir/postgres/password`. `options`:
    `-c` settings on top of devstack's (`render_server_options`)."""
    bindir = pg_bindir()
    user = server_user()
    data_dir, socket_dir = _folders(run_dir, user)
    pgdir = run_dir / "postgres"
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = _server_env(bindir)

    if not (data_dir / "PG_VERSION").exists():
        if data_dir.exists():
            shutil.rmtree(data_dir)  # a half-done initdb
        argv = [
            str(bindir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        ]
        with ticking(progress, "initdb (PostgreSQL data folder)"):
            run_checked(argv, what="initdb", env=env, cwd=Path("/"), user=user)

    password_file = pgdir / "password"
    if not password_file.exists():
        password_file.touch(mode=0o600)
        password_file.write_text(secrets.token_urlsafe(24) + "\n")
    password = password_file.read_text().strip()

    port_file = pgdir / "port"
    if port is None:
        try:
            previous = int(port_file.read_text())
        except (OSError, ValueError):
            previous = 0
        port = previous if previous and port_is_free(previous) else free_port()
    port_file.write_text(f"{port}\n")

    argv = [str(bindir / "postgres"), "-D", str(data_dir)]
    argv += render_server_options(
        port=port, socket_dir=socket_dir, max_connections=max_connections, extra=options
    )
    proc = spawn(
        "postgres",
        argv,
        pid_file=run_dir / "pids" / "postgres.pid",
        log_path=logs / "postgres.log",
        env=env,
        cwd=Path("/"),
        user=user,
        stop_signal=int(signal.SIGINT),  # "fast" shutdown: ends sessions, then checkpoints
        stop_timeout=30.0,
        stop_at_exit=stop_at_exit,
    )
    try:
        _wait_ready(proc, bindir, socket_dir, port, timeout, progress)
        sql = (
            "DO $$BEGIN\n"
            f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN\n"
            f'    CREATE ROLE "{role}";\n'
            "  END IF;\n"
            "END$$;\n"
            f"ALTER ROLE \"{role}\" WITH LOGIN CREATEDB PASSWORD '{password}';\n"
        )
        psql = [
            str(bindir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(socket_dir),
            "-p",
            str(port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
        ]
        run_checked(psql, what="creating the database role", env=env, input_text=sql, timeout=60)
    except BaseException:
        proc.stop()
        raise
    progress(f"PostgreSQL ready on 127.0.0.1:{port} (pid {proc.pid})")
    return PostgresServer(
        port=port,
        data_dir=data_dir,
        socket_dir=socket_dir,
        process=proc,
        user=role,
        password=password,
        log_file=proc.log_path,
        options=dict(options or {}),
    )
